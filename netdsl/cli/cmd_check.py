from __future__ import annotations

from .common import add_target, compile_target


def register(sub) -> None:
    p = sub.add_parser("check", help="validate a spec (parse, lower, lint) without emitting anything")
    add_target(p)
    p.set_defaults(func=run)


def run(args) -> int:
    g = compile_target(args, check=True)
    print(f"ok: {g.graph['name']}: {g.graph['total_params']:,} parameters, {g.number_of_nodes()} ops")
    return 0
