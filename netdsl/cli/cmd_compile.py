from __future__ import annotations

import sys
from pathlib import Path

from ..backends.torch.decisions import MEMORY_FORMATS, PRECISIONS
from ..display import shown
from ..errors import SpecValueError
from ..io import write_atomic
from ..weights.layouts import LAYOUTS
from .common import add_target, compile_target, existing_file, writable_output

# target name -> function(args) returning the bytes/str to write. Other backends register here.
TARGETS = {}


def _torch(args):
    from ..backends.torch.codegen import generate
    from ..pipeline import source_header

    graph = compile_target(args)
    graph.graph["memory_format"], graph.graph["precision"] = args.memory_format, args.precision
    return generate(graph, source_header(graph))


TARGETS["torch"] = _torch


def _onnx(args):
    import warnings

    from ..backends.onnx.export import UntrainedWarning, export
    from ..weights import in_netdsl_layout

    graph = compile_target(args, opt=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedWarning)
        model, report = export(graph, in_netdsl_layout(graph, args.weights, args.layout))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print("\n".join(report.lines()), file=sys.stderr)
    return model.SerializeToString()


TARGETS["onnx"] = _onnx


def register(sub) -> None:
    p = sub.add_parser("compile", help="emit a backend artifact (torch source, ONNX model)")
    add_target(p)
    p.add_argument("--target", dest="backend", default="torch", help="backend: " + ", ".join(sorted(TARGETS)))
    p.add_argument(
        "-o",
        "--output",
        help="output file (default: stdout for torch; NAME.onnx in the current folder for onnx, "
        "NAME being the preset's or the network's name)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing NAME.onnx when -o is not given")
    p.add_argument(
        "--weights", metavar="CKPT", help="onnx: a torch.save state_dict or checkpoint (default: untrained init)"
    )
    p.add_argument(
        "--memory-format",
        default="auto",
        choices=MEMORY_FORMATS,
        help="torch: the layout the module runs in (auto: the compiler's choice, channels_last; preserve: the input's)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="torch: under autocast, auto runs float32 on a device without fast convolutions in the autocast dtype "
        "(the compiler's choice); autocast always follows the caller's autocast",
    )
    p.add_argument(
        "--layout",
        default="netdsl",
        choices=sorted(LAYOUTS),
        help="the layout of --weights: netdsl (default), torchvision or pytorchcv (docs/weights.md)",
    )
    p.set_defaults(func=run)


# Targets whose output is binary: without -o they go to NAME.<target> in the current folder.
BINARY = {"onnx"}


def default_output(args) -> str:
    """``NAME.<target>`` for a binary target without ``-o``: the preset's name, or the network's
    (read by parsing only, before any compile work)."""
    from ..pipeline import spec_header
    from ..presets import resolve

    _, _, preset = resolve(args.target)
    return f"{preset or spec_header(args.target).name}.{args.backend}"


def run(args) -> int:
    if args.backend not in TARGETS:
        raise SpecValueError(f"unknown target '{args.backend}' (targets: {', '.join(sorted(TARGETS))})", None)
    if not args.output and args.backend in BINARY:
        args.output = default_output(args)
        if Path(args.output).exists() and not args.force:
            raise SpecValueError(
                f"{args.output} exists (the default output of --target {args.backend})",
                None,
                "name another file with -o FILE, or replace it with --force",
            )
    if args.output:
        writable_output(args.output)
    if args.weights:
        existing_file(args.weights, "--weights")
    data = TARGETS[args.backend](args)
    if args.output:
        write_atomic(args.output, data)
        print(f"wrote {shown(args.output)}", file=sys.stderr)
    else:
        sys.stdout.write(data)
    return 0
