"""Per-epoch metrics (``metrics.jsonl`` and ``metrics.csv``) and the curves PNG.

>>> correct_topk(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15]]), torch.tensor([0, 0]), (1, 2))
[1, 2]
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from ..io import write_atomic

COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_s"]


def correct_topk(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    """How many labels are among the k highest logits, for each k."""
    top = logits.topk(max(ks), dim=1).indices
    hit = top == labels[:, None]
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


def write_metrics(out: Path, rows: list[dict]) -> None:
    """Rewrite both files from the full history (so a resumed run never duplicates a row)."""
    write_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_atomic(out / "metrics.csv", buf.getvalue())


def read_metrics(path: Path) -> list[dict]:
    from ..errors import NetdslError

    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise NetdslError(f"{path}: no metrics file", None, "point at a run folder written by 'netdsl train'") from None
    except ValueError as e:
        raise NetdslError(f"{path}: malformed metrics line ({e})") from None


def plot_curves(rows: list[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy, train vs validation, per epoch (the Dense2Net figures' layout)."""
    return write_atomic(path, curves_image(rows, title, "png"))


def curves_image(rows: list[dict], title: str = "", fmt: str = "png") -> bytes:
    """The curves of :func:`plot_curves` as ``fmt`` bytes (``png``, ``svg``: ``netdsl report``)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), dpi=100)
    epochs = [r["epoch"] for r in rows]
    for ax, key, label in (
        (fig.add_subplot(1, 2, 1), "loss", "loss"),
        (fig.add_subplot(1, 2, 2), "acc", "accuracy (%)"),
    ):
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], marker=".", label="train")
        val = [(e, r[f"val_{key}"]) for e, r in zip(epochs, rows, strict=True) if r.get(f"val_{key}") is not None]
        if val:
            ax.plot(*zip(*val, strict=True), marker=".", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key == "loss":  # early validation spikes (batch-norm statistics at lr 0.1) would flatten the rest
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"svg": {"Date": None}}.get(fmt))  # no date: same run, same bytes
    return buf.getvalue()
