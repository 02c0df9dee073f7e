"""The layout a generated module runs in, decided from the graph alone: read by the code generator,
the API and the command line (which validate the option) and ``netdsl train`` (which feeds its
batches in it). No torch import, so validating the option costs nothing at start-up."""

from __future__ import annotations

import networkx as nx

from ...errors import IRError

MEMORY_FORMATS = ("auto", "channels_last", "contiguous", "preserve")


def memory_format(graph: nx.DiGraph) -> str | None:
    """The layout the generated module runs in: ``graph.graph["memory_format"]`` (``"auto"``
    when absent: the compiler's choice, channels_last), None where the input has no two spatial
    dims or the module follows its caller's layout (``"preserve"``).

    channels_last on every device, in fp32 and under autocast: on the CPU oneDNN runs the 1x1
    bottlenecks as GEMMs over NHWC and bf16 on AMX wants it (docs/performance.md: the generated
    DenseNet-BC-100 0.65x the hand-written model in channels_last against 1.06x in NCHW), on
    CUDA it is the tensor cores' layout under AMP and TF32 (unmeasured here; benchmarks/gpu.sh).
    """
    chosen = graph.graph.get("memory_format", "auto")
    if chosen not in MEMORY_FORMATS:
        raise IRError(f"memory_format {chosen!r}: use one of {', '.join(MEMORY_FORMATS)}")
    if len(graph.nodes[graph.graph["input"]]["shape"]) != 3 or chosen == "preserve":
        return None
    return "channels_last" if chosen == "auto" else chosen
