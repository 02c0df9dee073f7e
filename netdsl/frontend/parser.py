"""Text -> AST. The grammar lives in grammars/netdsl.lark and is loaded once."""

from __future__ import annotations

import functools
import gc
import re
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import lark
from lark import Lark, Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive

from ..errors import LimitError, NetdslError, Span, SpecSyntaxError, SpecValueError, did_you_mean
from . import ast
from .source import MAX_SPEC_BYTES, read_spec_text, strip_bom

MAX_NESTING = 64  # brackets/braces; deeper specs are refused before parsing
# Operator chains nest without brackets (1+1+1+..., ------1, not not ...); the evaluator and
# lowering recurse over the AST, so deeper expressions are refused where they are written.
MAX_EXPR_DEPTH = 100
MAX_SOURCE_BYTES = MAX_SPEC_BYTES  # text given directly (the API's text=) has the files' limit
# Integer literals longer than this are refused where they are written (Python's int() refuses
# 4301+ digits with a traceback; any number past 10**18 is refused by the evaluator anyway).
MAX_INT_DIGITS = 100


def grammar_path() -> Path:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "grammars" / "netdsl.lark", here.parent / "grammars" / "netdsl.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("grammars/netdsl.lark not found beside the netdsl package")


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        start=["start", "expr", "domain"],  # "expr" parses one --set value, "domain" one --space domain
    )


def _parse_tree(text: str, start: str = "start"):
    return _parser().parse(text, start=start)


# Labelled examples of common mistakes: lark's match_examples picks the closest one.
_EXAMPLES: dict[str, list[str]] = {
    "missing closing brace '}'": [
        "network n() { conv(8) ",
        "def t() { bn ",
        "network n() { block(2, dense) { bn ",
    ],
    "missing closing parenthesis ')'": [
        "network n() { conv(8, 3 }",
        "network n() { let a = (1 + 2 }",
        "network n() { conv(8, 3 bn }",
    ],
    "missing opening brace '{' after the header": [
        "network n() conv(8) }",
        "def t(k) bn }",
    ],
    "expected a parameter list '(...)' after the name": [
        "network n { }",
        "def t { }",
    ],
    "expected an expression": [
        "network n() { conv(,) }",
        "network n() { let a = }",
        "network n() { conv(8 + ) }",
        "network n() { let a = 1 * }",
    ],
    "only 'network', 'def' and 'include' may appear at the top level": [
        "conv(8)",
        "let a = 1",
        "network n() { } bn",
    ],
    "a statement cannot start here": [
        "network n() { 3 }",
        "network n() { (bn) }",
        "network n() { = }",
    ],
    "unexpected extra ')'": [
        "network n() { conv(8)) }",
    ],
}


def _pos(meta, file: str, text: str) -> Span:
    if getattr(meta, "empty", True):
        return Span(file, 1, 1, text=text)
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column, text=text)


def _tok_span(tok: Token, file: str, text: str) -> Span:
    assert tok.line is not None and tok.column is not None  # the lexer positions every token it makes
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column, text=text)


