"""One epoch of training, evaluation, and the bookkeeping at an epoch's end.

One process or many (``torchrun --nproc-per-node N -m netdsl train ...``, or ``--devices N``):
each process takes its contiguous slice of every global batch and DDP averages the gradients,
so with equal slices an update equals the single-process update on the whole batch (exactly so
for networks without batch norm; with it, statistics are per process unless CUDA's
SyncBatchNorm is on, as torchvision's reference scripts do with ``--sync-bn``).

Randomness that decides results is a function of (seed, epoch, step): the data order, the
augmentation, the dropout seed of each epoch. A resumed run therefore continues exactly.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .augment import derive_seed, epoch_batches, generator, normalize, shard
from .data import ImageSet, RunData
from .metrics import correct_topk
from .progress import EpochProgress
from .recipe import Recipe

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+


class TrainingInterrupted(Exception):
    """Ctrl-C during training: the checkpoint at ``path`` holds the run up to the last full step."""

    def __init__(self, path: Path, epoch: int, batch: int):
        super().__init__(f"interrupted; saved {path} (epoch {epoch + 1}, after batch {batch}); continue with --resume")
        self.path = path


class StopRequested(Exception):
    """Raised by :func:`train_epoch` after the step during which Ctrl-C arrived."""

    def __init__(self, batch: int, partial: list):
        super().__init__(f"stop after batch {batch}")
        self.batch, self.partial = batch, partial


class StopSignal:
    """Within ``with``: the first Ctrl-C asks for a stop at the end of the current step; a second
    one interrupts at once. The previous handler is back on any exit."""

    def __init__(self) -> None:
        self.requested = False

    def _on_sigint(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: the user does not want to wait for the step
            signal.signal(signal.SIGINT, self._previous)
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> Self:
        self._previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)


def fresh_state() -> dict:
    """The bookkeeping a checkpoint carries besides weights: best metric, plateau and early-stopping
    counters, the sums of a partial epoch, and whether the run is finished."""
    return {
        "best": None,
        "best_loss": None,
        "best_epoch": None,
        "min_val_loss": math.inf,
        "bad_epochs": 0,
        "partial": None,
        "finished": False,
    }


@dataclass
class Stepper:
    """What a training step needs: the set-up network and optimizer, and the run's data on its device."""

    fabric: Any  # lightning_fabric.Fabric (imported lazily: it is slow to import)
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data: RunData
    recipe: Recipe
    seed: int
    memory_format: torch.memory_format = torch.contiguous_format
    eval_batch_size: int = 500
    device: torch.device = field(init=False)

    def __post_init__(self) -> None:
        self.device = self.fabric.device
        self.rank, self.world = self.fabric.global_rank, self.fabric.world_size
        self.mean = torch.tensor(self.data.mean, device=self.device)
        self.std = torch.tensor(self.data.std, device=self.device)
        self.train_x = self.data.train.images.to(self.device)
        self.train_y = self.data.train.labels.to(self.device)
        self.augment = self.recipe.augmentation()

    def evaluate(self, data: ImageSet) -> dict:
        return evaluate(
            self.net,
            data,
            self.mean,
            self.std,
            device=self.device,
            batch_size=self.eval_batch_size,
            memory_format=self.memory_format,
            rank=self.rank,
            world=self.world,
            fabric=self.fabric,
        )


