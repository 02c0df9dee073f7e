"""The decisions a generated module makes for its caller, read from the graph alone: the layout
it runs in and whether it follows the caller's autocast. Read by the code generator, the API and
the command line (which validate the options) and ``netdsl train`` (which feeds its batches in
the module's layout). No torch import, so validating an option costs nothing at start-up."""

from __future__ import annotations

import networkx as nx

from ...errors import IRError

MEMORY_FORMATS = ("auto", "channels_last", "contiguous", "preserve")

# "auto": under the caller's autocast the module runs in the 16-bit dtype where the device has
# matrix units for it, else in float32 (its outputs in the autocast dtype, as the caller expects);
# "autocast": it always follows the caller's autocast.
PRECISIONS = ("auto", "autocast")


def memory_format(graph: nx.DiGraph) -> str | None:
    """The layout the generated module runs in: ``graph.graph["memory_format"]`` (``"auto"``
    when absent: the compiler's choice, channels_last), None where the input has no two spatial
    dims or the module follows its caller's layout (``"preserve"``).

    channels_last on every device, in fp32 and under autocast: on the CPU oneDNN runs the 1x1
    bottlenecks as GEMMs over NHWC and bf16 on AMX wants it (docs/performance.md: the generated
    DenseNet-BC-100 0.65x the hand-written model in channels_last against 1.06x in NCHW), on
    CUDA it is the tensor cores' layout under AMP and TF32 (unmeasured here; benchmarks/gpu.sh).
    """
    chosen = _option(graph, "memory_format", MEMORY_FORMATS)
    if len(graph.nodes[graph.graph["input"]]["shape"]) != 3 or chosen == "preserve":
        return None
    return "channels_last" if chosen == "auto" else chosen


def precision(graph: nx.DiGraph) -> str:
    """``graph.graph["precision"]``, one of :data:`PRECISIONS` (``"auto"`` when absent).

    Why "auto" may run float32 under a caller's bf16 autocast: on a CPU without AVX512 (or AMX)
    oneDNN has no bf16 convolution, and torch falls back to a reference kernel (im2col + gemm)
    that ran a DenseNet-BC-100 training step 6-8x slower than float32 on this project's AVX2
    machine (docs/performance.md); a GPU without bf16 tensor cores (before sm80) emulates it too.
    """
    return _option(graph, "precision", PRECISIONS)


def _option(graph: nx.DiGraph, key: str, choices: tuple[str, ...]) -> str:
    chosen = graph.graph.get(key, "auto")
    if chosen not in choices:
        raise IRError(f"{key} {chosen!r}: use one of {', '.join(choices)}")
    return chosen
