"""The invalid-spec corpus: every file in tests/invalid/ is a mistake, and netdsl must answer it
with exactly the message in the file beside it (``name.err``), exit code 2 and no traceback.

A case's first comment line names the mistake; an optional ``# argv: ...`` line gives the
command (``{spec}`` is the case file); the default is ``check {spec}``. Files under
tests/invalid/inc/ are helpers that cases include.

After a deliberate change of wording, rewrite the expected messages with
``python tests/test_invalid.py --regen`` and review the diff.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.errors import NetdslError

CORPUS = Path(__file__).resolve().parent / "invalid"
CASES = sorted(CORPUS.glob("*.net"))
HEAD = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+): (?P<kind>syntax error|error): (?P<msg>.+)$")


@contextlib.contextmanager
def _chdir(folder: Path):  # contextlib.chdir is Python 3.11+; netdsl supports 3.10
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def argv_of(case: Path) -> list[str]:
    for line in case.read_text().splitlines()[:3]:
        if line.startswith("# argv:"):
            return [a.replace("{spec}", case.name) for a in shlex.split(line[len("# argv:") :])]
    return ["check", case.name]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process from the corpus folder, so messages name files as 'case.net'."""
    out, err = io.StringIO(), io.StringIO()
    with _chdir(CORPUS), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def assert_matches(actual: str, expected: str) -> None:
    """Equal text, except that an expected line ending in ' ...' only fixes the line's start (for
    hints listing names others may add to, such as the preset names)."""
    got, want = actual.split("\n"), expected.split("\n")
    assert len(got) == len(want), actual
    for g, w in zip(got, want, strict=True):
        if w.endswith(" ..."):
            assert g.startswith(w[:-4]), (g, w)
        else:
            assert g == w


def test_corpus_is_large_and_complete():
    assert len(CASES) >= 40
    missing = [c.name for c in CASES if not c.with_suffix(".err").is_file()]
    assert missing == []
    orphans = [e.name for e in CORPUS.glob("*.err") if not e.with_suffix(".net").is_file()]
    assert orphans == []


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_invalid_spec_gives_its_located_message(case: Path):
    rc, out, err = run_cli(argv_of(case))
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    assert_matches(err, case.with_suffix(".err").read_text())
    # The shape every message has: file:line:col, the source line, a caret under the mistake.
    lines = err.rstrip("\n").split("\n")
    head = HEAD.match(lines[0])
    assert head is not None, lines[0]
    assert lines[1].startswith("    ")
    caret = lines[2][4:]
    assert set(caret.strip()) == {"^"}
    if head["file"] == case.name:  # the quoted line is the file's own line, caret at the column
        source = case.read_text().splitlines()[int(head["line"]) - 1]
        if len(source) <= 120:
            assert lines[1] == "    " + source.expandtabs(1)
            assert len(caret) - len(caret.lstrip()) == int(head["col"]) - 1
    else:
        assert head["file"] in ("--set", "<command line>") or head["file"].startswith("inc/")
    assert all(line.startswith("hint: ") for line in lines[3:])


def test_debug_flag_reraises_instead_of_printing():
    case = CORPUS / "name_unknown_op.net"
    with _chdir(CORPUS), pytest.raises(NetdslError) as info:
        main(["--debug"] + argv_of(case))
    assert_matches(str(info.value) + "\n", case.with_suffix(".err").read_text())


