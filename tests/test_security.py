"""Hostile specs and careless runs (issue 16): what netdsl reads, what it refuses, what it shows.

Every refusal is a NetdslError with a location where there is one, exit code 2 at the CLI, one
message, no traceback; a refused file's content never appears in the message."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path

import pytest

from netdsl import build_model
from netdsl.api import compile_spec, torch_source
from netdsl.cli import main
from netdsl.display import for_matplotlib, for_rich, shown
from netdsl.errors import IncludeError, NetdslError, SpecNameError
from netdsl.frontend.source import MAX_SPEC_BYTES

SECRET = "TOP-SECRET-LINE"
SMALL = "network n() {\n    input(3, 8, 8)\n    conv(4)\n}\n"


def cli(argv: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    finally:
        os.chdir(old)
    return rc, out.getvalue(), err.getvalue()


def spec_with_include(folder: Path, path: str, name: str = "root.net") -> Path:
    spec = folder / name
    spec.write_text(f'include "{path}"\n' + SMALL)
    return spec


# ---- confined includes ------------------------------------------------------------------------
@pytest.fixture
def layout(tmp_path):
    """tmp/outside/secret.net (outside the root) and tmp/root/ holding the root spec."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.net").write_text(f"{SECRET} this is not a spec\n")
    (outside / "plain.txt").write_text(f"{SECRET}\n")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    return root, outside


@pytest.mark.parametrize(
    "written, message",
    [
        ("/etc/passwd", "is an absolute path"),
        ("/proc/self/environ", "is an absolute path"),
        ("ABS", "is an absolute path"),  # the absolute path of a real .net file outside the root
        ("../outside/secret.net", "leaves the spec's folder"),
        ("sub/../../outside/secret.net", "leaves the spec's folder"),
        ("../../../../../../../../etc/hosts.net", "leaves the spec's folder"),
        ("sub/escape.net", "leaves the spec's folder"),  # a symlink inside the root pointing out
        ("../outside/plain.txt", "does not end in .net"),
        ("notes.txt", "does not end in .net"),
    ],
)
def test_include_outside_the_root_or_not_a_spec_is_refused_without_reading_it(layout, written, message):
    root, outside = layout
    (root / "sub" / "escape.net").symlink_to(outside / "secret.net")
    (root / "notes.txt").write_text(f"{SECRET}\n")
    if written == "ABS":
        written = str(outside / "secret.net")
    spec = spec_with_include(root, written)
    with pytest.raises(IncludeError) as info:
        compile_spec(spec)
    assert message in info.value.message
    assert (info.value.span.file, info.value.span.line, info.value.span.column) == (str(spec), 1, 1)
    rc, out, err = cli(["check", str(spec)])
    assert rc == 2 and out == ""
    assert SECRET not in err and "Traceback" not in err
    assert err.startswith(f"{spec}:1:1: error: ")


def test_includes_inside_the_root_and_the_library_still_resolve(layout):
    root, _ = layout
    (root / "common.net").write_text("def unit(k) { bn; relu; conv(k, 3) }\n")
    (root / "sub" / "mid.net").write_text('include "../common.net"\ndef twice(k) { unit(k); unit(k) }\n')
    spec = root / "root.net"
    spec.write_text(
        'include "sub/mid.net"\ninclude "lib/densenet.net"\n'
        "network n() {\n    input(3, 8, 8)\n    twice(4)\n    bottleneck(4)\n}\n"
    )
    graph = compile_spec(spec)
    assert graph.nodes[graph.graph["output"]]["shape"] == (4, 8, 8)


def test_a_parse_error_in_an_included_spec_inside_the_root_shows_only_its_line(layout):
    root, _ = layout
    (root / "bad.net").write_text("def ok() { bn }\ndef broken( { bn }\n# SECOND-LINE-NOT-SHOWN\n")
    spec = spec_with_include(root, "bad.net")
    rc, _, err = cli(["check", str(spec)])
    assert rc == 2
    assert err.startswith(f"{root / 'bad.net'}:2:")
    assert "    def broken( { bn }" in err and "SECOND-LINE-NOT-SHOWN" not in err


