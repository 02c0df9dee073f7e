from __future__ import annotations

import json
from typing import Any

from ..display import console, for_rich


def register(sub) -> None:
    p = sub.add_parser("list", help="the named presets")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-count", action="store_true", help="skip compiling each preset to count parameters")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import compile_spec
    from ..presets import presets

    rows: list[dict[str, Any]] = []
    for name, pr in sorted(presets().items()):
        params = None if args.no_count else compile_spec(name).graph["total_params"]
        rows.append(
            {
                "name": name,
                "spec": pr.spec,
                "values": pr.values,
                "params": params,
                "paper_params": pr.paper_params,
                "paper": pr.paper,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    t = Table()
    for col in ("name", "spec", "params", "paper", "source"):
        t.add_column(col, justify="right" if col in ("params", "paper") else "left")
    for r in rows:
        t.add_row(
            for_rich(r["name"]),
            for_rich(r["spec"]),
            "" if r["params"] is None else f"{r['params']:,}",
            "" if r["paper_params"] is None else f"{r['paper_params'] / 1e6:.2f}M",
            for_rich(r["paper"]),
        )
    console().print(t)
    return 0
