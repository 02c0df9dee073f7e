"""The report's drawings: the block graph (graphviz), connectivity matrices and the weight heat map
(matplotlib), each inline SVG in a scrolling frame."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import networkx as nx

from ..errors import NetdslError
from .page import esc
from .svg import inline_svg


@contextlib.contextmanager
def svg_text() -> Iterator[None]:
    """matplotlib writes text as text, not glyph outlines (the page's text stays selectable and
    searchable, and the drawing is smaller), and ids from a fixed salt, not a random one (the same
    network gives the same page; :func:`.svg.inline_svg` keeps ids unique across drawings)."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "netdsl-report"}):
        yield


def figure(svg: bytes, prefix: str, fit: bool = False) -> str:
    return f'<div class="drawing{" fit" if fit else ""}">{inline_svg(svg, prefix)}</div>'


def drawing(g: nx.DiGraph, max_units: int) -> str:
    from ..viz.graph import block_digraph, render

    try:
        svg = render(block_digraph(g, None, max_units=max_units), "svg")
    except NetdslError as err:  # no `dot` installed, or a drawing too large to lay out
        return f"<p class=note>no drawing: {esc(err.message)}</p>"
    return (
        f"<p class=note>One node per unit; blocks with more than {max_units} units keep their first and last "
        f"{max_units // 2} (as <code>netdsl viz --max-units {max_units}</code>).</p>" + figure(svg, "graph")
    )


def matrices(g: nx.DiGraph, state, prefix: str) -> str:
    from ..ir.graph import blocks
    from ..viz.matrix import block_matrices, render_matrices

    if not blocks(g):
        return "<p class=note>no block(...) in this network: nothing to draw as a matrix.</p>"
    with svg_text():
        svg = render_matrices(block_matrices(g, None, state), "svg")
    what = "mean |weight| of unit i's first conv over x_j's channels" if state else "unit i reads feature x_j"
    return f"<p class=note>Cell (i, j): {what}; grey: left out by the pattern.</p>" + figure(svg, prefix, fit=True)


def heat_map(g: nx.DiGraph, weights: Path | None) -> str:
    if weights is None:
        return "<p class=note>No weights: give <code>--run RUN_DIR</code> or <code>--weights CKPT</code>.</p>"
    from ..viz.weights import load_weights

    state = load_weights(weights)
    return f"<p>weights: {esc(weights)}</p>" + matrices(g, state, "w")
