"""Progress of long work (training epochs, benchmarks, fuzzing): a rich bar on a terminal, and
nothing at all anywhere else (a pipe, a file, a CI log, a test's capture), so piped output holds
only results.

The bar is redrawn from the loop itself (``advance``), at most every ``min_interval`` seconds,
never from a background thread: timings and CPU-time budgets measured inside the loop do not
pay for it.

>>> import io
>>> from netdsl.display import console
>>> with TaskProgress("cases", 3, console=console(file=io.StringIO())) as bar:
...     bar.enabled
False
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


class TaskProgress:
    """A progress bar over ``total`` steps (None: unknown) named ``description``; a no-op unless
    ``console`` (default: stderr's) is a terminal and ``enabled`` is left true."""

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        console: Console | None = None,
        enabled: bool = True,
        done: int = 0,
        min_interval: float = 0.1,
    ):
        from .display import console as make_console

        self.console = console if console is not None else make_console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.description, self.total, self.done = description, total, done
        self.min_interval = min_interval
        self._progress: Progress | None = None
        self._last = 0.0

    def __enter__(self) -> TaskProgress:
        if not self.enabled:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            auto_refresh=False,  # redrawn by advance(): no thread competing with the work
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self.total, completed=self.done, status="")
        self._progress.refresh()
        return self

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        if self._progress is None:
            return
        if status is None:
            self._progress.update(self._task, advance=steps)
        else:
            self._progress.update(self._task, advance=steps, status=status)
        now = time.perf_counter()
        if steps == 0 or now - self._last >= self.min_interval:  # a new status shows at once
            self._last = now
            self._progress.refresh()

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
