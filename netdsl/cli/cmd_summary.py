from __future__ import annotations

import json

from ..display import console, fmt_bytes, for_rich
from .common import add_target, compile_target


def register(sub) -> None:
    p = sub.add_parser("summary", help="per-layer shapes, parameters and FLOPs")
    add_target(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..summary import summary_dict

    g = compile_target(args)
    data = summary_dict(g)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    from rich.table import Table

    table = Table(
        title=for_rich(f"{data['name']}" + (f" (preset {data['preset']})" if data["preset"] else "")), show_footer=True
    )
    table.add_column("layer", footer="total")
    table.add_column("output", footer="x".join(map(str, data["output"])))
    table.add_column("params", justify="right", footer=f"{data['params']:,}")
    table.add_column("FLOPs (MAC)", justify="right", footer=f"{data['flops']:,}")
    table.add_column("reads", footer=f"{data['connections']} connections")
    for r in data["layers"]:
        reads = r["reads_label"] or ""
        table.add_row(for_rich(r["name"]), r["shape"], f"{r['params']:,}", f"{r['flops']:,}", reads)
    out = console()
    out.print(table)
    for b in data["blocks"]:
        out.print(
            for_rich(
                f"{b['name']}: {b['pattern']}, {b['units']} units, {b['connections']} connections "
                f"reading {b['channels_read']:,} channels, output {b['output']} -> "
                f"{'x'.join(map(str, b['out_shape']))}"
            ),
            soft_wrap=True,
        )
    if len(data["outputs"]) > 1:  # the footer shows the first; name them all
        shown = ", ".join(f"{o['name']} {'x'.join(map(str, o['shape']))}" for o in data["outputs"])
        out.print(for_rich(f"outputs ({len(data['outputs'])}, forward returns a tuple): {shown}"), soft_wrap=True)
    out.print(
        f"params: {data['params']:,}   FLOPs: {data['flops']:,} ({data['flops'] / 1e9:.3f} G, "
        "1 multiply-accumulate = 1 FLOP)"
    )
    # Eight numeric columns: never squeeze them into a narrow terminal.
    console(min_width=132).print(_memory_table(data["memory"]))
    return 0


def _memory_table(mem: dict):
    """Bytes per sample: concat copies and activation memory, naive (--opt 0) vs planned."""
    from rich.table import Table

    t = Table(
        title="per sample, float32: naive vs planned (concat copies; bytes stored into "
        "buffers; training: saved for backward; inference: peak live)",
        show_footer=True,
    )
    cols = [
        ("copy_naive", "concat copies\nnaive"),
        ("copy_planned", "\nplanned"),
        ("store_planned", "stored\nplanned"),
        ("train_naive", "training\nnaive"),
        ("train_planned", "\nplanned"),
        ("infer_naive", "inference\nnaive"),
        ("infer_planned", "\nplanned"),
    ]
    t.add_column("block", footer="total", no_wrap=True)
    for key, title in cols:
        t.add_column(title, justify="right", no_wrap=True, footer=fmt_bytes(mem["total"][key]))
    for b, v in mem["blocks"].items():
        t.add_row(for_rich(b), *[fmt_bytes(v[key]) for key, _ in cols])
    return t