class _ToAst(Transformer_NonRecursive):
    """Builds frozen AST dataclasses with spans from lark's parse tree.

    Non-recursive so that a long operator chain cannot overflow Python's stack; expression
    depth is measured on the way up and refused past :data:`MAX_EXPR_DEPTH`."""

    def __init__(self, file: str, text: str):
        super().__init__()
        self.file = file
        self.text = text
        self.depth: dict[int, int] = {}  # id(expression node) -> nesting depth; leaves are absent
        # Every range and choice made, by id; a parameter's domain takes its own out, and any left
        # at the end stand where no domain may (see _stray_domain).
        self.domains: dict[int, ast.Range | ast.Choice] = {}

    def _s(self, meta) -> Span:
        return _pos(meta, self.file, self.text)

    def _deep(self, node, *children):
        depth = 1 + max((self.depth.get(id(c), 0) for c in children), default=0)
        if depth > MAX_EXPR_DEPTH:
            raise SpecSyntaxError(
                f"expression nested more than {MAX_EXPR_DEPTH} levels deep", node.span, "split it into steps with 'let'"
            )
        self.depth[id(node)] = depth
        return node

    # ---- top level
    @v_args(meta=True)
    def start(self, meta, items):
        _stray_domain(self.domains)
        includes = tuple(i for i in items if isinstance(i, ast.Include))
        templates = tuple(i for i in items if isinstance(i, ast.Template))
        networks = tuple(i for i in items if isinstance(i, ast.Network))
        return ast.Module(self._s(meta), self.file, includes, templates, networks)

    @v_args(meta=True)
    def include(self, meta, items):
        return ast.Include(self._s(meta), str(items[0])[1:-1])

    @v_args(meta=True)
    def template(self, meta, items):
        name, params, body = items
        for p in params or ():
            if p.domain is not None:
                raise SpecSyntaxError(
                    f"template parameter '{p.name}' has a search domain",
                    p.domain.span,
                    "domains belong to the network's parameters; pass the network parameter to the template",
                )
        return ast.Template(self._s(meta), str(name), tuple(params or ()), body)

    @v_args(meta=True)
    def network(self, meta, items):
        name, params, body = items
        return ast.Network(self._s(meta), str(name), tuple(params or ()), body)

    def params(self, items):
        return tuple(p for p in items if p is not None)

    @v_args(meta=True)
    def param(self, meta, items):
        name, default, domain = items
        if domain is not None:
            if default is None:
                raise SpecSyntaxError(
                    f"parameter '{name}' has a domain but no default",
                    domain.span,
                    f"a spec compiles with its defaults: write {name}=DEFAULT in ...",
                )
            self._claim(domain)
        return ast.Param(self._s(meta), str(name), default, domain)

    def _claim(self, node) -> None:
        """Take the ranges and choices of one parameter's domain out of the stray ones."""
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, ast.Range | ast.Choice):
                self.domains.pop(id(n), None)
            if isinstance(n, ast.Range):
                stack.extend(x for x in (n.lo, n.hi, n.step) if x is not None)
            elif isinstance(n, ast.Choice):
                stack.extend(n.options)
            elif isinstance(n, ast.Call):
                stack.extend(n.args)
                stack.extend(k.value for k in n.kwargs)
            elif isinstance(n, ast.ListExpr):
                stack.extend(n.items)

    # ---- domains (netdsl search)
    @v_args(meta=True)
    def range(self, meta, items):
        lo, hi, step, log = items
        node = ast.Range(self._s(meta), lo, hi, step, log is not None)
        if step is not None and log is not None:
            raise SpecSyntaxError(
                "a log-spaced range takes no step", node.span, "write lo..hi log, or lo..hi step s without log"
            )
        self.domains[id(node)] = node
        return self._deep(node, *(x for x in (lo, hi, step) if x is not None))

    @v_args(meta=True)
    def choice(self, meta, items):
        options = tuple(i for i in items if i is not None)
        node = ast.Choice(self._s(meta), options)
        self.domains[id(node)] = node
        return self._deep(node, *options)

    def body(self, items):
        return tuple(s for s in items if s is not None)

    # ---- statements
    def empty(self, _items):
        return None

    @v_args(meta=True)
    def let_stmt(self, meta, items):
        return ast.Let(self._s(meta), str(items[0]), items[1])

    @v_args(meta=True)
    def for_stmt(self, meta, items):
        var, start, stop, body = items
        return ast.For(self._s(meta), str(var), start, stop, body)

    @v_args(meta=True)
    def if_stmt(self, meta, items):
        cond, then, orelse = items
        if orelse is None:
            orelse = ()
        elif isinstance(orelse, ast.If):
            orelse = (orelse,)
        return ast.If(self._s(meta), cond, then, orelse)

    def if_else(self, items):
        return items[0]

    @v_args(meta=True)
    def label_stmt(self, meta, items):
        label, stmt = items
        return ast.OpStmt(self._s(meta), stmt.call, str(label), stmt.body)

    @v_args(meta=True)
    def call_stmt(self, meta, items):
        name, args, body = items
        call = self._call(meta, name, args)
        return ast.OpStmt(self._s(meta), call, None, body)

    # ---- expressions
    def _call(self, meta, name: Token, args):
        pos, kws = [], []
        for a in args or ():
            if isinstance(a, ast.Kwarg):
                kws.append(a)
            else:
                pos.append(a)
        call = ast.Call(self._s(meta), str(name), tuple(pos), tuple(kws), _tok_span(name, self.file, self.text))
        return self._deep(call, *pos, *(k.value for k in kws))

    @v_args(meta=True)
    def call(self, meta, items):
        return self._call(meta, items[0], items[1])

    def args(self, items):
        return [a for a in items if a is not None]

    @v_args(meta=True)
    def kwarg(self, meta, items):
        return ast.Kwarg(self._s(meta), str(items[0]), items[1])

    @v_args(meta=True)
    def or_(self, meta, items):
        return self._deep(ast.BinOp(self._s(meta), "or", items[0], items[1]), items[0], items[1])

    @v_args(meta=True)
    def and_(self, meta, items):
        return self._deep(ast.BinOp(self._s(meta), "and", items[0], items[1]), items[0], items[1])

    @v_args(meta=True)
    def not_(self, meta, items):
        return self._deep(ast.UnaryOp(self._s(meta), "not", items[0]), items[0])

    @v_args(meta=True)
    def compare(self, meta, items):
        return self._deep(ast.BinOp(self._s(meta), str(items[1]), items[0], items[2]), items[0], items[2])

    @v_args(meta=True)
    def binop(self, meta, items):
        return self._deep(ast.BinOp(self._s(meta), str(items[1]), items[0], items[2]), items[0], items[2])

    @v_args(meta=True)
    def pow(self, meta, items):
        return self._deep(ast.BinOp(self._s(meta), "**", items[0], items[2]), items[0], items[2])

    @v_args(meta=True)
    def neg(self, meta, items):
        return self._deep(ast.UnaryOp(self._s(meta), "-", items[0]), items[0])

    @v_args(meta=True)
    def index(self, meta, items):
        return self._deep(ast.Index(self._s(meta), items[0], items[1]), items[0], items[1])

    def _lit(self, tok: Token, value):
        return ast.Literal(_tok_span(tok, self.file, self.text), value)

    def int_lit(self, items):
        tok = items[0]
        if len(tok) > MAX_INT_DIGITS:
            raise SpecValueError(
                f"number too large ({len(tok):,} digits)",
                _tok_span(tok, self.file, self.text),
                "numbers in a spec are at most 10**18",
            )
        return self._lit(tok, int(tok))

    def float_lit(self, items):
        return self._lit(items[0], float(items[0]))

    def str_lit(self, items):
        return self._lit(items[0], str(items[0])[1:-1])

    @v_args(meta=True)
    def true(self, meta, _items):
        return ast.Literal(self._s(meta), True)

    @v_args(meta=True)
    def false(self, meta, _items):
        return ast.Literal(self._s(meta), False)

    @v_args(meta=True)
    def none(self, meta, _items):
        return ast.Literal(self._s(meta), None)

    def var(self, items):
        tok = items[0]
        return ast.Var(_tok_span(tok, self.file, self.text), str(tok))

    @v_args(meta=True)
    def list_lit(self, meta, items):
        elems = tuple(i for i in items if i is not None)
        return self._deep(ast.ListExpr(self._s(meta), elems), *elems)


