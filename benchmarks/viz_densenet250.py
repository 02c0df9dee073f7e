"""Time the block-level drawing of the 250-layer DenseNet-BC (k=24): compile, then lay out and
render with graphviz, for each output format.

    python benchmarks/viz_densenet250.py [--repeat 3] [--max-units 8]

Prints the best wall time of ``--repeat`` runs per step. ``--max-units 0`` draws every unit
(2,583 connection edges) to show what the collapse saves.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netdsl.api import compile_spec
from netdsl.viz.graph import block_digraph, render


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-units", type=int, default=8)
    a = ap.parse_args()
    spec = Path(__file__).resolve().parents[1] / "specs" / "densenet_bc.net"
    t, graph = best(lambda: compile_spec(spec, depth=250, k=24), a.repeat)
    print(f"compile densenet_bc depth=250 k=24 ({graph.number_of_nodes()} ops): {t:.3f} s")
    t, dot = best(lambda: block_digraph(graph, max_units=a.max_units), a.repeat)
    print(f"block view, max_units={a.max_units}: {t:.3f} s")
    for fmt in ("svg", "png", "pdf"):
        t, data = best(lambda: render(dot, fmt), a.repeat)
        print(f"graphviz dot -> {fmt}: {t:.3f} s ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
