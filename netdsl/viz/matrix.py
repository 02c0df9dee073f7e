"""Connectivity matrices and weight heat maps of a network's blocks.

Row ``i`` is unit ``i`` of a block, column ``j`` the feature ``x_j`` it may read (SeqConv Fig. 5,
SparseNet Fig. 2): ``j <= 0`` are the block input (the channel groups of a window block, the
subsets of a split block), ``j >= 1`` the earlier units' outputs. The data are computed by pure
functions; :func:`render_matrices` draws them with matplotlib.

>>> from netdsl.api import compile_spec
>>> spec = "network doc() { input(3, 8, 8); conv(4, 3); block(4, path(far=1, near=1)) { conv(2, 3) } }"
>>> m = connectivity_matrix(compile_spec("doc.net", text=spec).graph["blocks"][0])
>>> m.cols
(0, 1, 2, 3)
>>> m.mask.tolist()
[[1, -1, -1, -1], [1, 1, -1, -1], [1, 0, 1, -1], [1, 0, 0, 1]]
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..display import for_matplotlib
from ..errors import SpecValueError
from ..ir.graph import BlockInfo, block_members, blocks, topo_nodes
from ..ops import get

READ, SKIPPED, UNAVAILABLE = 1, 0, -1


@dataclass(frozen=True)
class BlockMatrix:
    block: str
    pattern: str
    rows: tuple[int, ...]  # unit indices i
    cols: tuple[int, ...]  # feature indices j
    mask: np.ndarray  # int8 (rows, cols): READ, SKIPPED (available, not read) or UNAVAILABLE (j >= i)
    weights: np.ndarray | None = None  # mean |w| per READ cell, nan elsewhere
    note: str | None = None  # why a heat map could not be computed for this block

    def reads(self) -> dict[int, tuple[int, ...]]:
        """The connection set per unit, read back from the matrix."""
        return {
            i: tuple(j for j, v in zip(self.cols, row, strict=True) if v == READ)
            for i, row in zip(self.rows, self.mask, strict=True)
        }


def connectivity_matrix(block: BlockInfo) -> BlockMatrix:
    rows = tuple(u.index for u in block.units)
    first = min(f.index for f in block.features)
    cols = tuple(range(first, max(rows)))
    mask = np.full((len(rows), len(cols)), UNAVAILABLE, dtype=np.int8)
    for r, u in enumerate(block.units):
        for c, j in enumerate(cols):
            if j < u.index:
                mask[r, c] = READ if j in u.reads else SKIPPED
    return BlockMatrix(block.name, block.pattern, rows, cols, mask)


def first_conv(graph: nx.DiGraph, block: str, unit: int) -> str | None:
    """The first conv in execution order of unit ``unit`` of ``block`` (nested blocks included)."""
    members = block_members(graph, block)
    for n in topo_nodes(graph.subgraph([m for m, u in members.items() if u == unit])):
        if graph.nodes[n]["kind"] == "conv":
            return n
    return None


def _channel_path(graph: nx.DiGraph, conv: str, aggregate: str) -> bool:
    """True if ``conv`` sees the aggregate's channels unchanged (only channel-wise ops between)."""
    n = graph.nodes[conv]["inputs"][0]
    while n != aggregate:
        d = graph.nodes[n]
        op = get(d["kind"])  # ops that keep every channel where it is
        if not (op.per_channel or op.eval_identity):
            return False
        n = d["inputs"][0]
    return True


