"""What a pass is and what it returns; in a module of its own so that the passes import it without
importing the package that lists them (``netdsl.passes.default_passes``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx


@dataclass(frozen=True, slots=True)
class PassResult:
    graph: nx.DiGraph
    modified: bool


@dataclass(frozen=True, slots=True)
class Pass:
    name: str
    run: Callable[[nx.DiGraph], PassResult]
