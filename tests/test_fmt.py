"""``netdsl fmt`` (netdsl/fmt.py, netdsl/cli/cmd_fmt.py): the canonical layout is a fixed point of
every bundled spec, formatting is idempotent, keeps the AST, the IR and every comment, and the
command rewrites, checks and diffs like black / ruff format."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.errors import NetdslError, SpecSyntaxError
from netdsl.fmt import format_text
from netdsl.frontend import parse
from netdsl.presets import presets, specs_dir

from fuzz.grammar import generate
from fuzz.mutations import mutate, spec_files, tokens
from helpers import FAST_SPECS, compiled

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(p for folder in ("specs", "examples", "docs") for p in (ROOT / folder).rglob("*.net"))
SPECS = specs_dir()
_PUNCT = set("()[]{},;:")


def _comments(text: str) -> Counter:
    """The comments of a spec, by the fuzzer's own tokenizer (not the formatter's), each line's
    trailing whitespace dropped (the formatter strips it everywhere)."""
    found = [t for t in tokens(text.replace("\r\n", "\n")) if t.startswith(("#", "/*"))]
    return Counter("\n".join(line.rstrip() for line in c.split("\n")) for c in found)


def _ir(graph) -> tuple:
    """A compiled graph without source locations: op ids with every attribute, edges, totals."""
    nodes = {n: {k: v for k, v in d.items() if k != "span"} for n, d in graph.nodes(data=True)}
    edges = sorted((u, v, repr(sorted(d.items()))) for u, v, d in graph.edges(data=True))
    g = graph.graph
    return nodes, edges, g["name"], g["params"], g["total_params"], g["total_flops"]


def _messy(text: str, rng: random.Random, lines: bool) -> str:
    """The same spec laid out badly: random spaces and tabs between tokens (removed next to
    punctuation), and with ``lines`` also line breaks after commas and comments anywhere."""
    toks = tokens(text)
    out: list[str] = []
    for i, tok in enumerate(toks):
        if tok.isspace():
            newlines = tok.count("\n")
            if newlines:
                out.append("\n" * newlines + rng.choice(["", "  ", "\t", " " * 7]))
            else:
                nearby = {toks[i - 1][-1:], toks[i + 1][:1] if i + 1 < len(toks) else ""}
                out.append(rng.choice(["", " ", "   ", "\t"] if nearby & _PUNCT else [" ", "   ", "\t "]))
            continue
        out.append(tok)
        if tok.startswith("#"):
            continue  # the newline after it is the next token
        r = rng.random()
        if lines and tok == "," and r < 0.3:
            out.append("\n" + " " * rng.randrange(12))
        elif lines and r < 0.04:
            out.append(f"  # note {i}   \n")
        elif lines and r < 0.08:
            out.append(f" /* c{i} */ ")
        elif r < 0.15:
            out.append(rng.choice([" ", "  ", "\t"]))
    return "".join(out)


# ---- the bundled specs


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: str(p.relative_to(ROOT)))
def test_bundled_spec_is_in_the_canonical_layout(path):
    text = path.read_text()
    assert format_text(text, str(path)) == text


@pytest.mark.parametrize("rounds", [1, pytest.param(3, marks=pytest.mark.slow)])  # respacings per file
def test_horizontal_spacing_does_not_matter(rounds):
    # Spaces and tabs are all the formatter's: any respacing of a bundled spec formats back to it.
    rng = random.Random(18)
    for path in spec_files():
        text = path.read_text()
        for _ in range(rounds):
            messy = _messy(text, rng, lines=False)
            assert messy != text
            assert format_text(messy) == text, path


# The specs compiled from the reformatted copy: one per structure in the fast suite (every file is
# still reformatted and checked there), the others in the slow suite.
_COMPARED = [
    pytest.param(True, id="representatives"),
    pytest.param(False, id="others", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("representatives", _COMPARED)
def test_a_messy_layout_formats_to_the_same_ir_and_keeps_its_comments(tmp_path, representatives):
    # Every bundled spec and library file laid out badly (line breaks after commas, comments
    # anywhere), formatted, written to a copy of specs/ and compiled: the IR equals the bundled one's.
    rng = random.Random(2026)
    for path in spec_files():
        messy = _messy(path.read_text(), rng, lines=True)
        out = format_text(messy)
        assert format_text(out) == out, path
        assert parse(out) == parse(messy), path
        assert _comments(out) == _comments(messy) and len(_comments(out)) > len(_comments(path.read_text())), path
        target = tmp_path / path.relative_to(SPECS)
        target.parent.mkdir(exist_ok=True)
        target.write_text(out)
    for path in sorted(SPECS.glob("*.net")):
        if (path.stem in FAST_SPECS) != representatives:
            continue
        formatted = netdsl.compile_spec(tmp_path / path.name)
        assert formatted.graph["file"] == str(tmp_path / path.name)
        assert _ir(formatted) == _ir(compiled(path)), path.name


@pytest.mark.slow
def test_every_preset_compiles_to_the_same_ir_from_a_messy_reformatted_spec(tmp_path):
    rng = random.Random(7)
    for path in spec_files():
        target = tmp_path / path.relative_to(SPECS)
        target.parent.mkdir(exist_ok=True)
        target.write_text(format_text(_messy(path.read_text(), rng, lines=True)))
    for name, preset in sorted(presets().items()):
        formatted = netdsl.compile_spec(tmp_path / preset.spec, **preset.values)
        assert _ir(formatted) == _ir(netdsl.compile_spec(name)), name


# ---- generated programs and mutants


def _check_program(text: str) -> bool:
    """Idempotent, same AST, same comments; False if the text is not a spec."""
    try:
        tree = parse(text)
    except NetdslError:
        return False
    out = format_text(text)
    assert format_text(out) == out, text
    assert parse(out) == tree, text
    assert _comments(out) == _comments(text), text
    return True


def _fuzz(grammar: int, mutants: int, seed: int) -> tuple[int, int]:
    accepted_programs = sum(_check_program(generate(random.Random(seed * 100_003 + n))) for n in range(grammar))
    seeds = [p.read_text() for p in spec_files()]
    accepted_mutants = 0
    for n in range(mutants):
        rng = random.Random(seed * 100_003 + n)
        accepted_mutants += _check_program(mutate(seeds[n % len(seeds)], rng, rng.choice((1, 1, 2, 3))).text)
    return accepted_programs, accepted_mutants


# 15 programs and 40 mutants in the fast suite, 40 and 120 in the slow one (besides the thousands)
@pytest.mark.parametrize(
    "grammar, mutants, least",
    [(15, 40, (5, 10)), pytest.param(40, 120, (20, 25), marks=pytest.mark.slow)],
    ids=["fast", "more"],
)
def test_idempotent_on_generated_programs_and_mutants(grammar, mutants, least):
    programs, accepted = _fuzz(grammar, mutants, seed=18)
    assert programs > least[0] and accepted > least[1]  # a third or more of the programs and mutants parse


@pytest.mark.slow
def test_idempotent_on_thousands_of_generated_programs_and_mutants():
    programs, mutants = _fuzz(3000, 3000, seed=0)
    assert programs > 1500 and mutants > 700


# ---- exact layouts

CASES = {
    "spacing": (
        "network  n ( a = 1 , b=[1,2,] , ){input( 3,8 , 8 ) ;conv( 8,3 , stride = 2 );;"
        "let x = - a ** -2+(a*b[ 0 ])//2}",
        "network n(a=1, b=[1, 2]) { input(3, 8, 8); conv(8, 3, stride=2); let x = -a ** -2 + (a * b[0]) // 2 }\n",
    ),
    "statements keep their lines, joined by '; '": (
        "network n() {\n  input(3, 8, 8) bn relu\n\n\n\n      conv(8) ;\n  for i in 1 .. 3 { bn ; } }",
        "network n() {\n    input(3, 8, 8); bn; relu\n\n    conv(8)\n    for i in 1..3 { bn }\n}\n",
    ),
    "bodies, else and labels": (
        "def t(k) {\nif k > 1 { bn } \n  else if not k { relu } else { identity }\nif k {\n bn }\n"
        "else { relu }\ns : conv( k ) }\ndef u() {\n}",
        "def t(k) {\n    if k > 1 { bn }\n    else if not k { relu } else { identity }\n    if k {\n        bn\n"
        "    } else { relu }\n    s: conv(k)\n}\n\ndef u() {}\n",
    ),
    "comments and continuation lines": (
        '# header   \ninclude "lib/densenet.net"\n# about n\nnetwork n(blocks=[1, 2],\n  k=4) {   # trailing\n'
        "    input(3, 8, 8)\n\n\n  # a note\n  conv(8, # why 8\n 3) /* kept */\n    # the end\n}\n\n\n\n",
        '# header\ninclude "lib/densenet.net"\n\n# about n\nnetwork n(blocks=[1, 2],\n          k=4) {  # trailing\n'
        "    input(3, 8, 8)\n\n    # a note\n    conv(8,  # why 8\n         3) /* kept */\n    # the end\n}\n",
    ),
    "block comments": (
        "network n() {\n  /* off */ bn\n  relu /* why */ ; relu\n/* a\n   b */\n  conv( /* c */ 8)\n}",
        "network n() {\n    /* off */ bn\n    relu /* why */; relu\n    /* a\n   b */\n    conv(/* c */ 8)\n}\n",
    ),
    "empty and comment-only files": ("\n\n  \n", ""),
    "a comment only": ("  # just this  ", "# just this\n"),
    "crlf and a BOM": ("\ufeffnetwork n() {\r\n  bn\r\n}\r\n", "network n() {\n    bn\n}\n"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exact_layout(case):
    before, after = CASES[case]
    assert format_text(before) == after
    assert format_text(after) == after


def test_a_spec_that_does_not_parse_is_a_located_error():
    with pytest.raises(SpecSyntaxError) as info:
        format_text("network n() {\n    conv(8, , 3)\n}\n", "x.net")
    assert str(info.value).startswith("x.net:2:13: syntax error: unexpected ','\n        conv(8, , 3)\n")


# ---- the command


@pytest.fixture
def tree(tmp_path):
    """A folder of specs: one formatted, one not, one nested and not, one hidden and not."""
    ugly = "network n(){input(3,8,8);conv(8,3)}\n"
    files = {
        "good.net": "network n() { input(3, 8, 8); conv(8, 3) }\n",
        "ugly.net": ugly,
        "sub/deep.net": ugly,
        ".hidden/skip.net": ugly,
        "notes.txt": ugly,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def _texts(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_check_lists_the_files_that_would_change_and_writes_nothing(tree, capsys):
    before = _texts(tree)
    assert main(["fmt", "--check", str(tree)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"would reformat {tree / 'sub/deep.net'}",
        f"would reformat {tree / 'ugly.net'}",
        "2 files would be reformatted, 1 already formatted",
    ]
    assert _texts(tree) == before
    assert main(["fmt", "--check", str(tree / "good.net")]) == 0


def test_fmt_rewrites_only_the_files_that_change(tree, capsys):
    good = tree / "good.net"
    os.utime(good, (1_000_000, 1_000_000))
    assert main(["fmt", str(tree)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "2 files reformatted, 1 left unchanged"
    assert sorted(err[:-1]) == [f"reformatted {tree / 'sub/deep.net'}", f"reformatted {tree / 'ugly.net'}"]
    expected = "network n() { input(3, 8, 8); conv(8, 3) }\n"
    assert (tree / "ugly.net").read_text() == (tree / "sub/deep.net").read_text() == expected
    assert (tree / ".hidden/skip.net").read_text() != expected  # hidden folders are not searched
    assert (tree / "notes.txt").read_text() != expected
    assert good.stat().st_mtime == 1_000_000  # not rewritten
    assert main(["fmt", "--check", str(tree)]) == 0
    assert list(tree.rglob("*.tmp")) == []


def test_diff_prints_a_unified_diff_and_writes_nothing(tree, capsys):
    before = _texts(tree)
    assert main(["fmt", "--diff", str(tree / "ugly.net")]) == 1
    out = capsys.readouterr().out
    name = tree / "ugly.net"
    assert out == (
        f"--- {name}\n+++ {name}\n@@ -1 +1 @@\n"
        "-network n(){input(3,8,8);conv(8,3)}\n+network n() { input(3, 8, 8); conv(8, 3) }\n"
    )
    assert _texts(tree) == before


def test_a_folder_without_specs_is_fine(tmp_path, capsys):
    assert main(["fmt", "--check", str(tmp_path)]) == 0
    assert capsys.readouterr().err == "0 files would be reformatted, 0 already formatted\n"


def test_a_file_that_does_not_parse_exits_2_and_is_left_alone(tree, capsys):
    bad = tree / "bad.net"
    bad.write_text("network n() {\n  conv(8) @ bn\n}\n")
    assert main(["fmt", str(tree)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2:11: syntax error: unexpected character '@'\n      conv(8) @ bn\n" in err
    assert err.endswith("2 files reformatted, 1 left unchanged, 1 could not be formatted\n")
    assert bad.read_text() == "network n() {\n  conv(8) @ bn\n}\n"
    assert (tree / "ugly.net").read_text() == "network n() { input(3, 8, 8); conv(8, 3) }\n"  # the others are done


def test_output_that_would_change_the_ast_is_refused_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    # the re-parse check of format_text, seen through a formatter that drops a statement
    from netdsl import fmt

    monkeypatch.setattr(fmt._Formatter, "run", lambda self: "network n() { bn }\n")
    spec = tmp_path / "s.net"
    spec.write_text("network n(){bn;relu}")
    assert main(["fmt", str(spec)]) == 2
    assert capsys.readouterr().err.startswith(f"{spec}:1:1: internal error: netdsl fmt would change the meaning of")
    assert spec.read_text() == "network n(){bn;relu}"


def test_bad_paths_are_one_line_errors(tmp_path, capsys):
    assert main(["fmt", str(tmp_path / "missing.net")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.net'}: no such file or folder"
    latin1 = tmp_path / "latin1.net"
    latin1.write_bytes(b"# caf\xe9\nnetwork n() { bn }\n")
    assert main(["fmt", str(latin1)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    assert latin1.read_bytes() == b"# caf\xe9\nnetwork n() { bn }\n"


def test_without_paths_the_current_folder_is_formatted(tree, monkeypatch, capsys):
    monkeypatch.chdir(tree)
    os.chmod(tree / "ugly.net", 0o640)
    assert main(["fmt"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "reformatted sub/deep.net",
        "reformatted ugly.net",
        "2 files reformatted, 1 left unchanged",
    ]
    assert (tree / "ugly.net").stat().st_mode & 0o777 == 0o640  # the file keeps its permissions


def test_the_ci_check_passes(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["fmt", "--check", "specs", "examples", "docs"]) == 0
    assert capsys.readouterr().err == f"0 files would be reformatted, {len(BUNDLED)} already formatted\n"


def test_a_symlinked_spec_is_rewritten_through_the_link(tmp_path):
    real = tmp_path / "real.net"
    real.write_text("network n(){bn}")
    link = tmp_path / "link.net"
    link.symlink_to(real)
    assert main(["fmt", str(link)]) == 0
    assert link.is_symlink() and real.read_text() == "network n() { bn }\n"


def test_stdin_to_stdout(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("network n(){bn}"))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == "network n() { bn }\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("network n() { bn }\n"))
    assert main(["fmt", "--check", "-"]) == 0
    assert capsys.readouterr().out == ""


def test_the_command_formats_like_the_function(tmp_path):
    # the command is format_text plus files: its output on a messy spec is the function's
    rng = random.Random(3)
    text = _messy((SPECS / "sparsenet.net").read_text(), rng, lines=True)
    spec = tmp_path / "s.net"
    spec.write_text(text)
    assert main(["fmt", str(spec)]) == 0
    assert spec.read_text() == format_text(text) != text
    assert all(line == line.rstrip() for line in spec.read_text().split("\n"))
