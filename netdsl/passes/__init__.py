"""IR passes. Each pass is one module with one function ``run(graph) -> PassResult``; the
pipeline is a list, and a failing pass is re-raised naming itself and the passes before it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import networkx as nx

from ..errors import NetdslError, PassError
from .base import Pass, PassResult

__all__ = ["Pass", "PassResult", "default_passes", "run_pipeline"]


def run_pipeline(
    graph: nx.DiGraph, passes: Sequence[Pass], check: Callable[[nx.DiGraph], None] | None = None
) -> nx.DiGraph:
    """Run passes in order; ``check`` (e.g. ``lint``) runs after each one."""
    done: list[str] = []
    for p in passes:
        try:
            graph = p.run(graph).graph
            if check is not None:
                check(graph)
        except NetdslError as err:
            if err.kind == "internal error":
                after = ", ".join(done) or "no passes"
                raise PassError(f"pass '{p.name}' failed (after {after}): {err.message}") from err
            raise
        except Exception as err:
            raise PassError(f"pass '{p.name}' failed (after {', '.join(done) or 'no passes'}): {err!r}") from err
        done.append(p.name)
    return graph


def default_passes() -> list[Pass]:
    from . import count, infer_shapes

    return [Pass("infer_shapes", infer_shapes.run), Pass("count", count.run)]