@pytest.mark.parametrize("kind", ["fifo", "folder", "huge"])
def test_an_include_that_is_not_a_small_regular_file_is_refused_before_opening(tmp_path, kind, monkeypatch):
    target = tmp_path / "x.net"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        with open(target, "wb") as f:  # sparse: 50 MB on paper, nothing on disk
            f.truncate(50 * 2**20)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    spec = spec_with_include(tmp_path, "x.net")
    with pytest.raises(IncludeError) as info:
        compile_spec(spec)
    assert str(target) not in opened
    assert info.value.span.line == 1
    assert {"fifo": "not a regular file", "folder": "is a folder", "huge": f"limit of {MAX_SPEC_BYTES:,}"}[
        kind
    ] in info.value.message


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "folder", "huge", "not_net"])
def test_a_target_that_is_not_a_small_regular_spec_file_is_refused_promptly(tmp_path, kind):
    target = {"dev_zero": Path("/dev/zero"), "not_net": tmp_path / "x.txt"}.get(kind, tmp_path / "x.net")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    elif kind == "huge":
        with open(target, "wb") as f:
            f.truncate(MAX_SPEC_BYTES + 1)
    elif kind == "not_net":
        target.write_text(SECRET)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(cli(["check", str(target)])), daemon=True)
    worker.start()
    worker.join(20)
    assert done, "netdsl check hung on the target"
    rc, out, err = done[0]
    assert rc == 2 and out == "" and SECRET not in err
    assert len(err.strip().split("\n")) == 4 and err.startswith(f"<command line>:1:1: error: spec file '{target}'")


def test_a_spec_starting_with_a_utf8_bom_is_accepted(tmp_path):
    spec = tmp_path / "bom.net"
    spec.write_bytes(b"\xef\xbb\xbf" + SMALL.encode())
    assert compile_spec(spec).graph["total_params"] == 4 * 3 * 9
    assert compile_spec(spec, text="\ufeff" + SMALL).graph["total_params"] == 4 * 3 * 9


def test_a_folder_or_file_named_like_a_preset_does_not_hide_it(tmp_path):
    (tmp_path / "densenet_bc100_k12").mkdir()
    (tmp_path / "sparsenet_bc_v1").write_text(SMALL)
    rc, out, err = cli(["check", "densenet_bc100_k12"], cwd=tmp_path)
    assert (rc, err) == (0, "") and out.startswith("ok: densenet_bc: 769,162 parameters")
    rc, out, _ = cli(["check", "sparsenet_bc_v1"], cwd=tmp_path)
    assert rc == 0 and out.startswith("ok: sparsenet: ")
    # a spec file is named by its suffix or a path
    (tmp_path / "mine.net").write_text(SMALL)
    assert cli(["check", "mine.net"], cwd=tmp_path)[1] == "ok: n: 108 parameters, 2 ops\n"
    rc, _, err = cli(["check", "./sparsenet_bc_v1"], cwd=tmp_path)
    assert rc == 2 and "does not end in .net" in err


# ---- names that cannot collide ---------------------------------------------------------------
LABELLED = "network {net}() {{\n    input(3, 8, 8)\n    {label}: conv(4)\n    relu\n}}\n"


@pytest.mark.parametrize(
    "label", ["input_shape", "spec_name", "memory_format", "None", "class", "forward", "lambda", "training", "_hidden"]
)
def test_labels_that_would_collide_are_refused_at_check_time(tmp_path, label):
    spec = tmp_path / "l.net"
    spec.write_text(LABELLED.format(net="n", label=label))
    rc, out, err = cli(["check", str(spec)])
    assert rc == 2 and out == ""
    assert err.startswith(f"{spec}:3:5: error: '{label}' cannot be a label")


@pytest.mark.parametrize("name", ["f", "F", "None", "squeeze_excite", "affine", "nn"])
def test_network_names_that_would_collide_are_refused_at_the_name(tmp_path, name):
    spec = tmp_path / "n.net"
    spec.write_text(LABELLED.format(net=name, label="stem"))
    with pytest.raises(SpecNameError) as info:
        compile_spec(spec)
    span = info.value.span
    assert (span.line, span.column, span.end_column) == (1, 9, 9 + len(name))
    assert info.value.message.startswith(f"'{name}' cannot be a network name")


