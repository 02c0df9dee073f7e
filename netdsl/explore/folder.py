"""The search folder (``runs/search-NAME``): its record ``search.json``, its lock, its study storage.

The folder's own SQLite file is the default storage; a ``--storage URL`` (PostgreSQL for many
machines) is any Optuna storage. A database is opened, never replaced: one that is not a study
database, or holds the study of another spec, is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from ..errors import NetdslError
from ..io import write_atomic

STUDY_NAME = "netdsl-search"
RECORD = "search.json"
DB = "study.db"
SPACE_ATTR = "netdsl_space"  # the study's user attribute naming the spec and domains it belongs to


class SearchError(NetdslError):
    """A search that cannot start or go on: a folder in use, a storage that cannot be opened, a
    database of another spec, a budget no point meets."""


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / DB).resolve()}"


def read_record(out: Path) -> dict:
    path = out / RECORD
    if not path.is_file():
        raise SearchError(f"{out}: no search here (no {RECORD})", None, "start one with netdsl search SPEC --out DIR")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SearchError(f"{path}: cannot be read ({err})") from None


def write_record(out: Path, record: dict) -> None:
    write_atomic(out / RECORD, json.dumps(record, indent=2, default=str) + "\n")


@contextlib.contextmanager
def folder_lock(out: Path):
    """Hold the search folder for one search (a second one is refused, not queued). The lock is
    the kernel's (flock): a killed search leaves nothing to clean up."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / ".search.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = (out / ".search.pid").read_text().strip() if (out / ".search.pid").is_file() else "?"
        raise SearchError(
            f"{out}: another search (pid {holder}) is using this folder", None, "wait for it, or choose another --out"
        ) from None
    (out / ".search.pid").write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def ask_lock(out: Path):
    """Serializes 'count the trials, then ask for one' between the workers of one machine, so a
    study of N trials starts exactly N."""
    fd = os.open(out / ".ask.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def open_storage(url: str, *, remote: bool):
    """An Optuna RDB storage for ``url``; a clear error when it cannot be reached or read."""
    import optuna
    from sqlalchemy.exc import IntegrityError, InternalError, ProgrammingError, SQLAlchemyError

    kwargs: dict = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # workers wait for each other's writes
    # Machines started together race to create Optuna's tables in a new database: the loser's
    # error is transient, so a remote storage is tried a few times before it is reported.
    tries = 5 if remote else 1
    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (IntegrityError, ProgrammingError, InternalError):  # a table or row another machine just made
            if attempt + 1 == tries:
                break
            time.sleep(1.0 + attempt)
        except SQLAlchemyError:  # unreachable, refused, not a database: said at once
            break
        except (ValueError, RuntimeError, ImportError, ModuleNotFoundError):
            break
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except (SQLAlchemyError, ValueError, RuntimeError, ImportError, ModuleNotFoundError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SearchError(
            f"cannot open the study storage {_safe_url(url)}: {first}",
            None,
            "check the URL, that the server runs and accepts you, and that the file is a study database"
            if not url.startswith("sqlite")
            else "the file is not an Optuna study database; it was left as it is: choose another --out",
        ) from None


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
