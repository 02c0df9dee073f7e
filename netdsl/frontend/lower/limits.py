"""The work budget of a lowering: the limits a spec may not exceed, and the error for a spent one."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import LimitError, Span


@dataclass(frozen=True, slots=True)
class Limits:
    """The work budget: resource limits checked while lowering, before anything is allocated.

    Each limit a user can reach has a CLI flag of the same name (``--max-edges``); the defaults
    keep ``netdsl check`` of any spec within seconds while leaving every published network far
    inside (the largest preset, dense2net121_s8, has 2,513 ops and 3,801 edges)."""

    max_params: int = 2_000_000_000
    max_nodes: int = 50_000  # about 2 s of lowering and passes on a 2-core machine
    max_map_elements: int = 2**31  # C*H*W of any one tensor, per sample
    max_template_depth: int = 48
    # Statements nested inside each other, counting through template calls and unit bodies;
    # lowering recurses once per level, so this keeps it far from Python's recursion limit.
    max_statement_depth: int = 100
    # Iterations of all loops together (for, repeat, and the for loops of parallel), nested ones counted.
    max_loop_iterations: int = 100_000
    max_layers: int = 10_000  # units of all blocks together
    # Connections between ops (IR edges); a rule block counts every (i, j) pair its rule tests, a
    # graph block the node pairs its generator visits (before networkx runs).
    max_edges: int = 250_000


# Flag that raises each limit, named in the limit's error message.
LIMIT_FLAGS = {
    "max_params": "--max-params",
    "max_nodes": "--max-nodes",
    "max_map_elements": "--max-map-elements",
    "max_loop_iterations": "--max-loop-iterations",
    "max_layers": "--max-layers",
    "max_edges": "--max-edges",
}


def over_limit(limits: Limits, name: str, what: str, span: Span | None) -> LimitError:
    """The error for a spent budget: what was asked for, the limit and the flag that raises it."""
    return LimitError(what, span, f"the limit is {getattr(limits, name):,}; raise it with {LIMIT_FLAGS[name]}")
