"""Mutation fuzzing at scale: thousands of defective variants of the bundled specs.

    python benchmarks/fuzz_mutation.py                 # 5,000 cases, seed 0
    python benchmarks/fuzz_mutation.py --cases 20000 --seed 7

Every case must compile or fail with netdsl's own error type (a located NetdslError). The
script prints the counts and lists every foreign exception (any other exception type) and every
internal error (IRError/PassError: netdsl's type, but a netdsl bug) with its case id; replay a
case with ``--show CASE`` (e.g. ``--show sparsenet.net#1234``). Exit status 1 if any was found.
The mutations are described in tests/fuzz/mutations.py, shared with the CI test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz.mutations import fuzz, replay


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-emit", action="store_true", help="skip emitting torch source for compiled mutants")
    ap.add_argument("--show", metavar="CASE", help="print one case's mutated text and exit")
    args = ap.parse_args()
    if args.show:
        sys.stdout.write(replay(args.show))
        return 0
    start = time.perf_counter()
    report = fuzz(args.cases, args.seed, emit=not args.no_emit, progress=True)
    elapsed = time.perf_counter() - start
    print(report.summary())
    print(f"time: {elapsed:.1f} s ({1000 * elapsed / max(1, report.cases):.1f} ms per case)")
    return 1 if report.foreign or report.internal else 0


if __name__ == "__main__":
    sys.exit(main())
