"""Source positions: netdsl's spans (1-based line and column, counted in characters) and LSP
ranges (0-based, in characters here; the server converts to the client's encoding at the edge)."""

from __future__ import annotations

import os
from pathlib import Path

from lsprotocol import types as lsp

from ..errors import Span


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name the same file (a span keeps the path as the user wrote it)."""
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def lines_of(text: str) -> list[str]:
    """The lines as the parser counts them ('\\n' only), without their line ends."""
    return [line.rstrip("\r") for line in text.split("\n")]


def _word_end(line: str, start: int) -> int:
    """The end of the token starting at ``start``: a name or number, else one character."""
    end = start
    while end < len(line) and (line[end].isalnum() or line[end] == "_"):
        end += 1
    return end if end > start else min(start + 1, len(line))


def span_range(span: Span | None, text: str) -> lsp.Range:
    """The LSP range of a span in ``text``: its exact start and end; a span without an end (a
    syntax error's point) covers the token there, so an editor underlines a word, not nothing."""
    lines = lines_of(text)
    if span is None:
        return lsp.Range(lsp.Position(0, 0), lsp.Position(0, len(lines[0]) if lines else 0))
    line = min(max(span.line - 1, 0), max(len(lines) - 1, 0))
    col = min(max(span.column - 1, 0), len(lines[line]) if lines else 0)
    if span.end_line is not None and span.end_column is not None:
        end_line = min(max(span.end_line - 1, line), max(len(lines) - 1, 0))
        end_col = min(max(span.end_column - 1, 0), len(lines[end_line]))
        if (end_line, end_col) < (line, col):
            end_line, end_col = line, col
    else:
        end_line, end_col = line, _word_end(lines[line], col) if lines else 0
    return lsp.Range(lsp.Position(line, col), lsp.Position(end_line, end_col))


def contains(span: Span, line0: int, char0: int) -> bool:
    """Whether a 0-based position lies inside a span (its end included, so a cursor right after a
    name still hovers it)."""
    start = (span.line - 1, span.column - 1)
    end = (
        (span.end_line - 1, span.end_column - 1)
        if span.end_line is not None and span.end_column is not None
        else (span.line - 1, span.column)
    )
    return start <= (line0, char0) <= end


def word_at(text: str, line0: int, char0: int) -> tuple[str, int, int] | None:
    """The identifier under a 0-based position: (word, start, end) on that line, or None."""
    lines = lines_of(text)
    if not 0 <= line0 < len(lines):
        return None
    line = lines[line0]
    start = end = min(max(char0, 0), len(line))
    while start > 0 and (line[start - 1].isalnum() or line[start - 1] == "_"):
        start -= 1
    while end < len(line) and (line[end].isalnum() or line[end] == "_"):
        end += 1
    if start == end or line[start].isdigit():
        return None
    return line[start:end], start, end