@functools.lru_cache(maxsize=1)
def _example_states() -> list[tuple[object, frozenset, str]]:
    """(LALR state, accepted terminals, label) of every labelled example, computed once."""
    out = []
    for label, examples in _EXAMPLES.items():
        for text in examples:
            try:
                _parse_tree(text)
            except UnexpectedToken as ut:
                out.append((ut.state.position, frozenset(ut.accepts or ()), label))
            except UnexpectedInput:
                pass
    return out


def _match_example(exc: UnexpectedInput) -> str | None:
    """Like lark's ``match_examples`` but keyed on the LALR state alone, so an example written
    at the top of a body also labels the same mistake deep inside a nested one."""
    if not isinstance(exc, UnexpectedToken) or exc.state is None:
        return None
    key = (exc.state.position, frozenset(exc.accepts or ()))
    for position, accepts, label in _example_states():
        if (position, accepts) == key:
            return label
    return None


def _stray_domain(domains: dict) -> None:
    """A range or choice outside a parameter's domain (``conv(8..16)``): refused where it stands."""
    if domains:
        node = min(domains.values(), key=lambda n: (n.span.line, n.span.column))
        what = "a range" if isinstance(node, ast.Range) else "a choice {...}"
        raise SpecSyntaxError(
            f"{what} is a search domain: it may only follow 'in' after a network parameter's default",
            node.span,
            "for example network n(k=12 in 8..32 step 4); here write one value",
        )


