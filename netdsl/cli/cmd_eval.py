"""``netdsl eval [SPEC] --weights CKPT``: loss, top-1, top-5; ``netdsl eval --curves RUN`` redraws the plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import NetdslError
from ..train.config import DEVICES, device_available, positive_int
from .common import add_overrides, overrides


def register(sub) -> None:
    from ..train.names import SPLITS

    p = sub.add_parser("eval", help="evaluate trained weights, or redraw a run's curves")
    p.add_argument("target", nargs="?", help="spec or preset (default: the checkpoint's)")
    p.add_argument("--weights", metavar="CKPT", help="a checkpoint written by 'netdsl train'")
    p.add_argument("--data", help="data source (default: the one it was trained on)")
    p.add_argument("--split", choices=SPLITS, default="test")
    add_overrides(p, "spec parameter on top of the checkpoint's values (repeatable)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--curves", metavar="RUN", help="write RUN/curves.png from RUN/metrics.jsonl and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.curves:
        from ..train.metrics import plot_curves, read_metrics

        run_dir = Path(args.curves)
        rows = read_metrics(run_dir / "metrics.jsonl")
        if not rows:
            raise NetdslError(f"{run_dir / 'metrics.jsonl'}: no epochs recorded yet")
        print(f"wrote {plot_curves(rows, run_dir / 'curves.png', run_dir.name)}", file=sys.stderr)
        return 0
    positive_int("--batch-size", args.batch_size)
    device_available(args.device)
    if not args.weights:
        raise NetdslError(
            "eval needs --weights CKPT (or --curves RUN)",
            None,
            "for example: netdsl eval --weights runs/densenet_bc100_k12/best.pt",
        )
    from ..train.evaluation import evaluate_checkpoint

    r = evaluate_checkpoint(
        args.weights, args.target, args.data, overrides(args), args.split, args.device, args.batch_size
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    top5 = f"  top-5 {r['top5']:.2f}%" if "top5" in r else ""
    print(
        f"{r['target']} ({r['weights']}, epoch {r['epoch']}) on {r['data']} {r['split']} "
        f"({r['images']} images): loss {r['loss']:.4f}  top-1 {r['top1']:.2f}%{top5}"
    )
    return 0
