"""``netdsl bench``: throughput, latency and activation memory of a spec, naive vs planned."""

from __future__ import annotations

import json

from ..display import console, for_rich
from ..errors import SpecValueError
from ..progress import TaskProgress
from .common import add_target, compile_target, positive_int


def register(sub) -> None:
    p = sub.add_parser("bench", help="time a spec on this machine: naive (--opt 0) vs planned")
    add_target(p)
    p.add_argument("--batch-size", type=positive_int, default=16, help="batch size (default 16)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu or cuda (default cpu)")
    p.add_argument("--train", action="store_true", help="time a training step instead of inference")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs per variant; the median is shown")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..backends.torch.bench import forward_fn, median_seconds, saved_bytes, train_step_fn
    from ..memory import memory_report
    from ..pipeline import instantiate

    if args.batch_size < 1 or args.repeats < 1:
        raise SpecValueError("--batch-size and --repeats must be at least 1", None)
    if args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        raise SpecValueError(
            f"device '{args.device}' is not available here",
            None,
            "use --device cpu" + ("" if torch.cuda.is_available() else " (no CUDA device found)"),
        )
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    graphs = {opt: compile_target(args, opt=opt) for opt in (0, 1)}
    report = memory_report(graphs[1], batch=args.batch_size)["total"]
    rows = []
    ref = None
    warmup = 1
    with TaskProgress("bench", 2 * (warmup + args.repeats)) as bar:
        for opt, label in ((0, "naive (--opt 0)"), (1, "planned")):
            bar.advance(0, label)
            model = instantiate(graphs[opt], 0).to(device)
            if ref is None:
                ref = model
            else:
                model.load_state_dict(ref.state_dict())
            x = torch.randn((args.batch_size,) + tuple(model.input_shape), device=device)
            if args.train:
                model.train()
                fn = train_step_fn(model, x)
            else:
                model.eval()
                fn = forward_fn(model, x)
            secs = median_seconds(fn, args.repeats, warmup, sync=sync, done=bar.advance)
            saved = saved_bytes(model, x)
            infer = report["infer_naive" if opt == 0 else "infer_planned"]
            rows.append((label, secs, args.batch_size / secs, saved, infer))
    if args.json:
        keys = ("variant", "seconds", "samples_per_s", "train_saved_bytes", "infer_peak_bytes")
        print(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
        return 0
    from rich.table import Table

    what = "training step" if args.train else "inference forward"
    t = Table(
        title=for_rich(f"{args.target}: {what}, batch {args.batch_size}, {device.type}, median of {args.repeats}")
    )
    for col in ("variant", "latency ms", "samples/s", "train saved MiB (measured)", "inference peak MiB (model)"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for label, secs, thr, saved, infer in rows:
        t.add_row(label, f"{secs * 1e3:.1f}", f"{thr:.1f}", f"{saved / 2**20:.1f}", f"{infer / 2**20:.1f}")
    t.add_row(
        "ratio",
        f"{rows[1][1] / rows[0][1]:.2f}x",
        f"{rows[1][2] / rows[0][2]:.2f}x",
        f"{rows[1][3] / max(rows[0][3], 1):.2f}x",
        f"{rows[1][4] / max(rows[0][4], 1):.2f}x",
    )
    console(min_width=120).print(t)  # five numeric columns and a long title
    return 0
