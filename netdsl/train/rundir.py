"""Run folders that a careless command cannot lose: chosen, refused or locked before any work.

* no ``--out``: a new folder ``runs/NAME``, ``runs/NAME-2``, ... (never an existing one);
* an existing, non-empty ``--out`` is refused unless the run is resumed (``--resume``) or
  replaced on purpose (``--force``);
* a lock file (``.lock``, holding the owner's pid) keeps a second run out of the folder; it is
  removed on any exit, and a lock whose process is gone is taken over;
* temporary files of an interrupted atomic write (``.NAME.*.tmp``) are removed once the lock is held.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .config import ArgumentError

LOCK = ".lock"
# Everything a run writes into its folder.
RUN_FILES = ("run.json", "last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "curves.png", "results.json")


class RunFolderError(ArgumentError):
    """A run folder that is in use, or would lose a previous run."""


def numbered_folder(root: Path, name: str) -> Path:
    """The first of ``root/name``, ``root/name-2``, ... that does not exist."""
    path, n = root / name, 1
    while path.exists() or path.is_symlink():
        n += 1
        path = root / f"{name}-{n}"
    return path


def check_folder(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse to train into a folder holding something unless told what to do with it."""
    if resume:
        if not (out / "last.pt").is_file():
            from .checkpoint import CheckpointError

            raise CheckpointError(f"{out / 'last.pt'}: no such checkpoint file")
        return
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and not force and any(p.name != LOCK for p in out.iterdir()):
        raise RunFolderError(
            f"--out {out}: the folder is not empty; continue its run with --resume, "
            "replace it with --force, or choose another --out"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``out/.lock`` for the body; a second holder gets a :class:`RunFolderError`. A folder made
    here and still empty at the end (the run failed before writing) is removed again."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise RunFolderError(
                    f"--out {out}: another run (pid {pid}) is using this folder (its lock is {lock})"
                ) from None
            lock.unlink(missing_ok=True)  # the owner is gone: take the folder over
    else:
        raise RunFolderError(f"--out {out}: could not take the lock {lock}")
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only succeeds when empty


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the ``.NAME.XXXX.tmp`` files of atomic writes that never finished (the lock is held)."""
    gone = [p for p in out.glob(".*.tmp") if p.is_file()]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def clear_run_files(out: Path) -> None:
    """``--force``: remove the files a previous run wrote (only those: ``--out .`` must not empty a
    working directory), so no file of the old run mixes with the new one."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
