"""``netdsl viz``: draw a network's connectivity (graphviz graphs, matplotlib matrices)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..display import shown
from ..errors import SpecValueError
from ..io import write_atomic
from .common import add_target, compile_target, non_negative_int, writable_output


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SpecValueError(f"--size expects WIDTHxHEIGHT in pixels (e.g. 900x600), got {text!r}", None) from None
    if not (16 <= w <= 20000 and 16 <= h <= 20000):
        raise SpecValueError(f"--size {w}x{h} is outside 16..20000 pixels", None)
    return w, h


def register(sub) -> None:
    p = sub.add_parser("viz", help="draw block graphs, op graphs, connectivity matrices and weight heat maps")
    add_target(p)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file; the suffix picks the format (.svg .png .pdf, and .dot for graphs)",
    )
    p.add_argument(
        "--style",
        choices=("graph", "matrix"),
        default=None,
        help="graph: graphviz drawing (the default); matrix: connectivity matrix per block "
        "(the default with --weights)",
    )
    p.add_argument(
        "--level",
        choices=("block", "op"),
        default="block",
        help="graph detail: one node per unit (default) or per op, with C x H x W on edges",
    )
    p.add_argument("--block", metavar="N", help="draw only block N (its number in 'netdsl summary', or its name)")
    p.add_argument(
        "--max-units",
        type=non_negative_int,
        default=8,
        metavar="N",
        help="block graphs: blocks with more units keep the first and last N/2 and collapse the "
        "rest into one node with bundled edges (0 = draw every unit; default 8)",
    )
    p.add_argument(
        "--dropped", action="store_true", help="block graphs: also draw, dotted, the connections the pattern leaves out"
    )
    p.add_argument(
        "--weights",
        metavar="CKPT",
        help="matrix heat map: color cell (i, j) by the mean |weight| of unit i's first conv over "
        "the channels from x_j (a state_dict, or a checkpoint dict with it under 'model')",
    )
    p.add_argument("--size", metavar="WxH", help="matrix image size in pixels, e.g. 900x600")
    p.set_defaults(func=run)


def _compile(args):
    return compile_target(args)  # --opt (shared) decides whether op graphs show the concat plan


def run(args) -> int:
    fmt = Path(args.output).suffix.lstrip(".").lower()
    style = args.style or ("matrix" if args.weights else "graph")
    if args.weights and style == "graph":
        raise SpecValueError("--weights draws a heat map: it needs --style matrix", None)
    if not fmt:
        raise SpecValueError(f"cannot tell the format of '{args.output}': end it in .svg, .png, .pdf or .dot", None)
    writable_output(args.output)
    size = _size(args.size) if args.size else None  # checked before compiling
    graph = _compile(args)
    if style == "matrix":
        from ..viz.matrix import block_matrices, render_matrices
        from ..viz.model import select_block

        selected = [select_block(graph, args.block)] if args.block else None
        state = None
        if args.weights:
            from ..viz.weights import load_weights

            state = load_weights(args.weights)
        data = render_matrices(block_matrices(graph, selected, state), fmt, size)
    else:
        from ..viz.graph import block_digraph, op_digraph, render

        if args.level == "op":
            dot = op_digraph(graph, args.block)
        else:
            dot = block_digraph(graph, args.block, max_units=args.max_units, dropped=args.dropped)
        data = render(dot, fmt)
    write_atomic(args.output, data)
    print(f"wrote {shown(args.output)}", file=sys.stderr)
    return 0
