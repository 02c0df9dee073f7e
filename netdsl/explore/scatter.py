"""The report's search section: accuracy against cost as an SVG scatter, the Pareto front drawn,
each point linked to its trial's values and connectivity matrix further down the page.

The SVG is written here (no plotting library), then goes through the report's sanitizer like every
drawing: its links are in-page anchors (``#trial-N``, prefixed ``search-`` by the sanitizer).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import NetdslError
from ..report.page import esc, table
from ..report.svg import inline_svg
from .budget import human
from .results import trial_rows

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 16, 48
PREFIX = "search"


def _accuracy(r: dict) -> float | None:
    return r["val_acc"] if r["val_acc"] is not None else r["test_acc"]


def scatter_svg(rows: list[dict], cost: str) -> str:
    """Complete trials as points (cost on a log axis, accuracy up); the front as a step line."""
    done = [r for r in rows if r["state"] == "COMPLETE" and _accuracy(r) is not None and r[cost]]
    if not done:
        return ""
    xs = [math.log10(r[cost]) for r in done]
    ys = [float(_accuracy(r) or 0.0) for r in done]
    x0, x1 = min(xs) - 0.05, max(xs) + 0.05
    y0, y1 = min(ys) - 1.0, max(ys) + 1.0

    def px(v: float) -> float:
        return LEFT + (v - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def py(v: float) -> float:
        return H - BOTTOM - (v - y0) / (y1 - y0) * (H - TOP - BOTTOM)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
        'fill="none" stroke="#d1d9e0"/>',
    ]
    for e in range(math.floor(x0), math.ceil(x1) + 1):  # decade ticks
        # within one decade or two, more ticks: the axis must show its scale
        for m in (1, 2, 5) if x1 - x0 > 2 else (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9):
            v = e + math.log10(m)
            if x0 <= v <= x1:
                parts.append(
                    f'<line x1="{px(v):.1f}" x2="{px(v):.1f}" y1="{H - BOTTOM}" y2="{H - BOTTOM + 4}" '
                    'stroke="#59636e"/>'
                )
                parts.append(f'<text x="{px(v):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{human(10**v)}</text>')
    step = max(1.0, round((y1 - y0) / 6))
    tick = float(math.ceil(y0))
    while tick <= y1:
        parts.append(f'<line x1="{LEFT - 4}" x2="{LEFT}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="#59636e"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
        tick += step
    parts.append(f'<text x="{(W + LEFT) / 2}" y="{H - 10}" text-anchor="middle">{esc(cost)} (log scale)</text>')
    parts.append(
        f'<text x="14" y="{(H - BOTTOM + TOP) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(H - BOTTOM + TOP) / 2})">accuracy % (validation)</text>'
    )
    front = sorted((r for r in done if r["front"]), key=lambda r: r[cost])
    if front:
        pts: list[str] = []
        for r in front:  # a step line: the best accuracy reachable at each cost
            x, y = px(math.log10(r[cost])), py(float(_accuracy(r) or 0.0))
            if pts:
                pts.append(f"{x:.1f},{pts[-1].split(',')[1]}")
            pts.append(f"{x:.1f},{y:.1f}")
        parts.append(
            f'<polyline class="front" points="{" ".join(pts)}" fill="none" stroke="#d1242f" stroke-width="1.5"/>'
        )
    for r, x, y in zip(done, xs, ys, strict=True):
        colour = "#d1242f" if r["front"] else "#3b6ea5"
        label = f"trial {r['number']}: " + ", ".join(f"{k}={v}" for k, v in r["values"].items())
        parts.append(
            f'<a href="#trial-{r["number"]}"><circle class="trial" cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" '
            f'fill="{colour}" fill-opacity="0.8"><title>{esc(label)}; accuracy {y:.2f}; '
            f"{esc(cost)} {human(r[cost])}</title></circle></a>"
        )
    for r in front:  # the front's points named on the picture (every point has its tooltip)
        x, y = px(math.log10(r[cost])), py(float(_accuracy(r) or 0.0))
        text = ", ".join(f"{k}={v}" for k, v in r["values"].items())[:44]
        anchor = "end" if x > W / 2 else "start"
        dx = -8 if anchor == "end" else 8
        parts.append(f'<text x="{x + dx:.1f}" y="{y - 8:.1f}" text-anchor="{anchor}" fill="#d1242f">{esc(text)}</text>')
    parts.append("</svg>")
    return inline_svg("".join(parts), PREFIX)


def search_section(out: Path, cost: str | None = None) -> str:
    """The HTML of the report's search section for the search folder ``out``."""
    from ..api import compile_spec
    from ..report.drawings import matrices
    from .study import open_existing

    study = open_existing(out)
    rows = trial_rows(study)
    objectives = study.user_attrs.get("objectives", ["accuracy", "params"])
    cost = cost or next((o for o in objectives if o != "accuracy"), "params")
    svg = scatter_svg(rows, cost)
    html = [
        f"<p>{len(rows)} trials in {esc(out)}; red: the Pareto front (accuracy up, {esc(cost)} down). "
        "Each point links to its trial below.</p>",
        f'<div class="drawing">{svg}</div>' if svg else "<p class=note>no complete trial yet.</p>",
        table(
            ["trial", "state", "values", "params", "flops", "val acc", "test acc", "front"],
            [
                [
                    r["number"],
                    r["state"],
                    ", ".join(f"{k}={v}" for k, v in r["values"].items()) + (f" [{r['note']}]" if r["note"] else ""),
                    r["params"] if r["params"] is not None else "",
                    r["flops"] if r["flops"] is not None else "",
                    f"{r['val_acc']:.2f}" if r["val_acc"] is not None else "",
                    f"{r['test_acc']:.2f}" if r["test_acc"] is not None else "",
                    "*" if r["front"] else "",
                ]
                for r in rows
            ],
            numeric={3, 4},
        ),
    ]
    for r in rows:
        if r["state"] != "COMPLETE" or not r["run"]:
            continue
        specs = sorted(Path(r["run"]).glob("*.net"))
        try:
            body = matrices(compile_spec(str(specs[0])), None, f"{PREFIX}-m{r['number']}") if specs else ""
        except NetdslError as err:
            body = f"<p class=note>{esc(err.message)}</p>"
        values = ", ".join(f"{k}={v}" for k, v in r["values"].items())
        html.append(
            f'<details id="{PREFIX}-trial-{r["number"]}"><summary>trial {r["number"]}: {esc(values)}</summary>'
            f"{body}</details>"
        )
    return "\n".join(html)
