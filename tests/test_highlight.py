"""The Pygments lexer (netdsl.highlight): exact token types, no error token on any bundled spec,
the entry point, and pygmentize itself."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String, Whitespace

from netdsl.highlight import NetdslLexer, grammar_words, name_kinds
from netdsl.ops import SPEC_OPS

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted([*ROOT.glob("specs/**/*.net"), *ROOT.glob("docs/**/*.net"), *ROOT.glob("examples/**/*.net")])


def tokens(text: str) -> list[tuple]:
    return [(t, v) for t, v in NetdslLexer().get_tokens(text) if t is not Whitespace and v.strip()]


def test_snippet_exact_tokens():
    src = (
        'include "lib/x.net"  # shared\n'
        "/* two\n lines */\n"
        "def unit(k, p=0.5) {\n"
        "    stem: conv(2 * k, 3, bias=true); relu\n"
        "    block(4, path(far=1e-3), output=next) { gelu }\n"
        "    let w = k ** 2 // 3\n"
        "    if not w >= 1 and none { concat(stem) }\n"
        "}\n"
        "network net() { for b in 1..len(x) { unit(b) } }\n"
    )
    assert tokens(src) == [
        (Keyword, "include"),
        (String.Double, '"lib/x.net"'),
        (Comment.Single, "# shared"),
        (Comment.Multiline, "/* two\n lines */"),
        (Keyword, "def"),
        (Name.Function, "unit"),
        (Punctuation, "("),
        (Name, "k"),
        (Punctuation, ","),
        (Name, "p"),
        (Operator, "="),
        (Number.Float, "0.5"),
        (Punctuation, ")"),
        (Punctuation, "{"),
        (Name.Label, "stem"),
        (Punctuation, ":"),
        (Name.Builtin, "conv"),
        (Punctuation, "("),
        (Number.Integer, "2"),
        (Operator, "*"),
        (Name, "k"),
        (Punctuation, ","),
        (Number.Integer, "3"),
        (Punctuation, ","),
        (Name, "bias"),
        (Operator, "="),
        (Keyword.Constant, "true"),
        (Punctuation, ")"),
        (Punctuation, ";"),
        (Name.Builtin, "relu"),
        (Keyword.Pseudo, "block"),
        (Punctuation, "("),
        (Number.Integer, "4"),
        (Punctuation, ","),
        (Name.Builtin, "path"),
        (Punctuation, "("),
        (Name, "far"),
        (Operator, "="),
        (Number.Float, "1e-3"),
        (Punctuation, ")"),
        (Punctuation, ","),
        (Name, "output"),
        (Operator, "="),
        (Name.Constant, "next"),
        (Punctuation, ")"),
        (Punctuation, "{"),
        (Name.Builtin, "gelu"),
        (Punctuation, "}"),
        (Keyword, "let"),
        (Name.Variable, "w"),
        (Operator, "="),
        (Name, "k"),
        (Operator, "**"),
        (Number.Integer, "2"),
        (Operator, "//"),
        (Number.Integer, "3"),
        (Keyword, "if"),
        (Operator.Word, "not"),
        (Name, "w"),
        (Operator, ">="),
        (Number.Integer, "1"),
        (Operator.Word, "and"),
        (Keyword.Constant, "none"),
        (Punctuation, "{"),
        (Keyword.Pseudo, "concat"),
        (Punctuation, "("),
        (Name, "stem"),
        (Punctuation, ")"),
        (Punctuation, "}"),
        (Punctuation, "}"),
        (Keyword, "network"),
        (Name.Class, "net"),
        (Punctuation, "("),
        (Punctuation, ")"),
        (Punctuation, "{"),
        (Keyword, "for"),
        (Name.Variable, "b"),
        (Keyword, "in"),
        (Number.Integer, "1"),
        (Operator, ".."),
        (Name.Builtin, "len"),
        (Punctuation, "("),
        (Name, "x"),
        (Punctuation, ")"),
        (Punctuation, "{"),
        (Name, "unit"),
        (Punctuation, "("),
        (Name, "b"),
        (Punctuation, ")"),
        (Punctuation, "}"),
        (Punctuation, "}"),
    ]


def test_keywords_are_the_grammars_words():
    grammar = (ROOT / "grammars" / "netdsl.lark").read_text()
    quoted = {
        w for w in ("include", "def", "network", "let", "for", "in", "if", "else", "or", "and", "not", "step", "log")
    }
    assert all(f'"{w}"' in grammar for w in quoted)
    assert set(grammar_words()) == quoted | {"true", "false", "none"}


def test_every_registry_op_is_a_builtin():
    kinds = name_kinds()
    assert SPEC_OPS  # the registry is not empty
    for name in SPEC_OPS:
        assert kinds[name] is Name.Builtin, name
    # a name the registry does not know stays a plain name (an identifier that contains an op name too)
    assert tokens("convx relu_ myconv") == [(Name, "convx"), (Name, "relu_"), (Name, "myconv")]


def test_bundled_specs_lex_without_error_and_round_trip():
    assert len(BUNDLED) >= 15
    for path in BUNDLED:
        text = path.read_text(encoding="utf-8")
        toks = list(NetdslLexer().get_tokens(text))
        assert [v for t, v in toks if t in Error] == [], path
        assert "".join(v for _, v in toks) == (text if text.endswith("\n") else text + "\n"), path


def test_sparsenet_classifies_ops_and_comments():
    text = (ROOT / "specs" / "sparsenet.net").read_text()
    toks = tokens(text)
    builtins = {v for t, v in toks if t is Name.Builtin}
    assert {"conv", "bn", "relu", "sigmoid", "gap", "avgpool", "identity", "path", "len"} <= builtins
    comment_lines = [line.strip() for line in text.splitlines() if line.lstrip().startswith("#")]
    assert [v for t, v in toks if t is Comment.Single] == comment_lines
    assert (Name.Function, "sparse_unit") in toks and (Name.Class, "sparsenet") in toks


def test_entry_point_resolves_to_the_lexer():
    # (tomllib is 3.11+; the section is two lines)
    toml = (ROOT / "pyproject.toml").read_text()
    section = toml.split('[project.entry-points."pygments.lexers"]\n', 1)[1].split("\n[", 1)[0]
    (value,) = re.findall(r'^netdsl = "([^"]+)"$', section, re.M)
    module, _, attr = value.partition(":")
    assert getattr(importlib.import_module(module), attr) is NetdslLexer
    assert NetdslLexer.aliases == ["netdsl"] and NetdslLexer.filenames == ["*.net"]


@pytest.mark.slow
def test_pygmentize_highlights_a_spec():
    """After `pip install -e .` (CI), pygmentize finds the lexer through the entry point. It runs as
    `python -m pygments` (pygmentize's own main) under this interpreter: a `pygmentize` first on
    PATH may belong to another Python."""
    from importlib.metadata import entry_points

    installed = [ep.value for ep in entry_points(group="pygments.lexers") if ep.name == "netdsl"]
    assert installed == ["netdsl.highlight:NetdslLexer"], "the entry point is registered on install: pip install -e ."
    out = subprocess.run(
        [sys.executable, "-m", "pygments", "-l", "netdsl", "-f", "terminal", str(ROOT / "specs" / "sparsenet.net")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "\x1b[" in out  # ANSI colors
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert plain == (ROOT / "specs" / "sparsenet.net").read_text()
    # the op names are colored: an escape sequence right before 'conv'
    assert "\x1b[" in out.split("conv(2 * k")[0].rsplit("stem", 1)[-1]


def test_language_doc_lists_the_grammars_keywords():
    doc = (ROOT / "docs" / "language.md").read_text()
    (line,) = re.findall(r"^- Keywords: `([^`]+)`", doc, re.M)
    assert set(line.split()) == set(grammar_words())