def _syntax_error(exc: UnexpectedInput, file: str, text: str) -> SpecSyntaxError:
    label = _match_example(exc)
    line, col = exc.line, exc.column
    if line is None or line < 1:
        line, col = max(1, text.count("\n") + 1), 1
    width = 1
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        expected = sorted(exc.accepts or exc.expected)
        hint = "expected " + _describe_expected(expected) if expected else None
        stack = _open_brackets(text, file, tok.start_pos if tok.type != "$END" else len(text))
        opener = stack[-1] if stack else None
        number = None if tok.type == "$END" else _bad_number(text, tok.start_pos) or _bad_number(text, tok.end_pos)
        misplaced = _misaligned_brace(text) if tok.type == "$END" else None
        if misplaced is not None:
            (line, col), closing, closed = misplaced
            message = "'{' is never closed: the file ends before its '}'"
            hint = (
                f"the '}}' at {closing[0]}:{closing[1]} lines up with the '{{' at {closed[0]}:{closed[1]} and closes "
                "it; add a '}' for this one"
            )
        elif tok.type == "$END":
            if opener is not None:  # point at the bracket that was never closed, not at the end
                ch, line, col = opener
                closer = _CLOSER[ch]
                message = f"'{ch}' is never closed: the file ends before its '{closer}'"
                hint = f"add '{closer}'"
            else:
                message = label or "unexpected end of file"
        elif str(tok) == "/" and text.startswith("/*", tok.start_pos):
            message, hint, width = "unterminated comment", "close a /* comment with */", 2
        elif number is not None:
            message, hint, (line, col, width) = f"bad number '{number[0]}'", _NUMBER_HINT, number[1:]
        elif str(tok) in _OPENER:
            want = _OPENER[str(tok)]
            if not any(b[0] == want for b in stack):
                message, hint = (
                    f"unmatched '{tok}': no '{want}' is open here",
                    f"remove it, or add the '{want}' it closes",
                )
            else:
                assert opener is not None  # the stack holds the bracket that tok closes
                message = f"missing '{_CLOSER[opener[0]]}' before this '{tok}'"
                hint = f"the '{opener[0]}' at {opener[1]}:{opener[2]} is not closed"
        elif (word := _misspelt_keyword(text, tok)) is not None or (word := _misplaced_in(text, tok)) is not None:
            message, hint, (line, col, width) = word
        else:
            width = max(1, len(str(tok)))
            found = repr(str(tok))
            message = f"{label} (found {found})" if label else f"unexpected {found}"
            if (
                opener is not None
                and opener[1] < tok.line
                and any(_TERMINAL_NAMES.get(e) == f"'{_CLOSER[opener[0]]}'" for e in expected)
            ):
                hint = (hint + "; " if hint else "") + f"the '{opener[0]}' at {opener[1]}:{opener[2]} is not closed"
    elif isinstance(exc, UnexpectedCharacters):
        pos = cast("int", exc.pos_in_stream)  # lark types it None; the lexer sets its position
        ch = text[pos] if pos < len(text) else ""
        number = _bad_number(text, pos)
        if ch == '"':
            message, hint = "unterminated string", 'strings are written "..." on one line'
        elif text.startswith("/*", pos):
            message, hint, width = "unterminated comment", "close a /* comment with */", 2
        elif number is not None:
            message, hint, (line, col, width) = f"bad number '{number[0]}'", _NUMBER_HINT, number[1:]
        else:
            message = f"unexpected character {ch!r}"
            hint = "names are ASCII letters, digits and '_'; comments start with '#'"
    elif isinstance(exc, UnexpectedEOF):
        message, hint = label or "unexpected end of file", None
    else:  # pragma: no cover - lark has no other kinds today
        message, hint = str(exc), None
    span = Span(file, line, col, line, col + width, text=text)
    return SpecSyntaxError(message, span, hint)


