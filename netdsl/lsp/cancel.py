"""Interrupting a running check when a newer change arrives.

Lowering is plain Python with no cancellation points, so the server raises :class:`CheckCancelled`
inside the worker thread (``PyThreadState_SetAsyncExc``; delivered at the thread's next bytecode).
It derives from BaseException, so no ``except Exception`` in the frontend swallows it. One check
is interrupted at most once, and only while it runs (both decided under one lock), so the
exception can never reach the worker's idle loop; interpreter state the frontend changes for the
duration of a lowering (the recursion limit, the cyclic GC) is put back afterwards, since the
interruption may have skipped the frontend's own clean-up.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CheckCancelled(BaseException):
    """Raised inside the worker thread to stop a check that a newer change made useless."""


class Interruptible:
    """Runs one job at a time (in whichever thread calls :meth:`run`) and interrupts it on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: tuple[object, int] | None = None  # (job key, thread id)
        self.interrupted = 0  # how many checks were interrupted (for tests and logs)

    def run(self, key: object, job: Callable[[], T]) -> T | None:
        """``job()``, or None if it was interrupted (or interrupted right before or after it)."""
        recursion, collecting = sys.getrecursionlimit(), gc.isenabled()
        try:
            with self._lock:
                self._running = (key, threading.get_ident())
            try:
                return job()
            finally:
                with self._lock:
                    self._running = None
        except CheckCancelled:
            with self._lock:
                self._running = None
            sys.setrecursionlimit(recursion)
            if collecting:
                gc.enable()
            return None

    def interrupt(self, is_stale: Callable[[object], bool]) -> bool:
        """Interrupt the running job if ``is_stale(its key)``; returns whether it did."""
        with self._lock:
            if self._running is None or not is_stale(self._running[0]):
                return False
            _, thread = self._running
            self._running = None  # at most once per job
            done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(CheckCancelled))
            if done > 1:  # more than one thread state matched: undo, as the C API asks
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)
                return False
            self.interrupted += done
            return done == 1
