"""Shared test data: the bundled specs."""

import os
import signal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.net"))

# ImageNet-sized specs run in tests at this resolution (every bundled architecture allows it),
# passed as the spec's `size` parameter; CIFAR-sized specs run at their own size.
TEST_SIZE = 64


def small_overrides(spec) -> dict:
    """Overrides that keep a spec's architecture but shrink its input for quick tests."""
    import netdsl

    params = netdsl.compile_spec(spec, opt=0).graph["params"]
    size = params.get("size")
    return {"size": TEST_SIZE} if isinstance(size, int) and size > TEST_SIZE else {}


def ctrl_c_at(epoch: int, step: int):
    """A training ``on_step`` hook that sends this process SIGINT (Ctrl-C) at that step."""

    def hook(e: int, s: int) -> None:
        if (e, s) == (epoch, step):
            os.kill(os.getpid(), signal.SIGINT)

    return hook


def outputs(y) -> tuple:
    """A module's forward result as a tuple of tensors: a network that declares several outputs
    (``output(cls, box)``) returns a tuple, any other one tensor."""
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def output_shapes(graph) -> tuple:
    """The shape of every output of a compiled graph, in forward's order (batch excluded)."""
    from netdsl.ir.graph import graph_outputs

    return tuple(tuple(graph.nodes[node]["shape"]) for _, node in graph_outputs(graph))
