"""``netdsl export-weights TARGET --weights CKPT --layout torchvision -o out.pt``: a network's
weights rewritten in another model zoo's layout (docs/weights.md)."""

from __future__ import annotations

import io
import sys

from ..display import shown
from ..io import write_atomic
from ..weights.layouts import LAYOUTS
from .common import add_target, compile_target, existing_file, writable_output


def register(sub) -> None:
    p = sub.add_parser("export-weights", help="write a checkpoint's weights in torchvision's or pytorchcv's layout")
    add_target(p)
    p.add_argument("--weights", metavar="CKPT", required=True, help="a torch.save state_dict or training checkpoint")
    p.add_argument(
        "--from",
        dest="source_layout",
        default="netdsl",
        choices=sorted(LAYOUTS),
        help="the layout of --weights (default: netdsl)",
    )
    p.add_argument("--layout", default="torchvision", choices=sorted(LAYOUTS), help="the layout to write")
    p.add_argument(
        "--like",
        metavar="FILE",
        help="a state_dict of the target model: the export takes its keys (any layout, e.g. a pytorchcv model's)",
    )
    p.add_argument("-o", "--output", required=True, help="the .pt file to write (atomically)")
    p.set_defaults(func=run)


def run(args) -> int:
    writable_output(args.output)
    existing_file(args.weights, "--weights")
    if args.like:
        existing_file(args.like, "--like")
    import torch

    from ..pipeline import instantiate
    from ..weights import export_weights, load_weights

    graph = compile_target(args)
    model = load_weights(instantiate(graph, seed=0), args.weights, args.source_layout, graph=graph)
    state = export_weights(model, args.layout, graph=graph, like=args.like)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(args.output, buffer.getvalue())
    print(f"wrote {shown(args.output)} ({len(state)} tensors, {args.layout} layout)", file=sys.stderr)
    return 0