_OPENER = {")": "(", "]": "[", "}": "{"}

# The keywords a statement or a top-level item starts with (the grammar's; 'in' only follows 'for NAME').
KEYWORDS = ("network", "def", "include", "let", "for", "if", "else")
_FIRST_WORD = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)")  # a line's first word
_NAME_OR_STRING_NEXT = re.compile(r"[ \t]+[A-Za-z_\"]")


def _line_col(text: str, pos: int) -> tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _misplaced_in(text: str, tok: Token) -> tuple[str, str, tuple[int, int, int]] | None:
    """``in`` used as an operator (``k in [1, 2]``): lark reports the token after it, or ``in``
    itself; the mistake is the ``in``, so the error names and points at it."""
    start = cast("int", tok.start_pos)  # the lexer positions every token it makes
    if str(tok) != "in":
        before = text[:start].rstrip(" \t")
        if not re.search(r"(?<![A-Za-z0-9_])in$", before):
            return None
        start = len(before) - 2
    if re.search(r"(?<![A-Za-z0-9_])for(\s+[A-Za-z_][A-Za-z0-9_]*)?\s*$", text[:start]):
        return None  # the loop's own 'in' (or its missing variable): the mistake is elsewhere
    line, col = _line_col(text, start)
    return (
        "'in' is not an operator: it only follows 'for NAME' (for b in 1..3)",
        "test membership with == and or, e.g. (k == 1 or k == 2)",
        (line, col, 2),
    )


def _misspelt_keyword(text: str, tok: Token) -> tuple[str, str, tuple[int, int, int]] | None:
    """A syntax error on a line that starts with a near-miss of a keyword (``lett w = 3``,
    ``fro i in 1..3``, ``netwrok n()``): the misspelt word is the mistake, not the token lark
    stopped at."""
    pos = cast("int", tok.start_pos)  # the lexer positions every token it makes
    m = _FIRST_WORD.match(text, text.rfind("\n", 0, pos) + 1)
    if m is None or m.group(1) in KEYWORDS or m.start(1) > pos:
        return None
    if not _NAME_OR_STRING_NEXT.match(text, m.end(1)):  # a keyword is followed by a name or a string
        return None
    word, hint = m.group(1), did_you_mean(m.group(1), KEYWORDS)
    if hint is None:
        return None
    line, col = _line_col(text, m.start(1))
    return f"unknown keyword '{word}'", hint, (line, col, len(word))


