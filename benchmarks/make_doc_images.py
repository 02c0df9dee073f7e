"""Regenerate the committed images under docs/images/ (README and docs/language.md use them).

    python benchmarks/make_doc_images.py

Each image is one ``netdsl viz`` command, printed as it runs so it can be replayed by hand.
The per-pattern specs are docs/images/specs/*.net.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netdsl.cli import main

IMAGES = ROOT / "docs" / "images"
PATTERNS = ("dense", "path", "window", "split", "rule", "osa", "harmonic", "twoway")

COMMANDS = [
    *[
        [f"docs/images/specs/{p}.net", "--style", "matrix", "--size", "420x320", "-o", f"docs/images/pattern_{p}.png"]
        for p in PATTERNS
    ],
    ["specs/densenet_bc.net", "--set", "depth=40", "-o", "docs/images/densenet_bc40_blocks.png"],
    ["specs/densenet_bc.net", "--set", "depth=250", "--set", "k=24", "-o", "docs/images/densenet_bc250_blocks.svg"],
    ["specs/sparsenet.net", "--style", "matrix", "-o", "docs/images/sparsenet_matrix.png"],
    ["specs/dense2net.net", "--set", "blocks=[3,3]", "--block", "1", "-o", "docs/images/dense2net_split_block.png"],
]


def run() -> int:
    for args in COMMANDS:
        print("netdsl viz " + " ".join(shlex.quote(a) for a in args))
        rc = main(["viz", *[str(ROOT / a) if a.startswith(("specs/", "docs/")) else a for a in args]])
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
