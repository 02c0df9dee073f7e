"""Progress of long work: a rich bar on a terminal, and nothing in a pipe (issue 18, item 6)."""

from __future__ import annotations

import io
import runpy
import sys

import pytest
from rich.console import Console

from netdsl.cli import main
from netdsl.progress import TaskProgress
from netdsl.train.progress import EpochProgress

from helpers import ROOT


def terminal() -> Console:
    """A console that is a terminal, writing into a buffer."""
    return Console(file=io.StringIO(), force_terminal=True, width=120)


def test_a_task_draws_on_a_terminal_and_erases_itself():
    con = terminal()
    with TaskProgress("cases", 3, console=con) as bar:
        assert bar.enabled
        bar.advance(0, "first status")
        for _ in range(3):
            bar.advance(1)
    out = con.file.getvalue()
    assert "cases" in out and "first status" in out and "\x1b[" in out


def test_a_task_is_silent_where_the_output_is_not_a_terminal(capsys):
    with TaskProgress("cases", 3) as bar:  # stderr here is pytest's capture, not a terminal
        assert not bar.enabled
        bar.advance(1, "x")
    assert capsys.readouterr() == ("", "")
    con = terminal()
    with TaskProgress("cases", 3, console=con, enabled=False) as bar:  # --no-progress
        bar.advance(1)
    assert con.file.getvalue() == ""


def test_training_progress_follows_its_console():
    con = terminal()
    bar = EpochProgress(True, con)
    assert bar.enabled
    bar.start(0, 2, total=4)
    for _ in range(4):
        bar.update(8, 0.5, 50.0)
    seconds, images = bar.stop()
    assert images == 32 and seconds >= 0 and "epoch 1/2" in con.file.getvalue()
    piped = Console(file=io.StringIO())
    quiet = EpochProgress(True, piped)
    assert not quiet.enabled
    quiet.start(0, 2, total=4)
    quiet.update(8, 0.5, 50.0)
    assert quiet.stop()[1] == 8 and piped.file.getvalue() == ""


def test_bench_in_a_pipe_prints_only_its_table(capsys):
    argv = ["bench", "densenet_bc100_k12", "--set", "depth=10", "--set", "k=4", "--batch-size", "2"]
    assert main([*argv, "--repeats", "1"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "\x1b" not in out
    assert out.lstrip().startswith("densenet_bc100_k12: inference forward, batch 2, cpu, median of 1")


@pytest.mark.parametrize("module", ["grammar", "mutations"])
def test_fuzzing_with_progress_asked_is_quiet_in_a_pipe(module, capsys):
    fuzz = __import__(f"fuzz.{module}", fromlist=["fuzz"]).fuzz
    report = fuzz(3, seed=5, progress=True)
    assert report.cases == 3
    assert capsys.readouterr() == ("", "")


def test_the_mutation_fuzzing_script_prints_only_its_report(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fuzz_mutation.py", "--cases", "3", "--no-emit"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(ROOT / "benchmarks" / "fuzz_mutation.py"), run_name="__main__")
    assert stop.value.code == 0
    out, err = capsys.readouterr()
    assert err == "" and "\x1b" not in out
    assert out.splitlines()[0] == "cases: 3" and out.splitlines()[-1].startswith("time: ")