def _misaligned_brace(text: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """At the end of a file with a '{' too many, which one the author left open: a '}' that
    starts its line closes the open '{' whose line is indented as much, so any '{' opened
    after that one (on a deeper line) is the unclosed one. Returns (that '{', the '}', the '{' it
    closes), or None when the indentation does not tell -- some line-starting '}' lines up with
    no open '{' (a header continued over lines, say) -- and then the innermost open '{' is named."""
    stack: list[tuple[str, int, int, int]] = []  # (bracket, line, column, indentation of its statement)
    found = None
    current, stmt_indent = 0, 0
    for ch, line, col, indent, first in _brackets(text):
        if line != current:
            current, stmt_indent = line, indent
        if ch in "([{":
            stack.append((ch, line, col, stmt_indent))
        elif ch == "}" and first:
            if not any(b[0] == "{" and b[3] == indent for b in stack):
                return None  # the indentation is not the file's structure
            skipped = []
            while not (stack[-1][0] == "{" and stack[-1][3] == indent):
                skipped.append(stack.pop())
            opened = stack.pop()
            braces = [b for b in skipped if b[0] == "{"]
            if braces and found is None:
                found = (braces[-1][1], braces[-1][2]), (line, col), (opened[1], opened[2])
        elif ch in ")]}" and stack:
            opener = stack.pop()
            if opener[1] < line:  # a header continued over lines: its '{' belongs to the first line
                stmt_indent = min(stmt_indent, opener[3])
    return found


_NUMBER_HINT = "numbers are written 12, 0.5 or 1e-5; a name starts with a letter or '_'"


def _bad_number(text: str, pos: int) -> tuple[str, int, int, int] | None:
    """If ``pos`` is inside a malformed number (``3.5.2``, ``3x``), the whole word and its
    (line, column, width); else None."""
    if pos <= 0 or pos >= len(text) or not text[pos - 1].isdigit() or not (text[pos] == "." or text[pos].isalnum()):
        return None
    start = pos
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "._"):
        start -= 1
    if not text[start].isdigit():  # a name that contains digits, such as conv2
        return None
    stop = pos
    while stop < len(text) and (text[stop].isalnum() or text[stop] in "._"):
        stop += 1
    if text[start:stop].startswith(text[pos - 1] + "..") or ".." in text[start:stop]:
        return None  # a range 1..3
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return text[start:stop], line, col, stop - start


_TERMINAL_NAMES = {
    "RBRACE": "'}'",
    "LBRACE": "'{'",
    "RPAR": "')'",
    "LPAR": "'('",
    "RSQB": "']'",
    "LSQB": "'['",
    "COMMA": "','",
    "COLON": "':'",
    "SEMICOLON": "';'",
    "EQUAL": "'='",
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "$END": "end of file",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/', '//' or '%'",
    "COMP_OP": "a comparison",
    "POW": "'**'",
    "MINUS": "'-'",
    "PLUS": "'+'",
    "DOT": "'.'",
    "__ANON_0": "'..'",
}


def _describe_expected(expected: list[str]) -> str:
    if "LSQB" in expected:  # where an expression may start, a '{' is a search domain's choice: not worth naming
        expected = [e for e in expected if e != "LBRACE"]
    if "RPAR" in expected:  # after a call's argument, a '..' would start a search domain's range: not worth naming
        expected = [e for e in expected if _TERMINAL_NAMES.get(e) != "'..'"]
    names = []
    for e in expected:
        name = _TERMINAL_NAMES.get(e)
        if name is None:
            if e.isupper() and not e.startswith("__"):
                name = e.lower()
            else:
                continue
        if name not in names:
            names.append(name)
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names) if names else "something else"


_CLOSER = {"(": ")", "[": "]", "{": "}"}


def _brackets(text: str, stop: int | None = None) -> Iterator[tuple[str, int, int, int, bool]]:
    """Every bracket outside comments and strings, as (char, line, column, indentation of its
    line, whether it is the first thing on its line)."""
    line, col = 1, 0
    indent, first = 0, True
    in_comment = in_block = in_string = False
    prev = ""
    for ch in text if stop is None else text[:stop]:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
            indent, first = 0, True
            in_comment = False
            in_string = False
        elif first and ch in " \t" and not in_block:
            indent += 1
            continue
        elif in_block:
            if prev == "*" and ch == "/":
                in_block = False
                ch = ""  # the '/' closing a comment does not start another
        elif in_comment:
            pass
        elif in_string:
            if ch == '"':
                in_string = False
        elif ch == "#":
            in_comment = True
        elif ch == '"':
            in_string = True
        elif prev == "/" and ch == "*":
            in_block = True
            ch = ""  # '/*/' does not close the comment it opens
        elif ch in "([{)]}":
            yield ch, line, col, indent, first
        if ch != "\n":
            first = False
        prev = ch


