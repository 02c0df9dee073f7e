"""``netdsl fmt``: the one canonical layout of a ``.net`` spec (as black and ruff format do for Python).

The layout is decided token by token, from the frontend's own lexer and the parsed AST (spec text
is never evaluated):

* indentation is 4 spaces per open multi-line ``{ }`` body; a body written on one line stays on
  one line (``{ bn; relu; conv(k, 3) }``), with one space inside its braces; an empty one is ``{}``;
* line breaks between statements are the author's (``bn; relu; conv(4 * k, 1)`` groups a
  composite function on one line): statements on one line are joined by ``"; "``, the others
  each start a line; redundant ``;`` are dropped;
* inside a statement, one space around binary operators, ``and``/``or``, comparisons and ``**``
  and after commas and ``:``; none inside brackets, before commas, around ``..``, after a unary
  ``-``/``+``, around ``=`` in keyword arguments and parameter defaults (``let x = 1`` keeps its
  spaces); a trailing comma before ``)``/``]`` is dropped; argument order is kept;
* a statement broken after a comma inside brackets keeps that break, and the next line is
  aligned just after the open bracket; other breaks inside a statement are joined;
* comments are kept with their text: a full-line comment is indented like the code it precedes,
  a trailing one follows its code after two spaces; ``/* */`` comments stay where they are;
* blank lines are kept but collapsed to one (none just inside a body's braces); top-level items
  are one per line, with a blank line before and after each ``def``/``network``; trailing
  whitespace is stripped and the file ends with exactly one newline.

:func:`format_text` re-parses its output and refuses to return text whose AST differs from the
input's, so a bug here can never change what a spec means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import IRError, Span
from .frontend import ast
from .frontend.parser import _parser, parse
from .frontend.source import strip_bom

INDENT = 4
KEYWORDS = frozenset({"include", "def", "network", "let", "for", "in", "if", "else", "and", "or", "not", "step"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BLANK_LINE = re.compile(r"\n[ \t\f\v\r]*\n")
_OPENERS = ("(", "[")
_CLOSERS = (")", "]")
_COMMENTS = ("COMMENT", "BLOCK_COMMENT")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # the lexer's terminal name (NAME, INT, COMMENT, ...)
    text: str
    start: int
    end: int
    line: int
    column: int

    @property
    def comment(self) -> bool:
        return self.kind in _COMMENTS

    @property
    def ends_operand(self) -> bool:
        """True where a following ``-`` is binary and a following ``[`` indexes."""
        if self.text in _CLOSERS or self.kind in ("INT", "FLOAT", "STRING"):
            return True
        return bool(_WORD.match(self.text)) and self.text not in KEYWORDS


def format_text(text: str, file: str = "<string>") -> str:
    """The canonical layout of one spec's text. A spec that does not parse raises the parser's
    located :class:`~netdsl.errors.SpecSyntaxError` (nothing is formatted).

    >>> format_text("network n( ){input(3,8,8) ; conv(8,3,stride = 2)}")
    'network n() { input(3, 8, 8); conv(8, 3, stride=2) }\\n'
    """
    text = strip_bom(text).replace("\r\n", "\n")
    module = parse(text, file)
    out = _Formatter(text, module).run()
    if parse(out, file) != module:  # a bug here: the check makes it harmless
        raise IRError(f"netdsl fmt would change the meaning of {file}; it was left as it is", Span(file, 1, 1))
    return out


def _lex(text: str) -> list[_Tok]:
    """Every token but whitespace, the ``;`` separators (the formatter writes its own) and trailing
    commas before a closing bracket."""
    toks: list[_Tok] = []
    for t in _parser().lex(text, dont_ignore=True):
        if t.type == "WS" or t.value == ";":
            continue
        assert t.start_pos is not None and t.end_pos is not None and t.line is not None and t.column is not None
        toks.append(_Tok(t.type, str(t), t.start_pos, t.end_pos, t.line, t.column))
    keep: list[_Tok] = []
    comma: int | None = None  # index in keep of a ',' followed so far by comments only
    for tok in toks:
        if (tok.text in _CLOSERS or tok.text == "}") and comma is not None:  # '}': a choice's (a body has no commas)
            del keep[comma]
        if not tok.comment:
            comma = len(keep) if tok.text == "," else None
        keep.append(tok)
    return keep


def _starts(module: ast.Module) -> tuple[set[tuple[int, int]], dict[tuple[int, int], str]]:
    """(line, column) of every statement directly in a body, and of every top-level item with its
    keyword (include, def, network)."""
    stmts: set[tuple[int, int]] = set()
    items: dict[tuple[int, int], str] = {}

    def at(node: ast.Node) -> tuple[int, int]:
        return node.span.line, node.span.column

    def walk(body) -> None:
        for s in body:
            stmts.add(at(s))
            if isinstance(s, ast.For):
                walk(s.body)
            elif isinstance(s, ast.If):
                walk(s.then)
                walk(s.orelse)  # an `else if` is found here too: see _Formatter.__init__
            elif isinstance(s, ast.OpStmt) and s.body:
                walk(s.body)

    for inc in module.includes:
        items[at(inc)] = "include"
    for tpl in module.templates:
        items[at(tpl)] = "def"
        walk(tpl.body)
    for net in module.networks:
        items[at(net)] = "network"
        walk(net.body)
    return stmts, items


class _Line:
    """The output: finished lines and the one being written (kept as parts, so a 1 MB line is linear)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.parts: list[str] = []
        self.column = 0  # length of the current line

    def write(self, s: str) -> None:
        *done, last = s.split("\n")
        if done:
            self.parts.append(done[0])
            self.lines.append("".join(self.parts))
            self.lines.extend(done[1:])
            self.parts, self.column = [], 0
        self.parts.append(last)
        self.column += len(last)

    def newline(self, indent: int, blank: bool) -> None:
        self.lines.append("".join(self.parts))
        if blank:
            self.lines.append("")
        self.parts, self.column = [" " * indent], indent

    def text(self) -> str:
        lines = [line.rstrip() for line in self.lines + ["".join(self.parts)]]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + "\n" if lines else ""


class _Formatter:
    def __init__(self, text: str, module: ast.Module):
        self.text = text
        self.toks = _lex(text)
        stmts, items = _starts(module)
        self.item_kind: dict[int, str] = {}  # token index -> keyword of the item it starts
        self.stmt: set[int] = set()  # token indices that start a statement in a body
        self.inline: dict[int, bool] = {}  # index of each '{' and '}' -> its body stays on one line
        self.next_sig: list[int | None] = [None] * len(self.toks)  # next non-comment token index
        following: int | None = None
        for i in range(len(self.toks) - 1, -1, -1):
            self.next_sig[i] = following
            if not self.toks[i].comment:
                following = i
        prev_sig: _Tok | None = None
        open_braces: list[int] = []
        # '{' '}' inside brackets are a search domain's choice (``k=8 in {8, 16}``), not a body:
        # they are written like brackets.
        self.choice_braces: set[int] = set()
        depth = 0  # open '(' '[' and choice braces
        for i, t in enumerate(self.toks):
            if t.comment:
                continue
            if t.text in _OPENERS or (t.text == "{" and depth):
                depth += 1
                if t.text == "{":
                    self.choice_braces.add(i)
                    open_braces.append(-1)
            elif t.text in _CLOSERS or (t.text == "}" and open_braces and open_braces[-1] == -1):
                depth -= 1
                if t.text == "}":
                    open_braces.pop()
                    self.choice_braces.add(i)
            key = (t.line, t.column)
            if key in items:
                self.item_kind[i] = items[key]
            # `else if` parses as an else-body holding one if: that `if` is not a statement of its own
            elif key in stmts and not (prev_sig is not None and prev_sig.text == "else"):
                self.stmt.add(i)
            if i in self.choice_braces:
                pass
            elif t.text == "{":
                open_braces.append(i)
            elif t.text == "}":
                j = open_braces.pop()
                inline = "\n" not in text[self.toks[j].start : t.end] or j == i - 1
                self.inline[i] = self.inline[j] = inline
            prev_sig = t

        self.out = _Line()
        self.level = 0  # open multi-line bodies
        self.brackets: list[int] = []  # output column just after each open '(' / '['
        self.bodies: list[bool] = []  # inline flag of each open body
        self.prev: _Tok | None = None  # last token written (comments included)
        self.prev_sig: _Tok | None = None  # last non-comment token written
        self.prev2_sig: _Tok | None = None  # the one before it
        self.prev_unary = False  # prev_sig is a unary '-' or '+'
        self.force_newline = False  # after a '#' comment
        self.leading_comment = False  # only /* */ comments are on the current line so far
        self.ended_item: str | None = None  # the item that just ended, until the next line starts
        self.closed_inline = False  # the body closed by the last '}' was on one line
        self.item = ""  # keyword of the top-level item being written
        self._let_eq = False  # prev_sig is the '=' of a let
        self.prev_opened_choice = False  # prev_sig is a choice's '{'

    # ---- helpers
    def _between(self, a: _Tok | None, b: _Tok) -> str:
        return self.text[a.end : b.start] if a is not None else ""

    def _newline(self, indent: int, blank: bool, next_item: str | None = None) -> None:
        if self.ended_item is not None and next_item is not None and (self.ended_item, next_item) != ("include",) * 2:
            blank = True  # a blank line between top-level items, except between two includes
        self.ended_item = None
        self.out.newline(indent, blank)

    def _continuation(self) -> int:
        return self.brackets[-1] if self.brackets else self.level * INDENT + INDENT

    # ---- the pass
    def run(self) -> str:
        for i, t in enumerate(self.toks):
            if t.comment:
                self._comment(i, t)
            else:
                self._token(i, t)
            self.prev = t
        return self.out.text()

    def _comment(self, i: int, t: _Tok) -> None:
        gap = self._between(self.prev, t)
        line_start = self.force_newline or "\n" in gap
        if self.prev is None:
            pass
        elif line_start:
            nxt = self.next_sig[i]
            n = self.toks[nxt] if nxt is not None else None
            # a comment line between statements (or before a body's '}') is indented like them; one
            # inside a statement like its continuation lines
            between = n is None or nxt in self.stmt or nxt in self.item_kind or n.text in ("else", "}")
            indent = self.level * INDENT if between else self._continuation()
            blank = between and self.prev.text != "{" and bool(_BLANK_LINE.search(gap))
            self._newline(indent, blank, self.item_kind.get(nxt) if nxt is not None else None)
        elif t.kind == "COMMENT":
            self.out.write("  ")
        elif self.prev.text not in _OPENERS:
            self.out.write(" ")
        self.out.write(t.text.rstrip() if t.kind == "COMMENT" else t.text)
        self.force_newline = t.kind == "COMMENT"
        self.leading_comment = t.kind == "BLOCK_COMMENT" and (self.prev is None or self.leading_comment or line_start)

    def _token(self, i: int, t: _Tok) -> None:
        prev, ps = self.prev, self.prev_sig
        gap = self._between(prev, t)
        blank = bool(_BLANK_LINE.search(gap))
        broken = ps is not None and "\n" in self._between(ps, t)  # a line break in the source since ps
        if prev is None:
            pass
        elif i in self.choice_braces:
            self.out.write(self._space(prev, ps, t, opening=t.text == "{", closing=t.text == "}"))
        elif t.text == "}":
            if self.inline[i]:
                self.out.write("" if prev.text == "{" else " ")
            else:
                self.level -= 1
                self._newline(self.level * INDENT, False)
        elif i in self.item_kind:
            self._newline(0, blank, self.item_kind[i])
        elif i in self.stmt:
            if self.leading_comment and "\n" not in gap:
                self.out.write(" ")  # `/* note */ conv(8)` on a line of its own stays together
            elif ps is not None and ps.text == "{":
                if self.bodies[-1]:
                    self.out.write(" ")
                else:
                    self._newline(self.level * INDENT, blank and prev.text != "{")
            elif self.force_newline or broken:
                self._newline(self.level * INDENT, blank)
            else:
                self.out.write("; ")
        elif t.text == "else":
            if self.force_newline or (self.closed_inline and broken):
                self._newline(self.level * INDENT, False)
            else:
                self.out.write(" ")
        elif self.force_newline:
            self._newline(self._continuation(), False)
        elif self.brackets and ps is not None and ps.text == "," and broken:
            self._newline(self.brackets[-1], False)
        else:
            self.out.write(self._space(prev, ps, t))

        unary = t.text in ("-", "+") and not (ps is not None and ps.ends_operand)
        let_eq = t.text == "=" and self.prev2_sig is not None and self.prev2_sig.text == "let"
        self.out.write(t.text)
        self.force_newline = self.leading_comment = False
        self._track(i, t, ps)
        self.prev2_sig, self.prev_sig = ps, t
        self.prev_unary = unary
        self._let_eq = let_eq

    def _space(self, prev: _Tok, ps: _Tok | None, t: _Tok, opening: bool = False, closing: bool = False) -> str:
        """The space written before ``t`` inside a statement or header (``opening``/``closing``: ``t``
        is a choice's brace)."""
        if prev.comment:
            return "" if t.text in (*_CLOSERS, ",") or closing else " "
        assert ps is not None
        if opening:
            return " "
        if (
            t.text in (*_CLOSERS, ",", ":")
            or closing
            or ps.text in _OPENERS
            or self.prev_opened_choice
            or self.prev_unary
        ):
            return ""
        if t.text == ".." or ps.text == "..":
            return ""
        if t.text == "=":
            return " " if self.prev2_sig is not None and self.prev2_sig.text == "let" else ""
        if ps.text == "=":
            return " " if self._let_eq else ""
        if t.text == "(":
            return "" if ps.ends_operand and _WORD.match(ps.text) else " "
        if t.text == "[":
            return "" if ps.ends_operand else " "
        return " "

    def _track(self, i: int, t: _Tok, ps: _Tok | None) -> None:
        """Brackets, bodies and item ends after ``t`` is written."""
        self.prev_opened_choice = i in self.choice_braces and t.text == "{"
        if t.text in _OPENERS or self.prev_opened_choice:
            self.brackets.append(self.out.column)
        elif t.text in _CLOSERS or i in self.choice_braces:
            self.brackets.pop()
        elif t.text == "{":
            self.bodies.append(self.inline[i])
            if not self.inline[i]:
                self.level += 1
        elif t.text == "}":
            self.closed_inline = self.bodies.pop()
            if not self.bodies:
                self.ended_item = self.item
        if i in self.item_kind:
            self.item = self.item_kind[i]
        elif t.kind == "STRING" and ps is not None and ps.text == "include" and not self.bodies:
            self.ended_item = "include"
