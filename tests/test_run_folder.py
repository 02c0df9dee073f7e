"""Run folders: numbered when not given, refused when holding a run, locked while in use, no .tmp left."""

import json
import os
import subprocess
import sys

import pytest

from netdsl.cli import main
from netdsl.train import TrainConfig, TrainingInterrupted, load_checkpoint, train
from netdsl.train.data import DataError
from netdsl.train.rundir import RunFolderError, check_folder, numbered_folder, run_lock

from helpers import ctrl_c_at

TINY = """
network tiny(classes=10) {
    input(1, 8, 8)
    conv(4, 3); bn; relu
    gap
    fc: linear(classes)
}
"""


def _cfg(spec, out, **kw):
    base = {"epochs": 1, "batch_size": 32, "limit_train": 64, "progress": False, "verbose": False, "curves": False}
    return TrainConfig(str(spec), out=out, **{**base, **kw})


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_numbered_folders_never_reuse_an_existing_one(tmp_path):
    assert numbered_folder(tmp_path, "net") == tmp_path / "net"
    (tmp_path / "net").mkdir()
    (tmp_path / "net-2").write_text("a file counts too")
    assert numbered_folder(tmp_path, "net") == tmp_path / "net-3"


def test_without_out_each_run_gets_a_new_folder(write_spec, tmp_path, monkeypatch):
    spec = write_spec(TINY)
    monkeypatch.chdir(tmp_path)
    train(_cfg(spec, None))
    train(_cfg(spec, None))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["t", "t-2"]
    assert (tmp_path / "runs" / "t-2" / "last.pt").is_file()


def test_a_run_folder_is_refused_unless_resumed_or_forced(write_spec, tmp_path, capsys):
    spec = write_spec(TINY)
    out = tmp_path / "run"
    train(_cfg(spec, out))
    before = (out / "last.pt").read_bytes()
    with pytest.raises(RunFolderError, match="not empty; continue its run with --resume"):
        train(_cfg(spec, out))
    assert (out / "last.pt").read_bytes() == before  # nothing of the finished run was touched
    code = main(["train", str(spec), "--epochs", "1", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--resume" in err and "--force" in err
    (out / "notes.txt").write_text("mine")
    train(_cfg(spec, out, force=True, seed=1))
    assert load_checkpoint(out / "last.pt")["seed"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces the run's files, nothing else


def test_an_empty_or_lock_only_folder_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    check_folder(tmp_path / "empty", resume=False, force=False)
    (tmp_path / "empty" / ".lock").write_text("1\n")
    check_folder(tmp_path / "empty", resume=False, force=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="exists and is not a folder"):
        check_folder(tmp_path / "file", resume=False, force=False)


def test_a_live_lock_keeps_a_second_run_out(write_spec, tmp_path, capsys):
    spec = write_spec(TINY)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(f"{os.getppid()}\n")  # a live process that is not this one
    code = main(["train", str(spec), "--epochs", "1", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err
        == f"error: --out {out}: another run (pid {os.getppid()}) is using this folder (its lock is {out / '.lock'})\n"
    )
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_the_lock_records_the_pid_and_is_released_on_any_exit(write_spec, tmp_path):
    spec = write_spec(TINY)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(f"{_dead_pid()}\n")  # stale: its process is gone, so it is taken over
    seen = []

    def interrupt(epoch, step):
        seen.append((out / ".lock").read_text())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(spec, out), on_step=interrupt)
    assert seen == [f"{os.getpid()}\n"] and not (out / ".lock").exists()
    wide = write_spec(TINY.replace("input(1, 8, 8)", "input(3, 8, 8)"), "wide.net")
    with pytest.raises(DataError, match="1x8x8 but the network's input is 3x8x8"):  # raised with the lock held
        train(_cfg(wide, tmp_path / "other", fit="refuse"))
    assert not (tmp_path / "other").exists()  # made for the run, left empty by the error: removed
    (out / ".lock").write_text(f"{os.getppid()}\n")
    with pytest.raises(RunFolderError, match="another run"), run_lock(out):
        pass
    assert (out / ".lock").read_text() == f"{os.getppid()}\n"  # another process's lock is left alone


def test_no_tmp_files_after_an_interrupt_and_a_resume(write_spec, tmp_path):
    spec = write_spec(TINY)
    out = tmp_path / "run"

    with pytest.raises(TrainingInterrupted):
        train(_cfg(spec, out), on_step=ctrl_c_at(0, 0))
    (out / ".last.pt.k3j2_x.tmp").write_bytes(b"half a checkpoint from a killed run")
    result = train(_cfg(spec, out, resume=True))
    assert result["epochs"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "last.pt",
        "metrics.csv",
        "metrics.jsonl",
        "results.json",
        "run.json",
    ]


def test_resuming_a_finished_run_says_so_or_extends_it(write_spec, tmp_path, capsys):
    spec = write_spec(TINY)
    out = tmp_path / "run"
    first = train(_cfg(spec, out))
    assert load_checkpoint(out / "last.pt")["state"]["finished"] is True
    again = train(_cfg(spec, out, resume=True))
    assert again["best"] == first["best"] and again["epochs"] == 1
    assert again["model"].state_dict().keys() == first["model"].state_dict().keys()
    code = main(["train", str(spec), "--resume", "--out", str(out), "--no-progress"])
    assert code == 0 and "the run is finished (1 epochs); nothing to do" in capsys.readouterr().out
    longer = train(_cfg(spec, out, resume=True, epochs=2))
    assert longer["epochs"] == 2
    assert [json.loads(r)["epoch"] for r in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