def test_names_longer_than_the_cap_are_refused_and_the_cap_itself_builds(tmp_path):
    from netdsl.naming import MAX_NAME_LENGTH

    spec = tmp_path / "long.net"
    longest = "n" * MAX_NAME_LENGTH
    spec.write_text(LABELLED.format(net=longest, label=longest))
    assert "n" * MAX_NAME_LENGTH in torch_source(spec)
    for net, label, line, col, what in [
        (longest + "x", "stem", 1, 9, "the network name"),
        ("net", "y" * 100_000, 3, 5, "the label"),
    ]:
        spec.write_text(LABELLED.format(net=net, label=label))
        with pytest.raises(SpecNameError) as info:
            compile_spec(spec)
        assert (info.value.span.line, info.value.span.column) == (line, col)
        assert info.value.message == f"{what} is {max(len(net), len(label)):,} characters long"


@pytest.mark.parametrize(
    "net, label",
    [("g", "input_shape2"), ("squeeze", "spec"), ("fnet", "memory"), ("none_net", "format_"), ("Net", "F_")],
)
def test_neighbouring_names_are_allowed_and_build(tmp_path, net, label):
    import torch

    spec = tmp_path / "ok.net"
    spec.write_text(LABELLED.format(net=net, label=label))
    for opt in (0, 1):
        model = build_model(spec, opt=opt)
        assert model.input_shape == (3, 8, 8)
        assert tuple(model(torch.zeros(2, 3, 8, 8)).shape) == (2, 4, 8, 8)
    rc, _, err = cli(["compile", str(spec), "-o", str(tmp_path / "net.py")])
    assert rc == 0, err
    compile((tmp_path / "net.py").read_text(), "net.py", "exec")


# ---- escaped text ------------------------------------------------------------------------------
def test_display_helpers_escape_controls_markup_and_mathtext():
    osc8 = "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\"
    assert "\x1b" not in shown(osc8) and shown(osc8).count("\\x1b") == 4
    assert shown("caf\u00e9 \u0441onv") == "caf\u00e9 \u0441onv"  # printable non-ASCII is kept
    assert shown("a\u200bb\u202ec") == "a\\u200bb\\u202ec"  # zero-width and bidi marks are shown
    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=False, width=200)
    for text in ["[bold]x[/bold]", "[link=http://evil]y[/link]", "[/]", "a\\[b", osc8]:
        console.print(for_rich(text))
    printed = console.file.getvalue().split("\n")
    assert printed[:4] == ["[bold]x[/bold]", "[link=http://evil]y[/link]", "[/]", "a\\[b"]
    assert printed[4] == shown(osc8) and for_rich("[link=http://evil]y").spans == []
    assert for_matplotlib("$x^2$ cost") == "\\$x^2\\$ cost"


MARKUP_RULE = (
    "network n() {\n    input(3, 8, 8)\n    conv(4)\n"
    '    block(3, rule(j == 0 or "[link=http://evil]x[/link] $\\alpha$" == "y")) { conv(2) }\n}\n'
)


def test_summary_shows_markup_in_spec_text_literally(tmp_path):
    spec = tmp_path / "m.net"
    spec.write_text(MARKUP_RULE.replace("\\alpha", "a"))
    rc, out, err = cli(["summary", str(spec)])
    assert rc == 0, err
    assert 'block1: rule(j == 0 or "[link=http://evil]x[/link] $a$" == "y"), 3 units' in out


def test_matrix_titles_escape_dollar_signs(tmp_path):
    from matplotlib.figure import Figure

    from netdsl.viz.matrix import _draw, block_matrices

    spec = tmp_path / "m.net"
    spec.write_text(MARKUP_RULE.replace("\\alpha", "a"))
    (m,) = block_matrices(compile_spec(spec))
    fig = Figure()
    ax = fig.subplots()
    _draw(ax, m, fig)
    assert "\\$a\\$" in ax.get_title() and "$a$" not in ax.get_title().replace("\\$", "")


def test_error_messages_show_control_characters_as_escapes(tmp_path):
    spec = tmp_path / "e.net"
    spec.write_text("network n() {\n    input(3, 8, 8)\n    conv(4) \x1b]8;;http://evil\x1b\\ bn\n}\n")
    rc, _, err = cli(["check", str(spec)])
    assert rc == 2 and "\x1b" not in err
    lines = err.split("\n")
    assert lines[1] == "        conv(4) \\x1b]8;;http://evil\\x1b\\ bn"
    assert lines[2] == "                ^^^^"  # under the escaped character, all of it


