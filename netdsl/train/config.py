"""What a training run is asked to do, and the checks that refuse a bad request before any work.

>>> TrainConfig("densenet_bc100_k12", epochs=0).validate()
Traceback (most recent call last):
    ...
netdsl.train.config.ArgumentError: error: --epochs must be a positive integer, got 0
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NetdslError

FITS = ("resize", "refuse")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "32", "bf16", "fp16")


class ArgumentError(NetdslError):
    """A command-line value (or the same field of a config) that cannot work; one line, no hint."""


@dataclass
class TrainConfig:
    target: str
    data: str = "digits"
    out: Path | None = None  # None: a new numbered folder under runs/ (runs/NAME, runs/NAME-2, ...)
    overrides: dict = field(default_factory=dict)
    recipe: str | None = None  # a name, a .json path, or None for the network's default
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    val_split: float | None = None
    seed: int = 0
    fit: str = "resize"  # or "refuse": how data of another shape than the spec's input is handled
    limit_train: int | None = None  # use only the first N training images (smoke runs)
    resume: bool = False
    force: bool = False  # train into a non-empty --out, replacing its run
    accelerator: str = "auto"  # auto | cpu | cuda
    devices: int = 1
    num_nodes: int = 1
    precision: str = "auto"  # auto | 32 | bf16 | fp16
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    eval_batch_size: int = 500
    progress: bool = True
    verbose: bool = True
    curves: bool = True  # draw curves.png (matplotlib: about half of a tiny run's time)
    limits: object = None  # netdsl.frontend.Limits for the compile of the spec

    def validate(self) -> TrainConfig:
        """Refuse values that cannot work, each with a one-line :class:`ArgumentError`."""
        for flag, value in (
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--limit-train", self.limit_train),
            ("--threads", self.threads),
        ):
            if value is not None:
                positive_int(flag, value)
        for flag in ("--max-params", "--max-nodes", "--max-map-elements"):  # the compile's limits
            value = getattr(self.limits, flag[2:].replace("-", "_"), None)
            if value is not None:
                positive_int(flag, value)
        positive_int("--devices", self.devices)
        positive_int("--num-nodes", self.num_nodes)
        positive_int("eval batch size", self.eval_batch_size)
        if self.seed < 0:
            raise ArgumentError(f"--seed must be 0 or more, got {self.seed}")
        if self.lr is not None:
            positive_float("--lr", self.lr)
        if self.val_split is not None and not (0 <= self.val_split < 1):
            raise ArgumentError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.resume and self.out is None:
            raise ArgumentError("--resume needs --out, the folder of the run to continue")
        if self.resume and self.force:
            raise ArgumentError("--resume continues the run in --out and --force replaces it: give one")
        for flag, choice, allowed in (
            ("--fit", self.fit, FITS),
            ("--device", self.accelerator, DEVICES),
            ("--precision", self.precision, PRECISIONS),
        ):
            if choice not in allowed:
                raise ArgumentError(f"{flag} must be one of {', '.join(allowed)}, got {choice!r}")
        device_available(self.accelerator)
        if self.out is not None:
            writable_folder("--out", Path(self.out))
        return self


def positive_int(flag: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(f"{flag} must be a positive integer, got {value}")
    return value


def positive_float(flag: str, value) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ArgumentError(f"{flag} must be a finite number above 0, got {value}")
    return float(value)


def device_available(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ArgumentError("--device cuda: no CUDA device is available here (use --device cpu or auto)")


def writable_folder(flag: str, path: Path) -> None:
    """``path`` is, or can be made, a folder this process may write into."""
    probe = path
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: mkdir would fail on it
            raise ArgumentError(f"{flag} {path}: {probe} is a broken symbolic link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ArgumentError(f"{flag} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ArgumentError(f"{flag} {path}: {probe} is not writable")
