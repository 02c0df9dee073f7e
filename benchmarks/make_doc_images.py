"""Regenerate the committed images under docs/images/ (README and docs/language.md use them).

    python benchmarks/make_doc_images.py

Each image is one ``netdsl viz`` command, printed as it runs so it can be replayed by hand.
The per-pattern specs are docs/images/specs/*.net. docs/images/report.png is the top of the page
``netdsl report densenet_bc100_k12 -o report.html`` writes, in headless Chromium (Debian's
``chromium`` and ``chromium-driver`` packages, driven by Selenium: tests/browser.py).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netdsl.cli import main

IMAGES = ROOT / "docs" / "images"
PATTERNS = ("dense", "path", "window", "split", "rule", "osa", "harmonic", "twoway", "graph")

COMMANDS = [
    *[
        [f"docs/images/specs/{p}.net", "--style", "matrix", "--size", "420x320", "-o", f"docs/images/pattern_{p}.png"]
        for p in PATTERNS
    ],
    ["specs/densenet_bc.net", "--set", "depth=40", "-o", "docs/images/densenet_bc40_blocks.png"],
    ["specs/densenet_bc.net", "--set", "depth=250", "--set", "k=24", "-o", "docs/images/densenet_bc250_blocks.svg"],
    ["specs/sparsenet.net", "--style", "matrix", "-o", "docs/images/sparsenet_matrix.png"],
    ["specs/dense2net.net", "--set", "blocks=[3,3]", "--block", "1", "-o", "docs/images/dense2net_split_block.png"],
    ["docs/images/specs/graph.net", "-o", "docs/images/graph_block.png"],
    ["docs/images/specs/streams.net", "-o", "docs/images/streams_blocks.png"],
]


def run() -> int:
    for args in COMMANDS:
        print("netdsl viz " + " ".join(shlex.quote(a) for a in args))
        rc = main(["viz", *[str(ROOT / a) if a.startswith(("specs/", "docs/")) else a for a in args]])
        if rc:
            return rc
    return report_screenshot()


REPORT = ["densenet_bc100_k12", "-o", "report.html"]
REPORT_WINDOW = (1280, 1700)  # pixels: the summary, the per-block table, the drawing, the matrices


def report_screenshot() -> int:
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    import browser

    print("netdsl report " + " ".join(REPORT) + "   (screenshot: docs/images/report.png)")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / REPORT[-1]
        rc = main(["report", *REPORT[:-1], str(page)])
        if rc:
            return rc
        driver = browser.chromium(*REPORT_WINDOW)
        try:
            driver.get(page.as_uri())
            driver.save_screenshot(str(IMAGES / "report.png"))
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
