"""The error classes of netdsl and how a located error is shown to a user.

Every mistake in a spec is raised as a :class:`NetdslError` carrying a :class:`Span`;
``str(err)`` is the full user-facing message::

    specs/x.net:3:14: error: unknown template 'botleneck'
        block(n, dense) { botleneck(k) }
                          ^^^^^^^^^
    hint: did you mean 'bottleneck'?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from .display import shown


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file: 1-based line and column, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None
    text: str | None = None  # the whole source, kept so the message can quote the line

    def source_line(self) -> str | None:
        """The line to quote, from the text kept with the span only: a message never opens a file
        to quote it (a refused or unreadable file's content is never shown)."""
        text = self.text
        if text is None:
            return None
        lines = text.split("\n")  # the parser counts lines by '\n' only (not \x1c, \u2028, ...)
        if 1 <= self.line <= len(lines):
            return lines[self.line - 1].rstrip("\r")
        return None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class NetdslError(Exception):
    """Base of every error netdsl reports to a user (exit code 2 at the CLI)."""

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint

    def with_span(self, span: Span | None) -> NetdslError:
        if self.span is None and span is not None:
            self.span = span
        return self

    def __str__(self) -> str:
        return format_error(self)


class SpecSyntaxError(NetdslError):
    kind = "syntax error"


class SpecNameError(NetdslError):
    """An unknown or duplicated name: template, parameter, op, label, preset."""


class SpecTypeError(NetdslError):
    """A value of the wrong type or a call with the wrong arguments."""


class SpecValueError(NetdslError):
    """A value out of its valid range (channels, depth, window, scale, ...)."""


class ShapeError(NetdslError):
    """Tensors whose shapes do not agree (add, concat, a map shrunk below 1x1)."""


class LimitError(NetdslError):
    """A spec that would need absurd resources, refused before allocating."""


class IncludeError(NetdslError):
    """A spec file or include netdsl will not read: missing, recursive, outside the root spec's
    folder, not a regular .net file, or larger than 1 MiB."""


class WeightsError(NetdslError):
    """Weights that do not fit a network: a key, a module kind or a shape that does not match,
    a file that holds no state_dict, a layout netdsl cannot map (netdsl/weights/)."""


class SpecWarning(NetdslError):
    """Not raised: a legal spec that probably does not mean what it says. Lowering collects these
    in ``graph.graph["warnings"]``; the CLI prints them and goes on."""

    kind = "warning"


class IRError(NetdslError):
    """A broken IR contract: a bug in netdsl or in a pass, not in the user's spec."""

    kind = "internal error"


class PassError(NetdslError):
    """A pass failed; names the pass and the ones that ran before it."""

    kind = "internal error"


def format_error(err: NetdslError) -> str:
    """The message as printed: every line passes through :func:`display.shown`, so a control or
    escape character in a file name, a value or the quoted source line reaches the terminal as
    ``\x1b``, never as a live escape sequence."""
    span = err.span
    head = f"{err.kind}: {err.message}"
    if span is None:
        out = [shown(head)]
    else:
        out = [shown(f"{span}: {head}")]
        line = span.source_line()
        if line is not None:
            line = line.expandtabs(1)
            width = 1
            if span.end_line == span.line and span.end_column and span.end_column > span.column:
                width = span.end_column - span.column
            width = max(1, min(width, len(line) - span.column + 1))
            # escape before and under the caret separately, so the caret stays under the mistake
            before, under = shown(line[: span.column - 1]), shown(line[span.column - 1 : span.column - 1 + width])
            text = before + under + shown(line[span.column - 1 + width :])
            text, column, width = _clip_line(text, len(before) + 1, max(1, len(under)))
            out.append("    " + text)
            out.append("    " + " " * (column - 1) + "^" * width)
    if err.hint:
        out.append(shown(f"hint: {err.hint}"))
    return "\n".join(out)


MAX_SHOWN_LINE = 120


def _clip_line(line: str, column: int, width: int) -> tuple[str, int, int]:
    """A window of a long source line around the caret, so a generated 100 kB line cannot flood
    the terminal. Returns the shown text, the caret's column in it and the caret width.

    >>> _clip_line("x" * 300, 200, 5)[1:]
    (64, 5)
    """
    if len(line) <= MAX_SHOWN_LINE:
        return line, column, width
    start = max(0, column - 1 - MAX_SHOWN_LINE // 2)
    stop = min(len(line), start + MAX_SHOWN_LINE)
    head = "..." if start else ""
    tail = "..." if stop < len(line) else ""
    column = column - start + len(head)
    return head + line[start:stop] + tail, column, max(1, min(width, stop - (column - len(head) + start) + 1))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelled name, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"
