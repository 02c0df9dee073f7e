"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse
import sys

from ..errors import Span, SpecTypeError
from ..frontend import Limits


def add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="a .net spec file or a preset name (see 'netdsl list')")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override a spec parameter, e.g. --set k=24 (repeatable)")
    lim = Limits()
    p.add_argument("--max-params", type=int, default=lim.max_params, help="refuse specs with more parameters")
    p.add_argument("--max-nodes", type=int, default=lim.max_nodes, help="refuse specs with more ops")
    p.add_argument("--max-map-elements", type=int, default=lim.max_map_elements,
                   help="refuse tensors with more values per sample")
    p.add_argument("--opt", type=int, default=1, choices=(0, 1),
                   help="optimization level: 1 plans concat buffers (default), 0 is the naive reference")


def overrides(args) -> dict:
    out = {}
    for item in args.overrides:
        if "=" not in item:
            raise SpecTypeError(f"--set expects NAME=VALUE, got {item!r}",
                                Span("--set", 1, 1, 1, len(item) + 1, text=item), "for example --set k=24")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def limits(args) -> Limits:
    return Limits(max_params=args.max_params, max_nodes=args.max_nodes, max_map_elements=args.max_map_elements)


def compile_target(args, **kw):
    """The pipeline on a subcommand's target, ``--set`` values, limits and ``--opt``; prints the
    spec's warnings and returns the graph."""
    from .. import pipeline

    if getattr(args, "opt", None) is not None:
        kw.setdefault("opt", args.opt)
    graph = pipeline.compile_target(args.target, overrides(args), limits=limits(args), **kw).graph
    for warning in graph.graph.get("warnings", ()):
        print(str(warning), file=sys.stderr)
    return graph
