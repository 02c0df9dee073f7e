"""The CLI end to end: exit codes, located messages without tracebacks, JSON summary.

The commands run in-process through ``netdsl.cli.main(argv)``; a few smoke tests run the real
``python -m netdsl`` to prove the entry point, the exit code and stderr of a fresh interpreter.
"""

import json
import subprocess
import sys

import pytest

from netdsl.cli import main
from netdsl.errors import SpecNameError

from helpers import ROOT, SPECS, compiled, spec_params

DENSENET_BC = str(ROOT / "specs" / "densenet_bc.net")


def netdsl_process(*args):
    return subprocess.run([sys.executable, "-m", "netdsl", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def run(capsys, *args):
    """``netdsl ARGS`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---- true subprocess smoke tests: the installed entry point in a fresh interpreter ----------------


def test_process_summary_json_reports_published_count():
    r = netdsl_process("summary", "specs/densenet_bc.net", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["params"] == 769_162
    assert data["flops"] == 287_929_692


def test_process_error_is_one_located_message_exit_2(write_spec):
    p = write_spec("network n() {\n    input(3, 8, 8)\n    conv(8, 3\n    bn\n}\n")
    r = netdsl_process("check", p)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0].startswith(f"{p}:4:5: syntax error: missing closing parenthesis ')'")


@pytest.mark.slow
@pytest.mark.parametrize("cmd", ["check", "summary"])
def test_process_every_spec(cmd):
    for spec in SPECS:
        r = netdsl_process(cmd, spec)
        assert r.returncode == 0, (spec, r.stderr)


# ---- in-process ------------------------------------------------------------------------------------


def test_summary_json_reports_published_count(capsys):
    code, out, _ = run(capsys, "summary", DENSENET_BC, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["params"] == 769_162
    assert data["flops"] == 287_929_692
    assert data["connections"] == 3 * 136
    assert [b["units"] for b in data["blocks"]] == [16, 16, 16]


def test_summary_table_has_totals(capsys):
    code, out, _ = run(capsys, "summary", DENSENET_BC)
    assert code == 0
    assert "769,162" in out and "block1.unit16" in out


def test_syntax_error_located_exit_2(write_spec, capsys):
    p = write_spec("network n() {\n    input(3, 8, 8)\n    conv(8, 3\n    bn\n}\n")
    code, out, err = run(capsys, "check", p)
    assert code == 2 and out == ""
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"{p}:4:5: syntax error: missing closing parenthesis ')'")
    assert "        bn" in err and "        ^^" in err


def test_unknown_name_located_exit_2(write_spec, capsys):
    p = write_spec('include "lib/densenet.net"\nnetwork n() {\n    input(3, 8, 8)\n    botleneck(4)\n}\n')
    code, _, err = run(capsys, "summary", p)
    assert code == 2
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"{p}:4:5: error: unknown op or template 'botleneck'",
        "        botleneck(4)",
        "        ^^^^^^^^^",
        "hint: did you mean 'bottleneck'?",
    ]


def test_unknown_preset_points_at_the_command_line(capsys):
    code, _, err = run(capsys, "check", "densenet_bc100_k13")
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[:3] == [
        "<command line>:1:1: error: unknown preset 'densenet_bc100_k13'",
        "    densenet_bc100_k13",
        "    ^^^^^^^^^^^^^^^^^^",
    ]


def test_debug_lets_the_error_escape_with_its_traceback(write_spec):
    p = write_spec("network n() { input(3, 8, 8); nope }")
    with pytest.raises(SpecNameError, match="unknown op or template 'nope'"):
        main(["--debug", "check", str(p)])


def test_set_wrong_type_points_into_value(capsys):
    code, _, err = run(capsys, "check", DENSENET_BC, "--set", "k=[1")
    assert code == 2 and "Traceback" not in err
    # the message quotes the whole NAME=VALUE argument, the caret under the '[' left open
    assert err.startswith("--set:1:3: syntax error: ")
    assert err.split("\n")[1:3] == ["    k=[1", "      ^"]


def test_set_unknown_parameter(capsys):
    code, _, err = run(capsys, "check", DENSENET_BC, "--set", "kk=3")
    assert code == 2
    assert "no parameter 'kk'" in err and "did you mean 'k'?" in err


def test_compile_writes_file_and_failure_writes_nothing(tmp_path, write_spec, capsys):
    out = tmp_path / "m.py"
    code, _, err = run(capsys, "compile", DENSENET_BC, "--set", "depth=10", "-o", out)
    assert code == 0 and err == f"wrote {out}\n"
    good = out.read_text()
    assert "class DensenetBc(nn.Module)" in good
    bad = write_spec("network n() { input(3, 8, 8); conv(0) }")
    code, _, _ = run(capsys, "compile", bad, "-o", out)
    assert code == 2
    assert out.read_text() == good  # the good file is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.py")] == []


@pytest.mark.parametrize("spec", spec_params())  # one spec per structure fast, every spec slow
def test_every_spec_checks_and_summarizes_its_compiled_counts(capsys, spec):
    graph = compiled(spec)
    code, out, err = run(capsys, "check", spec)
    assert code == 0, (spec, err)
    assert out.startswith(f"ok: {graph.graph['name']}: {graph.graph['total_params']:,} parameters"), out
    code, out, err = run(capsys, "summary", spec, "--json")
    assert code == 0, (spec, err)
    data = json.loads(out)
    assert (data["params"], data["flops"]) == (graph.graph["total_params"], graph.graph["total_flops"]), spec