def train_epoch(
    s: Stepper,
    epoch: int,
    epochs: int,
    *,
    start_batch: int = 0,
    partial: list | None = None,
    stop: StopSignal | None = None,
    progress: EpochProgress | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict:
    """Train epoch ``epoch`` from batch ``start_batch`` (``partial``: the sums of the batches before it);
    returns its metrics row (without validation). Raises :class:`StopRequested` after a Ctrl-C step."""
    progress = progress or EpochProgress(False)
    B, shape = s.recipe.batch_size, s.data.train.shape
    batches = epoch_batches(len(s.data.train), B, seed=s.seed, epoch=epoch)
    if start_batch == 0:
        torch.manual_seed(derive_seed(s.seed, epoch, 1 << 20, s.rank))  # this epoch's dropout draws
        partial = None
    sums = partial or [0.0, 0, 0]  # loss * n, correct, n (this process)
    local = torch.tensor(sums[:1], dtype=torch.float64, device=s.device)
    correct = torch.tensor(sums[1:], dtype=torch.int64, device=s.device)  # [correct, n]
    s.net.train()
    progress.start(epoch, epochs, len(batches), start_batch)
    for step in range(start_batch, len(batches)):
        idx = batches[step]
        part = shard(idx, s.rank, s.world)
        params = {
            k: v[part]
            for k, v in s.augment.draw(len(idx), shape[1], shape[2], generator(s.seed, epoch, step + 1)).items()
        }
        mine = idx[part].to(s.device)
        x = normalize(s.train_x[mine], s.mean, s.std)
        x = (s.augment.apply(x, params) if s.augment.active else x).contiguous(memory_format=s.memory_format)
        y = s.train_y[mine]
        logits = s.net(x)
        loss = F.cross_entropy(logits.float(), y)
        s.optimizer.zero_grad(set_to_none=True)
        s.fabric.backward(loss)
        s.optimizer.step()
        with torch.no_grad():
            local += loss.detach().double() * len(y)
            correct += torch.stack([(logits.argmax(1) == y).sum(), torch.tensor(len(y), device=s.device)])
        if progress.enabled:
            progress.update(len(y) * s.world, float(local) / int(correct[1]), 100.0 * int(correct[0]) / int(correct[1]))
        else:
            progress.update(len(y) * s.world, 0.0, 0.0)
        if on_step is not None:
            on_step(epoch, step)
        requested = torch.tensor(int(stop is not None and stop.requested), device=s.device)
        if s.world > 1:
            requested = s.fabric.all_reduce(requested, reduce_op="sum")
        if int(requested):
            progress.stop()
            raise StopRequested(step + 1, [float(local), int(correct[0]), int(correct[1])])
    seconds, images = progress.stop()
    totals = torch.cat([local, correct.double()])
    if s.world > 1:
        totals = s.fabric.all_reduce(totals, reduce_op="sum")
        for b in s.net.buffers():  # BN statistics: rank 0's, so every process holds the same model
            torch.distributed.broadcast(b, 0)
    return {
        "epoch": epoch + 1,
        "lr": s.optimizer.param_groups[0]["lr"],
        "train_loss": float(totals[0] / totals[2]),
        "train_acc": float(100 * totals[1] / totals[2]),
        "val_loss": None,
        "val_acc": None,
        "seconds": round(seconds, 3),
        "images_per_s": round(images * s.world / max(seconds, 1e-9), 1),
    }


def end_epoch(state: dict, row: dict, recipe: Recipe, scheduler) -> bool:
    """Step the schedule and update ``state`` with a finished epoch's ``row``; True when it is the best."""
    monitor = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitor)
    else:
        scheduler.step()
    improved = improves(row, recipe.best, state)
    if improved:
        state["best"] = row[recipe.best] if row["val_loss"] is not None else None
        state["best_epoch"], state["best_loss"] = row["epoch"], row["val_loss"]
    if monitor < state["min_val_loss"]:
        state["min_val_loss"], state["bad_epochs"] = monitor, 0
    else:
        state["bad_epochs"] += 1
    state["partial"] = None
    return improved


def stops_early(state: dict, recipe: Recipe) -> bool:
    patience = (recipe.early_stopping or {}).get("patience")
    return bool(patience) and state["bad_epochs"] >= patience


def improves(row: dict, key: str, state: dict) -> bool:
    if row["val_loss"] is None or state["best"] is None:
        return True  # no validation split: the last epoch is the best one
    if key == "val_acc":  # equal accuracy (common on small validation sets): the lower loss wins
        return (row["val_acc"], -row["val_loss"]) > (state["best"], -state["best_loss"])
    return row[key] < state["best"]


@torch.no_grad()
def evaluate(
    model,
    data: ImageSet,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    device,
    batch_size: int = 500,
    memory_format=torch.contiguous_format,
    rank: int = 0,
    world: int = 1,
    fabric=None,
    input_dtype: torch.dtype | None = None,
) -> dict:
    """Mean loss, top-1 and (for more than 5 classes) top-5 accuracy in percent over ``data``.

    ``input_dtype``: the images cast to it, as Fabric's mixed precision casts a module's input.

    With several processes each evaluates its contiguous slice and the sums are all-reduced.
    """
    was_training = model.training
    model.eval()
    part = shard(torch.arange(len(data)), rank, world)
    images, labels = data.images[part], data.labels[part]
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss * n, top-1, top-5, n
    classes = 0
    for lo in range(0, len(labels), batch_size):
        x = normalize(images[lo : lo + batch_size].to(device), mean, std).contiguous(memory_format=memory_format)
        x = x if input_dtype is None else x.to(input_dtype)
        y = labels[lo : lo + batch_size].to(device)
        logits = model(x).float()
        classes = logits.shape[1]
        k5 = min(5, classes)
        top1, top5 = correct_topk(logits, y, (1, k5))
        sums += torch.tensor(
            [float(F.cross_entropy(logits, y, reduction="sum")), top1, top5, len(y)], dtype=torch.float64, device=device
        )
    if world > 1 and fabric is not None:
        sums = fabric.all_reduce(sums, reduce_op="sum")
    model.train(was_training)
    n = float(sums[3])
    out = {"loss": float(sums[0]) / n, "top1": 100.0 * float(sums[1]) / n, "images": int(n)}
    if classes > 5:
        out["top5"] = 100.0 * float(sums[2]) / n
    return out
