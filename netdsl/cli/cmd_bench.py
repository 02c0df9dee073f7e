"""``netdsl bench``: throughput, latency and activation memory of a spec, naive vs planned, in
fp32 and under mixed precision (bf16 autocast; on a GPU without bf16, fp16)."""

from __future__ import annotations

import contextlib
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
    p.add_argument(
        "--precision",
        choices=("both", "fp32", "bf16", "fp16"),
        default="both",
        help="fp32, a mixed precision (autocast), or both: fp32 and bf16 (fp16 on a GPU without bf16); default both",
    )
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
    precisions = [args.precision] if args.precision != "both" else ["fp32", _mixed(device)]
    rows = []
    ref = None
    warmup = 1
    with TaskProgress("bench", 2 * len(precisions) * (warmup + args.repeats)) as bar:
        for precision in precisions:
            for opt, label in ((0, "naive (--opt 0)"), (1, "planned")):
                bar.advance(0, f"{label}, {precision}")
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
                with _autocast(device, precision):
                    secs = median_seconds(fn, args.repeats, warmup, sync=sync, done=bar.advance)
                    saved = saved_bytes(model, x)
                infer = report["infer_naive" if opt == 0 else "infer_planned"]
                rows.append((label, precision, secs, args.batch_size / secs, saved, infer))
    if args.json:
        keys = ("variant", "precision", "seconds", "samples_per_s", "train_saved_bytes", "infer_peak_bytes")
        print(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
        return 0
    from rich.table import Table

    what = "training step" if args.train else "inference forward"
    t = Table(
        title=for_rich(f"{args.target}: {what}, batch {args.batch_size}, {device.type}, median of {args.repeats}")
    )
    cols = (
        "variant",
        "precision",
        "latency ms",
        "samples/s",
        "train saved MiB (measured)",
        "inference peak MiB (model)",
    )
    for col in cols:
        t.add_column(col, justify="left" if col in ("variant", "precision") else "right")
    for naive, planned in zip(rows[::2], rows[1::2], strict=True):
        for label, precision, secs, thr, saved, infer in (naive, planned):
            t.add_row(
                label, precision, f"{secs * 1e3:.1f}", f"{thr:.1f}", f"{saved / 2**20:.1f}", f"{infer / 2**20:.1f}"
            )
        t.add_row(
            "ratio",
            precision,
            f"{planned[2] / naive[2]:.2f}x",
            f"{planned[3] / naive[3]:.2f}x",
            f"{planned[4] / max(naive[4], 1):.2f}x",
            f"{planned[5] / max(naive[5], 1):.2f}x",
        )
    if len(precisions) == 2:
        t.add_row(
            "planned",
            f"{precisions[1]} / fp32",
            f"{rows[3][2] / rows[1][2]:.2f}x",
            f"{rows[3][3] / rows[1][3]:.2f}x",
            f"{rows[3][4] / max(rows[1][4], 1):.2f}x",
            "",
        )
    console(min_width=120).print(t)  # five numeric columns and a long title
    return 0


def _mixed(device) -> str:
    """The mixed precision ``--precision both`` measures beside fp32: bf16, or fp16 on a GPU without it."""
    import torch

    return "fp16" if device.type == "cuda" and not torch.cuda.is_bf16_supported() else "bf16"


def _autocast(device, precision: str):
    """Autocast to ``precision`` (fp32: none) around a whole run: forward, loss and backward."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