def _open_brackets(text: str, file: str, stop: int | None = None) -> list[tuple[str, int, int]]:
    """The brackets still open at offset ``stop`` (default: the end), as (char, line, column),
    skipping comments and strings. Refuses nesting deeper than :data:`MAX_NESTING`."""
    stack: list[tuple[str, int, int]] = []
    for ch, line, col, _, _ in _brackets(text, stop):
        if ch in "([{":
            stack.append((ch, line, col))
            if len(stack) > MAX_NESTING:
                raise SpecSyntaxError(
                    f"nesting deeper than {MAX_NESTING} levels",
                    Span(file, line, col, line, col + 1, text=text),
                    "flatten the expression or split it with 'let'",
                )
        elif stack:
            stack.pop()
    return stack


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse the text of one .net file into an :class:`ast.Module`.

    >>> m = parse("network n() { input(3, 8, 8); conv(4, 3) }")
    >>> m.networks[0].name
    'n'
    """
    if len(text) > MAX_SOURCE_BYTES or len(text.encode("utf-8", errors="replace")) > MAX_SOURCE_BYTES:
        raise LimitError(
            f"spec text is larger than the limit of {MAX_SOURCE_BYTES:,} bytes",
            Span(file, 1, 1),
            "a .net file describes a network in tens of lines; check that this is a spec",
        )
    return _build(strip_bom(text), file, "start")


def parse_expr(text: str, file: str = "<value>") -> ast.Expr:
    """Parse one expression, such as a ``--set`` value; errors point into ``text`` itself.

    >>> parse_expr("path(far=7, near=7)").name
    'path'
    """
    return _build(text, file, "expr")


def _build(text: str, file: str, start: str):
    _open_brackets(text, file)
    # Parsing allocates many small, long-lived objects; the cyclic collector would
    # rescan them again and again, making big files superlinear. Paused while parsing (any
    # cycles are collected once it resumes).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build_tree(text, file, start)
    finally:
        if collecting:
            gc.enable()


def parse_domain(text: str, file: str = "--space") -> ast.Range | ast.Choice:
    """Parse one search domain, such as a ``--space`` value (``8..32 step 4``, ``{dense, window(2..8)}``).

    >>> parse_domain("1..8 step 2").step.value
    2
    """
    node = _build(text, file, "domain")
    if not isinstance(node, ast.Range | ast.Choice):
        raise SpecSyntaxError(
            "a domain is a range lo..hi or a choice {a, b, ...}",
            node.span,
            "for example 8..32 step 4, 1e-4..1e-1 log, {dense, window(2..8)}",
        )
    return node


def _build_tree(text: str, file: str, start: str):
    try:
        tree = _parse_tree(text, start)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, file, text) from None
    try:
        builder = _ToAst(file, text)
        node = builder.transform(tree)
        if start == "expr":
            _stray_domain(builder.domains)
        elif start == "domain":
            builder._claim(node)
            _stray_domain(builder.domains)
        return node
    except VisitError as exc:  # unwrap: the transformer's own errors are the real ones
        if isinstance(exc.orig_exc, NetdslError):
            raise exc.orig_exc from None
        raise


def parse_file(path: str | Path) -> ast.Module:
    """Parse a spec file: a regular .net file of at most 1 MiB (see source.py)."""
    path = Path(path)
    return parse(read_spec_text(path), str(path))


__all__ = ["grammar_path", "lark", "parse", "parse_domain", "parse_expr", "parse_file"]
