"""The Python API: compile a spec or preset to an IR graph, a torch module or source.

Each function is a thin wrapper over :func:`netdsl.pipeline.compile_target`, the one pipeline.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from .errors import SpecValueError
from .frontend import Limits
from .pipeline import DEFAULT_OPT, OPT_PASSES, compile_target, instantiate, source_header

__all__ = ["API_OPTIONS", "DEFAULT_OPT", "OPT_PASSES", "build_model", "compile_spec", "onnx_model", "torch_source"]

# The keyword arguments of these functions that are options, not spec parameters: every other
# keyword overrides a spec parameter. A spec declaring a parameter of one of these names is
# refused here (the command line's --set NAME=VALUE is unaffected); no bundled spec does.
API_OPTIONS = frozenset(
    {"limits", "check", "text", "opt", "seed", "weights", "layout", "report", "memory_format", "precision"}
)


def _compile(
    target: str | Path, overrides: dict, memory_format: str = "auto", precision: str = "auto", **kw
) -> nx.DiGraph:
    from .backends.torch.decisions import MEMORY_FORMATS, PRECISIONS  # torch-free: compile_spec imports no torch

    for option, value, choices in (
        ("memory_format", memory_format, MEMORY_FORMATS),
        ("precision", precision, PRECISIONS),
    ):
        if value not in choices:
            raise SpecValueError(
                f"{option}={value!r} is not one of {', '.join(choices)}", None, f"use one of {', '.join(choices)}"
            )
    graph = compile_target(target, overrides, **kw).graph
    # the torch module's decisions, which the code generator reads: its layout and its precision
    graph.graph["memory_format"], graph.graph["precision"] = memory_format, precision
    clash = sorted(API_OPTIONS & set(graph.graph.get("params", {})))
    if clash:
        raise SpecValueError(
            f"network '{graph.graph.get('name')}' declares the parameter '{clash[0]}', which the Python API "
            f"takes as its own option ({clash[0]}=...), so its value cannot be passed as a keyword",
            None,
            f"rename the parameter in the spec (the command line's --set {clash[0]}=VALUE still works)",
        )
    return graph


def compile_spec(
    target: str | Path,
    *,
    limits: Limits | None = None,
    check: bool = False,
    text: str | None = None,
    opt: int = DEFAULT_OPT,
    **overrides,
) -> nx.DiGraph:
    """Spec file or preset name -> analysed IR graph (shapes, params, FLOPs); keyword arguments
    other than the options override spec parameters.

    >>> compile_spec("densenet_bc100_k12").graph["total_params"]
    769162
    >>> compile_spec("densenet_bc100_k12", depth=40).graph["params"]["depth"]
    40
    """
    return _compile(target, overrides, opt=opt, limits=limits, text=text, check=check)


def build_model(
    target: str | Path,
    *,
    seed: int | None = 0,
    limits: Limits | None = None,
    opt: int = DEFAULT_OPT,
    weights=None,
    layout: str = "netdsl",
    memory_format: str = "auto",
    precision: str = "auto",
    **overrides,
):
    """Spec file or preset name -> ``torch.nn.Module``; keyword arguments override spec parameters.

    ``weights``: a state_dict or ``torch.save`` file of ``layout`` ("netdsl", "torchvision",
    "pytorchcv") loaded into the module, see :func:`netdsl.load_weights`.

    ``memory_format``: the layout the module runs in, whatever its caller passes ("auto": the
    compiler's choice, channels_last for image inputs; "channels_last" or "contiguous" pin one;
    "preserve": the input's own). It converts the input at the stem, keeps its weights and
    buffers in that layout and hands outputs with two spatial dims back in the caller's; the
    generated source states it (``# layout: ...``).

    ``precision``: under the caller's autocast ("auto", the compiler's choice) the module runs in
    the autocast dtype where its device has fast convolutions in it (a GPU's tensor cores, a CPU
    with oneDNN's bf16 kernels: AVX512 or AMX), else in float32, its outputs handed back in the
    autocast dtype; "autocast" pins it to follow the caller's autocast everywhere. The generated
    ``forward`` states it (``# precision: ...``).

    >>> m = build_model("densenet_bc100_k12", classes=100)
    >>> m.head1.fc.out_features
    100
    """
    from .weights import load_weights, remember_graph

    graph = _compile(target, overrides, memory_format, precision, limits=limits, opt=opt)
    model = instantiate(graph, seed)
    remember_graph(model, graph)  # so load_weights(model, ...) can match modules by structure
    if weights is not None:
        load_weights(model, weights, layout)
    return model


def torch_source(
    target: str | Path,
    *,
    limits: Limits | None = None,
    opt: int = DEFAULT_OPT,
    memory_format: str = "auto",
    precision: str = "auto",
    **overrides,
) -> str:
    """The generated module's source: exactly what :func:`build_model` execs (``inspect.getsource``
    of its class is in it), standalone (needs only torch); keyword arguments override spec parameters."""
    from .backends.torch.codegen import generate

    graph = _compile(target, overrides, memory_format, precision, limits=limits, opt=opt)
    return generate(graph, source_header(graph))


def onnx_model(
    target: str | Path,
    *,
    weights=None,
    seed: int | None = 0,
    limits: Limits | None = None,
    report: list | None = None,
    layout: str = "netdsl",
    **overrides,
):
    """Spec file or preset name -> ONNX inference model (``onnx.ModelProto``); keyword arguments
    other than the options override spec parameters.

    ``weights``: a torch module of the same spec and values, a state_dict, or a ``torch.save`` file
    (a raw state_dict or a checkpoint with it under ``"model"``) of ``layout`` (see
    :func:`netdsl.load_weights`); anything else, or weights of another network, is refused with a
    :class:`netdsl.errors.NetdslError` naming what does not fit. None exports the torch backend's
    initialization with ``seed`` and warns that the graph is untrained. ``report``, if given,
    receives the :class:`netdsl.backends.onnx.export.ExportReport`.

    >>> net = build_model("densenet_bc100_k12", depth=10, k=4)
    >>> m = onnx_model("densenet_bc100_k12", depth=10, k=4, weights=net)
    >>> m.graph.node[0].name, m.graph.output[0].name
    ('stem', 'head1.fc')
    """
    from .backends.onnx.export import export
    from .weights import in_netdsl_layout

    graph = _compile(target, overrides, limits=limits, opt=0)
    model, rep = export(graph, in_netdsl_layout(graph, weights, layout, seed), seed=seed)
    if report is not None:
        report.append(rep)
    return model
