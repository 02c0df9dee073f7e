"""What a run tells its user and writes beside its checkpoints: the log lines, run.json,
metrics.jsonl / metrics.csv, curves.png and results.json. Only rank 0 reports; elsewhere every
method is a no-op, so the loop calls them unconditionally."""

from __future__ import annotations

import json
from pathlib import Path

from ..io import write_atomic
from .metrics import plot_curves, write_metrics
from .progress import EpochProgress


class Reporter:
    def __init__(
        self,
        out: Path,
        *,
        rank: int = 0,
        verbose: bool = True,
        progress: bool = True,
        curves: bool = True,
        title: str = "",
    ):
        self.out, self.active, self.title, self.draw = out, rank == 0, title, curves
        self.console = None
        if self.active and verbose:
            from ..display import console

            self.console = console()
        self.progress = EpochProgress(progress and self.active, self.console)

    def log(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)  # greppable lines

    def started(self, run_info: dict, summary: str) -> None:
        if self.active:
            write_atomic(self.out / "run.json", json.dumps(run_info, indent=2, default=str))
        self.log(summary)

    def epoch(self, history: list[dict], epochs: int, best: bool) -> None:
        if self.active:
            write_metrics(self.out, history)
        self.log(epoch_line(history[-1], epochs, best))

    def curves(self, history: list[dict]) -> None:
        if self.active and self.draw and history:
            plot_curves(history, self.out / "curves.png", self.title)

    def finished(self, results: dict, history: list[dict], test_images: int) -> None:
        if self.active:
            write_atomic(self.out / "results.json", json.dumps(results, indent=2))
        self.curves(history)
        b = results["best"]
        self.log(
            f"test ({test_images} images, best epoch {results['best_epoch']}): loss {b['loss']:.4f}  "
            f"top-1 {b['top1']:.2f}%"
            + (f"  top-5 {b['top5']:.2f}%" if "top5" in b else "")
            + f"   -> {self.out}/best.pt, last.pt, metrics.csv"
            + (", curves.png" if self.draw else "")
        )


def epoch_line(row: dict, epochs: int, best: bool) -> str:
    """
    >>> epoch_line({"epoch": 2, "lr": 0.1, "train_loss": 0.5, "train_acc": 80.0, "val_loss": None,
    ...             "images_per_s": 1234.4}, 3, True)
    'epoch   2/3  lr 0.1  train loss 0.5000 acc  80.00%  1,234 img/s  *best'
    """
    val = "" if row["val_loss"] is None else f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:6.2f}%"
    return (
        f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:6.2f}%{val}  {row['images_per_s']:,.0f} img/s" + ("  *best" if best else "")
    )