@pytest.mark.parametrize("name", ["limit_params_1e12"])
def test_real_process_exits_2_without_traceback(name):
    case = CORPUS / f"{name}.net"
    proc = subprocess.run(
        [sys.executable, "-m", "netdsl"] + argv_of(case), cwd=CORPUS, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert_matches(proc.stderr, case.with_suffix(".err").read_text())


def test_path_longer_than_block_is_a_located_warning_not_an_error(tmp_path):
    spec = tmp_path / "w.net"
    spec.write_text("network w() {\n    input(3, 8, 8)\n    block(2, path(far=9, near=1)) { conv(4) }\n}\n")
    rc, out, err = run_cli(["check", str(spec)])
    assert rc == 0
    assert out == "ok: w: 360 parameters, 5 ops\n"
    assert err == (
        f"{spec}:3:14: warning: path(far=9, near=1) is longer than the block: its units have at most 2 "
        "features to read, so every unit reads all its predecessors (the block is dense)\n"
        "        block(2, path(far=9, near=1)) { conv(4) }\n"
        "                 ^^^^^^^^^^^^^^^^^^^\n"
        "hint: far and near are each at most 2 here; write 'dense' if dense is meant\n"
    )


def test_sparsenet_v1_path_14_in_blocks_of_8_stays_valid_and_quiet():
    rc, out, err = run_cli(["check", str(CORPUS.parent.parent / "specs" / "sparsenet.net")])
    assert (rc, err) == (0, "")
    assert out.startswith("ok: sparsenet: ")


def _regen() -> None:
    for case in CASES:
        _, _, err = run_cli(argv_of(case))
        if case.stem == "name_unknown_preset":  # the other close names change as presets are added
            err = re.sub(r"(hint: did you mean '[^']+').*", r"\1 ...", err)
        case.with_suffix(".err").write_text(err)
    print(f"wrote {len(CASES)} expected messages")


if __name__ == "__main__":
    if sys.argv[1:] == ["--regen"]:
        _regen()


# ---- hostile names: refused with a located error, or the emitted file is inert -------------
HOSTILE = [
    "__import__('os').system('true')",
    'a"b',
    "a'b",
    "a\nb",
    "\u0441onv",  # Cyrillic 'с'
    "con\u200bv",
    "forward",
    "training",
    "__class__",
    "_modules",
    "__dict__",
    "self",
    "torch",
]
SMALL = "network n() {{\n    input(3, 8, 8)\n    {label}: conv(4)\n    relu\n}}\n"


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_label_is_refused_with_a_located_error(tmp_path, name):
    spec = tmp_path / "h.net"
    spec.write_text(SMALL.format(label=name), encoding="utf-8")
    out = tmp_path / "h.py"
    rc, stdout, err = run_cli(["compile", str(spec), "-o", str(out)])
    assert rc == 2 and stdout == ""
    assert HEAD.match(err.split("\n")[0]) is not None, err
    assert err.split("\n")[0].startswith(f"{spec}:3:") or err.split("\n")[0].startswith(f"{spec}:4:")
    assert not out.exists()


@pytest.mark.parametrize("where", ["template", "network"])
@pytest.mark.parametrize("name", HOSTILE[:6], ids=range(6))
def test_hostile_template_and_network_names_are_refused(tmp_path, where, name):
    text = (
        f"def {name}() {{ bn }}\nnetwork n() {{\n    input(3, 8, 8)\n}}\n"
        if where == "template"
        else f"network {name}() {{\n    input(3, 8, 8)\n}}\n"
    )
    spec = tmp_path / "h.net"
    spec.write_text(text, encoding="utf-8")
    rc, _, err = run_cli(["check", str(spec)])
    assert rc == 2
    assert err.startswith(f"{spec}:") and "syntax error" in err.split("\n")[0]


PAYLOAD = 'x"""; __import__("os").system("touch PWNED"); """'
INERT_TOP_LEVEL = (ast.Expr, ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.Assign)


def test_emitted_torch_file_is_inert_even_for_a_hostile_file_name_and_odd_labels(tmp_path):
    # Labels that are legal identifiers but name the forward's own input variable or a builtin.
    text = (CORPUS.parent.parent / "specs" / "densenet_bc.net").read_text().replace("stem:", "x:", 1)
    spec = tmp_path / f"{PAYLOAD}.net"
    spec.write_text(text)
    (tmp_path / "lib").mkdir()  # found before the bundled library: its head's label is 'exec'
    (tmp_path / "lib" / "densenet.net").write_text(
        (CORPUS.parent.parent / "specs" / "lib" / "densenet.net").read_text().replace("fc:", "exec:")
    )
    out = tmp_path / "net.py"
    rc, _, err = run_cli(["compile", str(spec), "-o", str(out), "--set", "depth=10"])
    assert rc == 0, err
    source = out.read_text()
    tree = ast.parse(source)  # valid Python...
    assert all(isinstance(node, INERT_TOP_LEVEL) for node in tree.body)  # ...that only defines things
    assert all(not (isinstance(n, ast.Name) and n.id in ("__import__", "eval", "system")) for n in ast.walk(tree))
    docstring = ast.get_docstring(tree)
    assert PAYLOAD in docstring  # the file name is quoted as data, not code
    # Import and run it in a fresh interpreter: it builds, runs forward, and touches nothing.
    probe = (
        "import runpy, torch; ns = runpy.run_path('net.py'); print(tuple(ns['Net']()(torch.zeros(1, 3, 32, 32)).shape))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(1, 10)"
    assert not (tmp_path / "PWNED").exists()


def test_onnx_names_are_validated_identifiers_and_metadata_is_data(tmp_path):
    onnx = pytest.importorskip("onnx")
    spec = tmp_path / f"{PAYLOAD}.net"
    spec.write_text((CORPUS.parent.parent / "specs" / "densenet_bc.net").read_text())
    out = tmp_path / "net.onnx"
    rc, _, err = run_cli(["compile", str(spec), "--target", "onnx", "-o", str(out), "--set", "depth=10"])
    assert rc == 0, err
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    g = model.graph
    names = (
        [n.name for n in g.node]
        + [v.name for v in list(g.input) + list(g.output)]
        + [t.name for t in g.initializer]
        + [o for n in g.node for o in n.output]
    )
    assert names and all(re.fullmatch(r"[A-Za-z0-9_./]+", n) for n in names), [
        n for n in names if not re.fullmatch(r"[A-Za-z0-9_./]+", n)
    ]
    assert dict((p.key, p.value) for p in model.metadata_props)["netdsl.spec"] == spec.name
    assert not (tmp_path / "PWNED").exists()


# ---- atomic output ---------------------------------------------------------------------------
def test_failed_compile_never_overwrites_a_good_output_nor_leaves_a_partial_file(tmp_path):
    out = tmp_path / "net.py"
    good = CORPUS.parent.parent / "specs" / "densenet_bc.net"
    rc, _, _ = run_cli(["compile", str(good), "-o", str(out), "--set", "depth=10"])
    assert rc == 0
    before = out.read_bytes()
    rc, _, err = run_cli(["compile", str(CORPUS / "shape_add_channels.net"), "-o", str(out)])
    assert rc == 2 and "add needs equal shapes" in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.py"]


def test_write_interrupted_midway_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    from netdsl import io as nio

    out = tmp_path / "model.onnx"
    nio.write_atomic(out, b"good")

    def broken_fsync(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nio.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        nio.write_atomic(out, b"half-written")
    assert out.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_docs_errors_examples_are_the_corpus_messages():
    """docs/errors.md quotes corpus cases; a wording change must update both (run --regen, then
    copy), so the documentation never shows a message netdsl no longer prints."""
    doc = (CORPUS.parent.parent / "docs" / "errors.md").read_text()
    blocks = re.findall(r"```\n\$ netdsl [^\n]*?(\w+)\.net[^\n]*\n(.*?)\n```", doc, re.S)
    blocks += [
        ("name_unknown_preset", b)
        for b in re.findall(r"```\n\$ netdsl check densenet_bc100_k21\n(.*?)\n```", doc, re.S)
    ]
    assert len(blocks) >= 30
    for name, text in blocks:
        assert text + "\n" == (CORPUS / f"{name}.err").read_text(), name
