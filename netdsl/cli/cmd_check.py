from __future__ import annotations

import json
import sys

from .common import add_target, compile_target


def register(sub) -> None:
    p = sub.add_parser("check", help="validate a spec (parse, lower, lint) without emitting anything")
    add_target(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (warnings included)")
    p.set_defaults(func=run)


def run(args) -> int:
    g = compile_target(args, check=True, quiet=args.json)
    # search domains (netdsl search): refused where they cannot work, warned where they do nothing
    from ..explore.space import domain_warnings

    warnings = domain_warnings(g.graph["file"])
    g.graph["warnings"] = [*g.graph.get("warnings", ()), *warnings]
    for warning in () if args.json else warnings:
        print(str(warning), file=sys.stderr)
    if args.json:
        print(json.dumps(check_dict(g), indent=2))
        return 0
    print(f"ok: {g.graph['name']}: {g.graph['total_params']:,} parameters, {g.number_of_nodes()} ops")
    return 0


def check_dict(g) -> dict:
    """``--json``: the counts ``ok:`` prints, and each warning with its location."""
    warnings = [
        {
            "file": w.span.file if w.span else None,
            "line": w.span.line if w.span else None,
            "column": w.span.column if w.span else None,
            "message": w.message,
            "hint": w.hint,
        }
        for w in g.graph.get("warnings", ())
    ]
    return {
        "name": g.graph["name"],
        "params": g.graph["total_params"],
        "ops": g.number_of_nodes(),
        "warnings": warnings,
    }
