"""The Python API: compile a spec or preset to an IR graph, a torch module or source.

Each function is a thin wrapper over :func:`netdsl.pipeline.compile_target`, the one pipeline.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from .frontend import Limits
from .pipeline import DEFAULT_OPT, OPT_PASSES, compile_target, instantiate, source_header

__all__ = ["DEFAULT_OPT", "OPT_PASSES", "build_model", "compile_spec", "onnx_model", "torch_source"]


def compile_spec(
    target: str | Path,
    overrides: dict | None = None,
    *,
    limits: Limits | None = None,
    check: bool = False,
    text: str | None = None,
    opt: int = DEFAULT_OPT,
) -> nx.DiGraph:
    """Spec file or preset name -> analysed IR graph (shapes, params, FLOPs).

    >>> g = compile_spec("densenet_bc100_k12")
    >>> g.graph["total_params"]
    769162
    """
    return compile_target(target, overrides, opt=opt, limits=limits, text=text, check=check).graph


def build_model(
    target: str | Path,
    *,
    seed: int | None = 0,
    limits: Limits | None = None,
    opt: int = DEFAULT_OPT,
    weights=None,
    layout: str = "netdsl",
    **overrides,
):
    """Spec file or preset name -> ``torch.nn.Module``; keyword arguments override spec parameters.

    ``weights``: a state_dict or ``torch.save`` file of ``layout`` ("netdsl", "torchvision",
    "pytorchcv") loaded into the module, see :func:`netdsl.load_weights`.

    >>> m = build_model("densenet_bc100_k12", classes=100)
    >>> m.head1.fc.out_features
    100
    """
    from .weights import load_weights, remember_graph

    graph = compile_target(target, overrides, limits=limits, opt=opt).graph
    model = instantiate(graph, seed)
    remember_graph(model, graph)  # so load_weights(model, ...) can match modules by structure
    if weights is not None:
        load_weights(model, weights, layout)
    return model


def torch_source(
    target: str | Path, overrides: dict | None = None, *, limits: Limits | None = None, opt: int = DEFAULT_OPT
) -> str:
    """The generated module's source: exactly what :func:`build_model` execs (``inspect.getsource``
    of its class is in it), standalone (needs only torch)."""
    from .backends.torch_codegen import generate

    graph = compile_target(target, overrides, limits=limits, opt=opt).graph
    return generate(graph, source_header(graph))


def onnx_model(
    target: str | Path,
    overrides: dict | None = None,
    *,
    weights=None,
    seed: int | None = 0,
    limits: Limits | None = None,
    report: list | None = None,
    layout: str = "netdsl",
):
    """Spec file or preset name -> ONNX inference model (``onnx.ModelProto``).

    ``weights``: a torch module of the same spec, a state_dict, or a ``torch.save`` file (a raw
    state_dict or a checkpoint with it under ``"model"``) of ``layout`` (see
    :func:`netdsl.load_weights`); None exports the torch backend's initialization with ``seed``
    and warns that the graph is untrained. ``report``, if given,
    receives the :class:`netdsl.backends.onnx_export.ExportReport`.

    >>> net = build_model("densenet_bc100_k12", depth=10, k=4)
    >>> m = onnx_model("densenet_bc100_k12", {"depth": 10, "k": 4}, weights=net)
    >>> m.graph.node[0].name, m.graph.output[0].name
    ('stem', 'head1.fc')
    """
    from .backends.onnx_export import export

    graph = compile_target(target, overrides, limits=limits, opt=0).graph
    if layout != "netdsl" and weights is not None and not hasattr(weights, "state_dict"):
        from .weights import load_weights

        weights = load_weights(instantiate(graph, seed), weights, layout, graph=graph)
    model, rep = export(graph, weights, seed=seed)
    if report is not None:
        report.append(rep)
    return model
