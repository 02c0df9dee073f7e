"""How fast netdsl refuses absurd specs, and whether parsing stays linear in the file size.

    python benchmarks/limits_and_parsing.py

1. Refusals: a spec asking for 10^12 parameters, a block of a million units, an enormous input
   and a 10^7-iteration loop, each compiled in-process (best of 5) and once through the CLI
   (a fresh interpreter: startup included). The message with the estimate is printed.
2. Parsing: generated specs of growing size (templates of a few statements each, up to the
   1 MiB source limit); parse CPU time per kB should stay flat if parsing is linear.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netdsl.api import compile_spec
from netdsl.errors import LimitError
from netdsl.frontend.parser import parse

CORPUS = ROOT / "tests" / "invalid"
REFUSALS = ["limit_params_1e12", "limit_million_units", "limit_huge_input", "limit_long_loop"]


def best_of(fn, n=5, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(n):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def refusals() -> None:
    print("refusals (in-process best of 5 / CLI wall time incl. interpreter start):")
    for name in REFUSALS:
        spec = CORPUS / f"{name}.net"

        def go():
            try:
                compile_spec(spec)
            except LimitError as err:
                return err
            raise AssertionError(f"{name} was not refused")

        inproc = best_of(go)
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "netdsl", "check", spec.name], cwd=CORPUS, capture_output=True, text=True
        )
        cli = time.perf_counter() - t
        assert proc.returncode == 2
        print(f"  {name:22s} {1000 * inproc:8.2f} ms  {cli:6.2f} s   {go().message}")


def big_spec(templates: int) -> str:
    body = "".join(
        f"def t{i}(k, w=4) {{\n    bn; relu; conv(w * k, 1)\n    bn; relu; conv(k, 3)\n"
        f"    let a{i} = floor(k * 0.5) + {i} % 7\n}}\n"
        for i in range(templates)
    )
    return body + "network n(k=12) {\n    input(3, 32, 32)\n    t0(k)\n}\n"


def parsing() -> None:
    # CPU time of this process, not wall time: on a shared machine wall time mostly measures
    # the other processes.
    print("parse CPU time vs size (best of 3):")
    for n in (250, 1000, 4000, 8000):  # 8000 templates: about 0.9 MB, under the 1 MiB source limit
        text = big_spec(n)
        secs = best_of(lambda: parse(text, "big.net"), 3, time.process_time)
        kb = len(text) / 1024
        print(f"  {n:6d} templates {kb:8.1f} kB  {1000 * secs:9.1f} ms  {1000 * secs / kb:6.3f} ms/kB")


if __name__ == "__main__":
    refusals()
    parsing()