def feature_slices(graph: nx.DiGraph, block: BlockInfo, reads: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Channel range of each read feature inside the unit's aggregate (concat order = ``reads`` order:
    pass ``block.aggregate_order(unit)``)."""
    out, start = {}, 0
    for j in reads:
        f = next(f for f in block.features if f.index == j)
        width = f.channels(graph)
        out[j] = (start, start + width)
        start += width
    return out


def weight_matrix(graph: nx.DiGraph, block: BlockInfo, state: Mapping[str, np.ndarray]) -> BlockMatrix:
    """Each READ cell: the mean absolute weight of unit i's first conv over the input channels
    that come from x_j (the DenseNet paper's weight-scale figure).

    ``state`` maps ``"<conv node>.weight"`` to an ``(out, in, kh, kw)`` array.
    """
    m = connectivity_matrix(block)
    if block.kind != "concat":
        what = {"split": "a split block adds", "wsum": "a wsum block sums (weighted)"}.get(
            block.kind, "an add block sums"
        )
        return _with(m, note=f"{what} its inputs: no per-feature slice of the weights")
    weights = np.full(m.mask.shape, np.nan)
    for r, u in enumerate(block.units):
        conv = first_conv(graph, block.name, u.index)
        if conv is None or graph.nodes[conv]["attrs"]["groups"] != 1 or not _channel_path(graph, conv, u.aggregate):
            return _with(m, note=f"unit {u.index} does not start with an ungrouped conv over its input")
        key = f"{conv}.weight"
        if key not in state:
            raise SpecValueError(
                f"the checkpoint has no '{key}'", None, "was it trained from this spec with the same --set values?"
            )
        w = np.abs(np.asarray(state[key], dtype=np.float64))
        slices = feature_slices(graph, block, block.aggregate_order(u))
        need = max(stop for _, stop in slices.values())
        if w.ndim != 4 or w.shape[1] != need:
            raise SpecValueError(
                f"'{key}' has shape {tuple(w.shape)}, but unit {u.index} reads {need} channels",
                None,
                "was it trained from this spec with the same --set values?",
            )
        for c, j in enumerate(m.cols):
            if j in slices:
                a, b = slices[j]
                weights[r, c] = w[:, a:b].mean()
    return _with(m, weights=weights)


def _with(m: BlockMatrix, **kw) -> BlockMatrix:
    return BlockMatrix(m.block, m.pattern, m.rows, m.cols, m.mask, kw.get("weights"), kw.get("note"))


def block_matrices(
    graph: nx.DiGraph, selected: Sequence[BlockInfo] | None = None, state: Mapping[str, np.ndarray] | None = None
) -> list[BlockMatrix]:
    chosen = list(selected) if selected is not None else blocks(graph)
    if not chosen:
        raise SpecValueError(
            f"{graph.graph.get('name', 'this network')} has no block to draw as a matrix",
            None,
            "matrices show block(...) connectivity; use the graph style instead",
        )
    if state is None:
        return [connectivity_matrix(b) for b in chosen]
    return [weight_matrix(graph, b, state) for b in chosen]


FORMATS = ("png", "svg", "pdf")
READ_COLOR = (0.23, 0.43, 0.65)
SKIPPED_COLOR = (0.90, 0.90, 0.90)


def _ticks(values: Sequence[int], limit: int = 16) -> list[int]:
    step = max(1, math.ceil(len(values) / limit))
    return list(range(0, len(values), step))


def _draw(ax, m: BlockMatrix, fig) -> None:
    rgb = np.ones(m.mask.shape + (3,))
    rgb[m.mask == SKIPPED] = SKIPPED_COLOR
    if m.weights is None:
        rgb[m.mask == READ] = READ_COLOR
        ax.imshow(rgb, aspect="auto", interpolation="nearest")
    else:
        ax.imshow(rgb, aspect="auto", interpolation="nearest")
        heat = np.ma.masked_invalid(m.weights)
        im = ax.imshow(heat, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0)
        bar = fig.colorbar(im, ax=ax, shrink=0.85)
        bar.set_label("mean |w|", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    xt, yt = _ticks(m.cols), _ticks(m.rows)
    ax.set_xticks(xt, [str(m.cols[k]) for k in xt], fontsize=7)
    ax.set_yticks(yt, [str(m.rows[k]) for k in yt], fontsize=7)
    if len(m.cols) <= 48 and len(m.rows) <= 48:  # cell borders help only while cells are large
        ax.set_xticks(np.arange(-0.5, len(m.cols)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(m.rows)), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
    ax.set_xlabel("feature x_j read", fontsize=8)
    ax.set_ylabel("unit i", fontsize=8)
    title = for_matplotlib(f"{m.block}: {m.pattern}")  # a rule's text may hold '$': never mathtext
    if m.note:
        title += "\n(" + for_matplotlib(m.note) + ")"
    ax.set_title(title, fontsize=8)


def render_matrices(
    mats: Sequence[BlockMatrix], fmt: str = "png", size: tuple[int, int] | None = None, dpi: int = 100
) -> bytes:
    """Draw one panel per block; ``size`` is the image size in pixels (width, height)."""
    if fmt not in FORMATS:
        raise SpecValueError(f"matrices render as {', '.join(FORMATS)}, not '{fmt}'", None)
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    ncols = min(3, len(mats))
    nrows = math.ceil(len(mats) / ncols)
    width, height = size or (340 * ncols + 60, 320 * nrows)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < len(mats):
            _draw(ax, mats[k], fig)
        else:
            ax.set_axis_off()
    buf = io.BytesIO()
    # metadata without dates keeps the committed images byte-stable across runs
    meta = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]
    fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return buf.getvalue()
