"""Semantic tokens from the Pygments lexer (netdsl/highlight.py), the one source of the keywords
(from the grammar) and op names (from the registry) that every highlighter of netdsl uses."""

from __future__ import annotations

from functools import cache, lru_cache

from pygments.token import Comment, Keyword, Name, Number, Operator, String, _TokenType

from ..highlight import NetdslLexer

TOKEN_TYPES = [
    "keyword",
    "function",
    "class",
    "variable",
    "enumMember",
    "label",
    "number",
    "string",
    "comment",
    "operator",
]
TOKEN_MODIFIERS = ["declaration", "defaultLibrary"]

# Pygments token type -> (LSP token type, modifiers bit set); the most specific entry wins.
_MAP: list[tuple[_TokenType, str, int]] = [
    (Name.Builtin, "function", 2),
    (Name.Function, "function", 1),
    (Name.Class, "class", 1),
    (Name.Variable, "variable", 1),
    (Name.Constant, "enumMember", 2),
    (Name.Label, "label", 1),
    (Name, "variable", 0),
    (Keyword.Constant, "enumMember", 2),
    (Keyword, "keyword", 0),
    (Number, "number", 0),
    (String, "string", 0),
    (Comment, "comment", 0),
    (Operator.Word, "keyword", 0),
    (Operator, "operator", 0),
]


@cache
def _lexer() -> NetdslLexer:
    return NetdslLexer()


def _kind(tok: _TokenType) -> tuple[int, int] | None:
    for base, name, mods in _MAP:
        if tok in base:
            return TOKEN_TYPES.index(name), mods
    return None


def semantic_tokens(text: str) -> list[int]:
    """A copy of :func:`_semantic_tokens` (cached: editors ask again for unchanged text)."""
    return list(_semantic_tokens(text))


@lru_cache(maxsize=8)
def _semantic_tokens(text: str) -> tuple[int, ...]:
    """The LSP encoding (relative line, relative start, length, type, modifiers per token), in
    characters; a token across lines (a block comment) is split at each line end."""
    data: list[int] = []
    prev_line = prev_col = 0
    line = col = 0
    for _, tok, value in _lexer().get_tokens_unprocessed(text):
        kind = _kind(tok)
        parts = value.split("\n")
        for i, part in enumerate(parts):
            if i:
                line += 1
                col = 0
            if kind is not None and part.strip():
                data += [line - prev_line, col - (prev_col if line == prev_line else 0), len(part), *kind]
                prev_line, prev_col = line, col
            col += len(part)
    return tuple(data)
