"""The live progress bar: loss, accuracy, images/s and ETA of the current epoch (rank 0 only)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress


class EpochProgress:
    """A rich progress bar over the batches of one epoch; a no-op when disabled."""

    def __init__(self, enabled: bool, console=None):
        self.enabled = enabled
        self._progress: Progress | None = None
        self._console = console
        self._t0 = time.perf_counter()  # stop() before any start() (an empty epoch range) is harmless
        self._images = 0

    def start(self, epoch: int, epochs: int, total: int, done: int = 0) -> None:
        self._t0 = time.perf_counter()
        self._images = 0
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=total, completed=done, epoch=f"{epoch + 1}/{epochs}", stats=""
        )

    def update(self, images: int, loss: float, acc: float) -> None:
        self._images += images
        if self._progress is None:
            return
        rate = self._images / max(time.perf_counter() - self._t0, 1e-9)
        self._progress.update(self._task, advance=1, stats=f"loss {loss:.4f}  acc {acc:6.2f}%  {rate:,.0f} img/s")

    def stop(self) -> tuple[float, int]:
        """Seconds since start and images seen (this process)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        return time.perf_counter() - self._t0, self._images
