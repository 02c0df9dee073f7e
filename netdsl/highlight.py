"""Syntax highlighting of ``.net`` specs: a Pygments lexer, registered as ``netdsl`` through the
``pygments.lexers`` entry point (``pygmentize -l netdsl specs/sparsenet.net``).

Nothing here is a hand-copied word list. The tokens come from the grammar (``grammars/netdsl.lark``,
via the parser's compiled terminals and rules) and the names from the op registry and the frontend:

- a literal word of the grammar is a keyword; one that makes up an expression atom on its own
  (``true``) is a constant, one inside an ``*_expr`` rule (``and``) an operator word, and one
  followed by a NAME (``def NAME``) gives that name the token type of its rule (:data:`DECLARES`);
- a name the op registry knows (``conv``, ``relu``) is a builtin, and so are the frontend's functions
  and patterns (``len``, ``path``); its structural statements (``block``, ``concat``) are pseudo-keywords
  and its named constants (``dense``, ``next``) constants;
- a name followed by ``:`` is a label; the regex terminals (numbers, strings, comments, operators)
  keep the grammar's own regular expressions.

>>> from pygments.token import Keyword, Name
>>> [(t, v) for t, v in NetdslLexer().get_tokens("def unit(k) { bn; conv(k, 3) }") if v.strip()][:4]
[(Token.Keyword, 'def'), (Token.Name.Function, 'unit'), (Token.Punctuation, '('), (Token.Name, 'k')]
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pygments.lexer import RegexLexer, bygroups
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
    _TokenType,
)

# The grammar's named terminals: their token types. A new regex terminal in the grammar must be
# added here (building the lexer raises otherwise, so the tests notice).
REGEX_TERMINALS: dict[str, _TokenType] = {
    "WS": Whitespace,
    "COMMENT": Comment.Single,
    "BLOCK_COMMENT": Comment.Multiline,
    "STRING": String.Double,
    "FLOAT": Number.Float,
    "INT": Number.Integer,
    "NAME": Name,
    "COMP_OP": Operator,
    "ADD_OP": Operator,
    "MUL_OP": Operator,
    "POW": Operator,
}
# Regex terminals tried in this order (Pygments takes the first rule that matches, not the
# longest): comments before the '/' of MUL_OP, floats before ints, '**' before '*', '==' before '='.
ORDER = ("WS", "COMMENT", "BLOCK_COMMENT", "STRING", "FLOAT", "INT", "NAME", "COMP_OP", "POW", "MUL_OP", "ADD_OP")

# Grammar rule -> token type of the NAME its leading keyword introduces (``def NAME``); other
# rules' names (``let NAME``, ``for NAME``) are variables.
DECLARES: dict[str, _TokenType] = {"template": Name.Function, "network": Name.Class}

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def grammar_words() -> dict[str, _TokenType]:
    """Every literal word of the grammar with its token type (see the module docstring)."""
    from .frontend.parser import _parser

    parser = _parser()
    words = {t.name: t.pattern.value for t in parser.terminals if _WORD.match(str(t.pattern.value))}
    kinds: dict[str, _TokenType] = {}
    for rule in parser.rules:
        syms = [s.name for s in rule.expansion]
        for sym in syms:
            if sym not in words:
                continue
            if syms == [sym]:
                kind = Keyword.Constant
            elif rule.origin.name.endswith("_expr"):
                kind = Operator.Word
            else:
                kind = Keyword
            kinds.setdefault(words[sym], kind)
    return kinds


def declarations() -> dict[str, _TokenType]:
    """Keyword -> token type of the name right after it (``def`` -> Name.Function)."""
    from .frontend.parser import _parser

    parser = _parser()
    out = {}
    for rule in parser.rules:
        syms = rule.expansion
        if len(syms) >= 2 and syms[1].name == "NAME" and syms[0].is_term:
            word = next(t.pattern.value for t in parser.terminals if t.name == syms[0].name)
            out[word] = DECLARES.get(rule.origin.name, Name.Variable)
    return out


def name_kinds() -> dict[str, _TokenType]:
    """Token types of the names a spec can call or refer to, from the registry and frontend."""
    from .frontend.builtins import STRUCTURAL
    from .frontend.evaluate import BUILTIN_FUNCS, CONSTANTS, PATTERN_FUNCS
    from .ir.generators import GENERATORS
    from .ops import SPEC_OPS

    kinds: dict[str, _TokenType] = dict.fromkeys(CONSTANTS, Name.Constant)
    kinds.update(dict.fromkeys([*BUILTIN_FUNCS, *PATTERN_FUNCS, "len"], Name.Builtin))  # len: the evaluator's own
    kinds.update(dict.fromkeys(SPEC_OPS, Name.Builtin))
    kinds.update(dict.fromkeys(GENERATORS, Name.Builtin))  # ws, er, ba inside graph(...)
    kinds.update(dict.fromkeys(STRUCTURAL, Keyword.Pseudo))  # concat/add/mul are statements first
    kinds.update(grammar_words())
    return kinds


def _tokens() -> dict[str, list]:
    from .frontend.parser import _parser

    parser = _parser()
    regex = {t.name: t.pattern.to_regexp() for t in parser.terminals if t.name in REGEX_TERMINALS}
    unknown = {t.name for t in parser.terminals if t.pattern.type == "re"} - set(REGEX_TERMINALS)
    if unknown:
        raise RuntimeError(f"netdsl.highlight: no token type for grammar terminal(s) {sorted(unknown)}")
    literals = sorted(
        (
            str(t.pattern.value)
            for t in parser.terminals
            if t.name not in REGEX_TERMINALS and t.pattern.type == "str" and not _WORD.match(t.pattern.value)
        ),
        key=len,
        reverse=True,  # '..' before any one-character literal
    )
    name = regex["NAME"]
    kinds = name_kinds()

    def word(_lexer, m: re.Match) -> Iterator[tuple[int, _TokenType, str]]:
        yield m.start(), kinds.get(m.group(), Name), m.group()

    rules: list = [
        # 'def NAME', 'network NAME', 'let NAME', 'for NAME'
        *[
            (rf"({re.escape(kw)})(\s+)({name})", bygroups(kinds[kw], Whitespace, kind))
            for kw, kind in declarations().items()
        ],
        (rf"({name})(\s*)(:)", bygroups(Name.Label, Whitespace, Punctuation)),  # ':' only follows labels
        # a keyword argument's name is a plain name, even one that is also a statement (output=next)
        (rf"({name})(\s*)(=)(?!=)", bygroups(Name, Whitespace, Operator)),
    ]
    for term in ORDER:
        pattern = regex[term]
        if term == "NAME":
            rules.append((rf"{pattern}\b", word))
        else:
            rules.append((pattern, REGEX_TERMINALS[term]))
    for lit in literals:
        rules.append((re.escape(lit), Operator if lit in ("=", "..") else Punctuation))
    return {"root": rules}


class NetdslLexer(RegexLexer):
    """Pygments lexer for netdsl ``.net`` specs."""

    name = "netdsl"
    aliases = ["netdsl"]  # noqa: RUF012 -- Pygments reads these class attributes as lists
    filenames = ["*.net"]  # noqa: RUF012
    mimetypes = ["text/x-netdsl"]  # noqa: RUF012
    tokens = _tokens()

    def __init__(self, **options) -> None:
        # Pygments strips leading and trailing blank lines by default: keep them, so line numbers
        # in a highlighted spec are the file's (error messages and the report quote them).
        options.setdefault("stripnl", False)
        super().__init__(**options)
