"""``netdsl train SPEC --data D --out runs/NAME``: train with a seed paper's recipe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_target, limits, overrides


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a spec on real data with a seed paper's recipe",
        description="Train a spec or preset. Under torchrun every process joins one DDP run.",
    )
    add_target(p)
    add_data_and_recipe(p)
    p.add_argument(
        "--out",
        default=None,
        help="run folder; refused if it holds files, unless --resume or --force "
        "(default: a new runs/NAME, runs/NAME-2, ...)",
    )
    p.add_argument("--seed", type=int, default=0, help="weights, data order, augmentation, split (default 0)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt (a larger --epochs extends a finished run)",
    )
    p.add_argument("--force", action="store_true", help="replace the run in a non-empty --out")
    add_run_options(p)
    p.set_defaults(func=run)


def add_data_and_recipe(p) -> None:
    """The data and recipe options of a training run (``netdsl search`` applies them to every trial)."""
    from ..train.names import SOURCES, available

    p.add_argument("--data", default="digits", help="data source: " + ", ".join(SOURCES) + " (default digits)")
    p.add_argument(
        "--recipe", help="a bundled recipe (" + ", ".join(available()) + ") or a .json file; default: the network's own"
    )
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (milestones are fractions)")
    p.add_argument("--batch-size", type=int, help="global batch size (split over the processes)")
    p.add_argument("--lr", type=float, help="override the recipe's initial learning rate")
    p.add_argument("--val-split", type=float, help="fraction of the training images held out for validation")


def add_run_options(p) -> None:
    """How a training run uses the machine (``netdsl search`` applies them to every trial)."""
    from ..train.config import DEVICES, FITS, PRECISIONS

    p.add_argument(
        "--fit",
        choices=FITS,
        default="resize",
        help="data of another size than the spec's input: resize it (grey -> 3 channels) or refuse",
    )
    p.add_argument("--limit-train", type=int, metavar="N", help="train on the first N training images only")
    p.add_argument("--device", dest="accelerator", choices=DEVICES, default="auto")
    p.add_argument("--devices", type=int, default=1, help="processes (GPUs) on this machine (default 1)")
    p.add_argument("--num-nodes", type=int, default=1, help="machines (with torchrun's rendezvous)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 (else fp16) mixed precision on CUDA; on a CPU bf16 where a measured bf16 step is "
        "faster (bf16 matrix units, AMX), else fp32",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory format (default: the compiled module's own choice of layout)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.add_argument("--no-curves", action="store_true", help="do not draw curves.png (netdsl eval --curves can later)")


# TrainConfig fields the two helpers above set, as (field, args attribute).
TRIAL_FIELDS = (
    ("data", "data"),
    ("recipe", "recipe"),
    ("epochs", "epochs"),
    ("batch_size", "batch_size"),
    ("lr", "lr"),
    ("val_split", "val_split"),
    ("fit", "fit"),
    ("limit_train", "limit_train"),
    ("accelerator", "accelerator"),
    ("devices", "devices"),
    ("num_nodes", "num_nodes"),
    ("precision", "precision"),
    ("channels_last", "channels_last"),
    ("compile", "compile"),
)


def run(args) -> int:
    from ..train import TrainConfig, TrainingInterrupted, train

    cfg = TrainConfig(
        target=args.target,
        data=args.data,
        out=Path(args.out) if args.out else None,
        overrides=overrides(args),
        recipe=args.recipe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        val_split=args.val_split,
        seed=args.seed,
        fit=args.fit,
        limit_train=args.limit_train,
        resume=args.resume,
        force=args.force,
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        threads=args.threads,
        curves=not args.no_curves,
        progress=not args.no_progress,  # drawn only where the output is a terminal (netdsl.progress)
        limits=limits(args),
    ).validate()  # every flag checked before any work
    try:
        train(cfg)
    except TrainingInterrupted as stop:
        print(str(stop), file=sys.stderr)
        return 130
    return 0