# ---- arguments: each subcommand with each bad value -> exit 2, one line, no traceback ---------------
SPEC_ARGS = ["densenet_bc100_k12", "--set", "depth=10"]
BAD_ARGUMENTS = [
    (["check", *SPEC_ARGS, "--max-params", "0"], "--max-params: must be at least 1"),
    (["check", *SPEC_ARGS, "--max-nodes", "-5"], "--max-nodes: must be at least 1"),
    (["check", *SPEC_ARGS, "--max-edges", "x"], "--max-edges: expected a positive integer"),
    (["check", *SPEC_ARGS, "--max-layers", "0"], "--max-layers: must be at least 1"),
    (["check", *SPEC_ARGS, "--max-loop-iterations", "-1"], "--max-loop-iterations: must be at least 1"),
    (["check", *SPEC_ARGS, "--max-map-elements", "0"], "--max-map-elements: must be at least 1"),
    (["check", *SPEC_ARGS, "--opt", "2"], "--opt: invalid choice"),
    (["summary", *SPEC_ARGS, "--max-edges", "0"], "--max-edges: must be at least 1"),
    (["compile", *SPEC_ARGS, "--target", "tflite"], "unknown target 'tflite'"),
    (["compile", *SPEC_ARGS, "-o", "{tmp}/missing/net.py"], "the folder '{tmp}/missing' does not exist"),
    (["compile", *SPEC_ARGS, "-o", "{tmp}"], "is a folder"),
    (["compile", *SPEC_ARGS, "-o", "{tmp}/f.txt/net.py"], "does not exist"),
    (
        ["compile", *SPEC_ARGS, "--target", "onnx", "-o", "{tmp}/x.onnx", "--weights", "{tmp}/none.pt"],
        "--weights {tmp}/none.pt: no such file",
    ),
    (["viz", *SPEC_ARGS, "-o", "{tmp}/missing/x.svg"], "does not exist"),
    (["viz", *SPEC_ARGS, "-o", "{tmp}/x.svg", "--max-units", "-1"], "--max-units: must be at least 0"),
    (["viz", *SPEC_ARGS, "-o", "{tmp}/x.png", "--style", "matrix", "--size", "0x0"], "outside 16..20000"),
    (["viz", *SPEC_ARGS, "-o", "{tmp}/x"], "cannot tell the format"),
    (["bench", *SPEC_ARGS, "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["bench", *SPEC_ARGS, "--repeats", "-3"], "--repeats: must be at least 1"),
    (["bench", *SPEC_ARGS, "--device", "tpu"], "--device: invalid choice"),
    (["run", "{tmp}/none.onnx"], "model {tmp}/none.onnx: no such file"),
    (["run", "{tmp}/m.onnx", "--batch", "0"], "--batch: must be at least 1"),
    (["run", "{tmp}/m.onnx", "--threads", "0"], "--threads: must be at least 1"),
    (["run", "{tmp}/m.onnx", "--seed", "-1"], "--seed: must be at least 0"),
    (["run", "{tmp}/m.onnx", "--output", "{tmp}/missing/y.npy"], "does not exist"),
    (["run", "{tmp}/m.onnx", "--input", "{tmp}/none.npy"], "--input {tmp}/none.npy: no such file"),
    (["list", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_ARGUMENTS])
def test_a_bad_argument_exits_2_with_one_line_before_any_work(tmp_path, monkeypatch, argv, message):
    (tmp_path / "f.txt").write_text("a file, not a folder")
    (tmp_path / "m.onnx").write_bytes(b"not parsed: the arguments are refused first")
    compiled = []
    monkeypatch.setattr("netdsl.pipeline.lower_spec", lambda *a, **k: compiled.append(a) or pytest.fail("compiled"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc, out, err = cli(argv)
    assert rc == 2 and out == "" and compiled == []
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "m.onnx"]  # nothing written


def test_every_error_escaping_the_cli_is_netdsls_own():
    # --debug re-raises: what a user error raises is a NetdslError, never another type
    with pytest.raises(NetdslError):
        main(["--debug", "check", "/nonexistent/x.net"])


def test_a_root_spec_reached_through_a_symlink_includes_from_the_folder_it_was_named_in(layout):
    root, outside = layout
    (outside / "real.net").write_text('include "common.net"\n' + SMALL.replace("conv(4)", "unit(4)"))
    (root / "common.net").write_text("def unit(k) { conv(k) }\n")
    (root / "net.net").symlink_to(outside / "real.net")
    assert compile_spec(root / "net.net").graph["total_params"] == 4 * 3 * 9
