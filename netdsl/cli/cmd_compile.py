from __future__ import annotations

import sys

from ..display import shown
from ..errors import SpecValueError
from ..io import write_atomic
from ..weights.layouts import LAYOUTS
from .common import add_target, existing_file, limits, overrides, writable_output

# target name -> function(args) returning the bytes/str to write. Other backends register here.
TARGETS = {}


def _torch(args):
    from ..api import torch_source

    return torch_source(args.target, overrides(args), limits=limits(args))


TARGETS["torch"] = _torch


def _onnx(args):
    import warnings

    from ..api import onnx_model
    from ..backends.onnx_export import UntrainedWarning

    reports = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedWarning)
        model = onnx_model(
            args.target, overrides(args), weights=args.weights, limits=limits(args), report=reports, layout=args.layout
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print("\n".join(reports[0].lines()), file=sys.stderr)
    return model.SerializeToString()


TARGETS["onnx"] = _onnx


def register(sub) -> None:
    p = sub.add_parser("compile", help="emit a backend artifact (torch source, ...)")
    add_target(p)
    p.add_argument("--target", dest="backend", default="torch", help="backend: " + ", ".join(sorted(TARGETS)))
    p.add_argument("-o", "--output", help="output file (default: stdout for text targets)")
    p.add_argument(
        "--weights", metavar="CKPT", help="onnx: a torch.save state_dict or checkpoint (default: untrained init)"
    )
    p.add_argument(
        "--layout",
        default="netdsl",
        choices=sorted(LAYOUTS),
        help="the layout of --weights: netdsl (default), torchvision or pytorchcv (docs/weights.md)",
    )
    p.set_defaults(func=run)


# Targets whose output is binary: they need -o, checked before compiling.
BINARY = {"onnx"}


def run(args) -> int:
    if args.backend not in TARGETS:
        raise SpecValueError(f"unknown target '{args.backend}' (targets: {', '.join(sorted(TARGETS))})", None)
    if args.output:
        writable_output(args.output)
    elif args.backend in BINARY:
        raise SpecValueError(f"target '{args.backend}' is binary: give -o FILE (e.g. -o model.{args.backend})", None)
    if args.weights:
        existing_file(args.weights, "--weights")
    data = TARGETS[args.backend](args)
    if args.output:
        write_atomic(args.output, data)
        print(f"wrote {shown(args.output)}", file=sys.stderr)
    elif isinstance(data, str):
        sys.stdout.write(data)
    else:
        raise SpecValueError(f"target '{args.backend}' is binary; give -o FILE", None)
    return 0
