"""The CLI end to end: exit codes, located messages without tracebacks, JSON summary."""

import json
import subprocess
import sys

import pytest


def netdsl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "netdsl", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_summary_json_reports_published_count():
    r = netdsl("summary", "specs/densenet_bc.net", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["params"] == 769_162
    assert data["flops"] == 287_929_692
    assert data["connections"] == 3 * 136
    assert [b["units"] for b in data["blocks"]] == [16, 16, 16]


def test_summary_table_has_totals():
    r = netdsl("summary", "specs/densenet_bc.net")
    assert r.returncode == 0, r.stderr
    assert "769,162" in r.stdout and "block1.unit16" in r.stdout


def test_syntax_error_located_exit_2(write_spec):
    p = write_spec("network n() {\n    input(3, 8, 8)\n    conv(8, 3\n    bn\n}\n")
    r = netdsl("check", p)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"{p}:4:5: syntax error: missing closing parenthesis ')'")
    assert "        bn" in r.stderr and "        ^^" in r.stderr


def test_unknown_name_located_exit_2(write_spec):
    p = write_spec('include "lib/densenet.net"\nnetwork n() {\n    input(3, 8, 8)\n    botleneck(4)\n}\n')
    r = netdsl("summary", p)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"{p}:4:5: error: unknown op or template 'botleneck'"
    assert lines[1] == "        botleneck(4)"
    assert lines[2] == "        ^^^^^^^^^"
    assert lines[3] == "hint: did you mean 'bottleneck'?"


def test_debug_shows_traceback(write_spec):
    p = write_spec("network n() { input(3, 8, 8); nope }")
    r = netdsl("--debug", "check", p)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_set_wrong_type_points_into_value():
    r = netdsl("check", "specs/densenet_bc.net", "--set", "k=[1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    # the message quotes the whole NAME=VALUE argument, the caret under the '[' left open
    assert r.stderr.startswith("--set:1:3: syntax error: ")
    assert r.stderr.split("\n")[1:3] == ["    k=[1", "      ^"]


def test_set_unknown_parameter():
    r = netdsl("check", "specs/densenet_bc.net", "--set", "kk=3")
    assert r.returncode == 2
    assert "no parameter 'kk'" in r.stderr and "did you mean 'k'?" in r.stderr


def test_compile_writes_file_and_failure_writes_nothing(tmp_path, write_spec):
    out = tmp_path / "m.py"
    assert netdsl("compile", "specs/densenet_bc.net", "--set", "depth=10", "-o", out).returncode == 0
    good = out.read_text()
    assert "class DensenetBc(nn.Module)" in good
    bad = write_spec("network n() { input(3, 8, 8); conv(0) }")
    r = netdsl("compile", bad, "-o", out)
    assert r.returncode == 2
    assert out.read_text() == good  # the good file is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.py")] == []


@pytest.mark.parametrize("cmd", ["check", "summary"])
def test_every_spec_checks(cmd):
    from helpers import SPECS

    for spec in SPECS:
        r = netdsl(cmd, spec)
        assert r.returncode == 0, (spec, r.stderr)
