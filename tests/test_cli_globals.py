"""Global flags (``--debug``, ``--threads``) on every command, before or after its name; ``--set``
on every command that compiles a spec."""

from __future__ import annotations

import argparse

import pytest
import torch

from netdsl.cli import GLOBAL_DEFAULTS, build_parser, main
from netdsl.errors import SpecNameError


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


PARSER = build_parser()
COMMANDS = sorted(_subparsers(PARSER))


def _minimal(name: str) -> list[str]:
    """The command with its required arguments filled in (read from its parser, so a command
    added later is covered too)."""
    argv = [name]
    for a in _subparsers(PARSER)[name]._actions:
        if not a.option_strings and a.required and a.nargs in (None, 1):
            argv.append("x.net")
        elif a.option_strings and a.required:
            argv += [a.option_strings[0], "x.svg"]
    return argv


def test_every_command_is_covered():
    assert {"compile", "summary", "check", "list", "run", "viz", "train", "eval", "bench"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_global_flags_are_taken_before_and_after_every_command(name):
    cmd = _minimal(name)
    absent = PARSER.parse_args(cmd)
    assert all(not hasattr(absent, k) for k in GLOBAL_DEFAULTS)  # main() fills the defaults in
    before = PARSER.parse_args(["--debug", "--threads", "3", *cmd])
    after = PARSER.parse_args([*cmd, "--threads", "3", "--debug"])
    split = PARSER.parse_args(["--threads", "3", *cmd, "--debug"])
    for args in (before, after, split):
        assert (args.debug, args.threads) == (True, 3)
    # the command's own value wins over one given before its name
    assert PARSER.parse_args(["--threads", "3", *cmd, "--threads", "2"]).threads == 2


@pytest.mark.parametrize("argv", [["--threads", "0", "list"], ["list", "--threads", "0"]])
def test_threads_must_be_positive(argv, capsys):
    assert main(argv) == 2
    assert "argument --threads: must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_threads_sets_torchs_threads(where, capsys):
    before = torch.get_num_threads()
    want = 3 if before != 3 else 2
    cmd = ["check", "densenet_bc100_k12", "--set", "depth=10"]
    argv = ["--threads", str(want), *cmd] if where == "before" else [*cmd, "--threads", str(want)]
    try:
        assert main(argv) == 0
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)


def test_debug_after_the_command_lets_the_traceback_through(write_spec):
    p = write_spec("network n() { input(3, 8, 8); nope }")
    with pytest.raises(SpecNameError, match="unknown op or template 'nope'"):
        main(["check", str(p), "--debug"])


def test_without_debug_the_same_error_is_one_message(write_spec, capsys):
    p = write_spec("network n() { input(3, 8, 8); nope }")
    assert main(["check", str(p)]) == 2
    err = capsys.readouterr().err
    assert "unknown op or template 'nope'" in err and "Traceback" not in err


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_that_compiles_a_spec_takes_set(name):
    p = _subparsers(PARSER)[name]
    takes_spec = any(a.dest == "target" for a in p._actions)
    has_set = "--set" in p._option_string_actions
    assert has_set == takes_spec, name
