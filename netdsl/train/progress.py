"""The live progress bar: loss, accuracy, images/s and ETA of the current epoch (rank 0 only)."""

from __future__ import annotations

import time

from ..progress import TaskProgress


class EpochProgress:
    """A progress bar over the batches of one epoch, drawn on ``console`` (default: stdout's)
    only when it is a terminal (:class:`netdsl.progress.TaskProgress`); a no-op when disabled."""

    def __init__(self, enabled: bool, console=None):
        from ..display import console as make_console

        self._console = console if console is not None or not enabled else make_console()
        self.enabled = enabled and self._console.is_terminal
        self._bar: TaskProgress | None = None
        self._t0 = time.perf_counter()  # stop() before any start() (an empty epoch range) is harmless
        self._images = 0

    def start(self, epoch: int, epochs: int, total: int, done: int = 0) -> None:
        self._t0 = time.perf_counter()
        self._images = 0
        if self.enabled:
            self._bar = TaskProgress(f"epoch {epoch + 1}/{epochs}", total, console=self._console, done=done)
            self._bar.__enter__()

    def update(self, images: int, loss: float, acc: float) -> None:
        self._images += images
        if self._bar is not None:
            rate = self._images / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.advance(1, f"loss {loss:.4f}  acc {acc:6.2f}%  {rate:,.0f} img/s")

    def stop(self) -> tuple[float, int]:
        """Seconds since start and images seen (this process)."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        return time.perf_counter() - self._t0, self._images
