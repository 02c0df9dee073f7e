"""Connectivity patterns as values, and the exact connection set each one produces.

A block has L units. Unit i (1..L) may read the features ``x_j`` for ``first <= j <= i-1``:
``x_0`` is the block input and ``x_1 .. x_{i-1}`` the earlier units' outputs. For ``window``,
the block input is split into groups of the unit width, indexed ``1-G .. 0`` (so ``first = 1-G``).

>>> connections(Path(far=2, near=1), 5)
(0, 1, 4)
>>> connections(Window(3), 2, first=-3)
(-1, 0, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import generators


@dataclass(frozen=True, slots=True)
class Dense:
    """All of x_0 .. x_{i-1} (DenseNet, eq. 2)."""

    def __str__(self) -> str:
        return "dense"


@dataclass(frozen=True, slots=True)
class Path:
    """The ``far`` farthest and ``near`` nearest of x_0 .. x_{i-1}; all while i <= far + near (SparseNet)."""

    far: int
    near: int

    def __str__(self) -> str:
        return f"path(far={self.far}, near={self.near})"


@dataclass(frozen=True, slots=True)
class Window:
    """The ``g`` most recent features; the block input counts as groups of the unit width (WSeqConv)."""

    g: int

    def __str__(self) -> str:
        return f"window({self.g})"


@dataclass(frozen=True, slots=True)
class Split:
    """Res2Net's hierarchical split: s subsets, y_1 = x_1, y_i = K_i(x_i + y_{i-1})."""

    scale: int

    def __str__(self) -> str:
        return f"split(scale={self.scale})"


@dataclass(frozen=True, slots=True)
class Rule:
    """A user rule: unit i reads x_j iff ``predicate(i, j)``; ``text`` is the spec's expression."""

    text: str
    predicate: Callable[[int, int], bool] = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"rule({self.text})"


@dataclass(frozen=True, slots=True)
class Graph:
    """A wiring drawn from a seeded random-graph generator (RandWire): node v is unit v + 1, each
    edge u < v makes unit v + 1 read x_{u+1}, and a node with no predecessor reads x_0
    (:mod:`netdsl.ir.generators`)."""

    generator: str  # "ws", "er" or "ba"
    args: tuple[int | float, ...]  # the generator's arguments, n first
    seed: int

    @property
    def nodes(self) -> int:
        return int(self.args[0])

    def __str__(self) -> str:
        return f"graph({self.generator}({', '.join(map(str, self.args))}), seed={self.seed})"


Pattern = Dense | Path | Window | Split | Rule | Graph
PATTERN_TYPES = (Dense, Path, Window, Split, Rule, Graph)


def connections(pattern: Pattern, i: int, first: int = 0) -> tuple[int, ...]:
    """The sorted feature indices unit ``i`` reads, from the available ``first .. i-1``."""
    available = range(first, i)
    if isinstance(pattern, Dense):
        return tuple(available)
    if isinstance(pattern, Path):
        if len(available) <= pattern.far + pattern.near:
            return tuple(available)
        near = tuple(available[len(available) - pattern.near :]) if pattern.near else ()
        return tuple(available[: pattern.far]) + near
    if isinstance(pattern, Window):
        return tuple(available[max(0, len(available) - pattern.g) :])
    if isinstance(pattern, Rule):
        return tuple(j for j in available if pattern.predicate(i, j))
    if isinstance(pattern, Graph) and first == 0:
        preds = generators.predecessors(pattern.generator, pattern.args, pattern.seed)[i - 1]
        return tuple(u + 1 for u in preds) if preds else (0,)
    raise TypeError(f"{pattern!r} has no per-unit connection set")


def split_connections(scale: int) -> dict[int, tuple[int, ...]]:
    """Res2Net: unit i (2..s) reads input subset x_i (index i - s) and, for i > 2, y_{i-1} (index i-1).

    Subsets x_1 .. x_s are indexed ``1-s .. 0``; ``y_1 = x_1`` has no unit.

    >>> split_connections(4)
    {2: (-2,), 3: (-1, 2), 4: (0, 3)}
    """
    out: dict[int, tuple[int, ...]] = {}
    for i in range(2, scale + 1):
        out[i] = (i - scale,) if i == 2 else (i - scale, i - 1)
    return out
