"""The generated file's long statements broken over lines as ruff's formatter breaks them (the
project's style, 120 columns), so the file passes ``ruff format --check`` as written.

The generator keeps its statements short (tables as ranges, one call per recomputed head); what
still does not fit is one call or literal whose arguments go on their own line(s): the statement's
last bracket pair is opened at the end of its first line, its contents go on one line indented
four more if they fit there, else one per line with a trailing comma (each broken the same way),
and the closing bracket starts the last line. The lines are read with :mod:`tokenize`, so strings
and f-strings are never split."""

from __future__ import annotations

import io
import itertools
import textwrap
import tokenize

WIDTH = 120  # the project's line length (pyproject: [tool.ruff] line-length)

_CLOSE = {"(": ")", "[": "]", "{": "}"}


def fit(source: str) -> str:
    """``source`` with every line over :data:`WIDTH` broken as ruff would break it, a comment
    line wrapped (a line this cannot break is left as it is: the lint test shows it)."""
    strings = _in_strings(source)
    out: list[str] = []
    for row, line in enumerate(source.split("\n"), 1):
        out += _broken(line) if len(line) > WIDTH and row not in strings else [line]
    return "\n".join(out)


def _in_strings(source: str) -> set[int]:
    """The rows (from 1) a string spanning several lines (a docstring) covers: never broken."""
    rows: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            rows.update(range(tok.start[0], tok.end[0] + 1))
    return rows


def _broken(line: str) -> list[str]:
    """One statement (or a call argument ending in ``,``) as the lines ruff's formatter makes."""
    if len(line) <= WIDTH:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    text = line[len(indent) :]
    if text.startswith("# "):  # a comment line: the formatter leaves it, so it is wrapped here
        wrap = textwrap.wrap(text[2:], WIDTH - len(indent) - 2, break_long_words=False, break_on_hyphens=False)
        return [f"{indent}# {part}" for part in wrap]
    group = _last_group(text)
    if group is None:
        return [line]
    start, stop, commas, clauses = group
    head, inner, tail = text[: start + 1], text[start + 1 : stop], text[stop:]
    if not inner.strip() or inner.rstrip().endswith(","):  # a magic trailing comma: ruff explodes it
        return [line]
    pad = indent + "    "
    call = start > 0 and (text[start - 1].isidentifier() or text[start - 1] in ")]")  # a call or subscript
    if (call or clauses) and len(pad) + len(inner) <= WIDTH:  # a literal's items get a line each
        return [indent + head, pad + inner, indent + tail]
    lines = [indent + head]
    if clauses:  # a comprehension: its element, then each for and if clause on a line
        cuts = [start + 1, *clauses, stop]
        for a, b in itertools.pairwise(cuts):
            lines += _broken(pad + text[a:b].strip())
        return [*lines, indent + tail]
    cuts = [start + 1, *(c + 1 for c in commas), stop + 1]
    for a, b in itertools.pairwise(cuts):
        lines += _broken(pad + text[a : b - 1].strip() + ",")
    return [*lines, indent + tail]


def _last_group(text: str) -> tuple[int, int, list[int], list[int]] | None:
    """(column of the opening bracket, of its closing bracket, of the commas and of the ``for`` /
    ``if`` clauses of a comprehension between them at its own depth) of the last top-level bracket
    pair of ``text``, if only ``:`` or ``,`` follows it."""
    depth, fstrings = 0, 0
    group: tuple[int, int, list[int], list[int]] | None = None
    start = -1
    commas: list[int] = []
    clauses: list[int] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    for tok in tokens:
        kind = tokenize.tok_name[tok.type]
        if kind == "FSTRING_START":
            fstrings += 1
        elif kind == "FSTRING_END":
            fstrings -= 1
        col = tok.start[1]
        if not fstrings and depth == 1 and tok.type == tokenize.NAME and tok.string in ("for", "if"):
            clauses.append(col)
        if fstrings or tok.type != tokenize.OP:
            continue
        if tok.string in _CLOSE:
            if depth == 0:
                start, commas, clauses = col, [], []
            depth += 1
        elif tok.string in _CLOSE.values():
            depth -= 1
            if depth == 0:
                group = (start, col, commas, clauses)
        elif tok.string == "," and depth == 1:
            commas.append(col)
    if group is None or text[group[1] + 1 :].strip() not in ("", ":", ","):
        return None
    return group
