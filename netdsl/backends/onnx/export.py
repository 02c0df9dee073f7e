"""From a compiled IR graph and weights to an ONNX inference model: bind the torch module's
weights to the nodes, run the inference rewrites, emit (:mod:`netdsl.backends.onnx.emit`)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import onnx
import torch
from torch import nn

from ...errors import NetdslError
from ...ir import lint
from ...passes import Pass, bn_to_affine, count, drop_inference_noops, fold_bn, plan_concat, run_pipeline
from ...passes.rewire import copy_graph
from ..torch import codegen as torch_codegen
from ..torch.state_dict_file import read_state_dict
from .emit import concat_stats, emit_onnx


def inference_passes() -> list[Pass]:
    """The rewrites before emission, in order: BN folding must see the graph without no-ops
    (a dropout between conv and BN would hide the pair). The concat plan names nodes these
    rewrites remove (a dropout that is a unit's output is a stored feature), so a planned graph is
    unplanned first and the rewritten graph planned by the one planner (``plan_concat``), whose
    :class:`~netdsl.ir.plan.BufferPlan` the emitter reads for where the Concat nodes go."""
    return [
        Pass("unplan", plan_concat.unplan),
        Pass("drop_inference_noops", drop_inference_noops.run),
        Pass("fold_bn", fold_bn.run),
        Pass("bn_to_affine", bn_to_affine.run),
        Pass("plan_concat", plan_concat.run),
        Pass("count", count.run),
    ]


class UntrainedWarning(UserWarning):
    """The exported graph carries the torch backend's initialization, not trained weights."""


def module_with_weights(graph: nx.DiGraph, weights=None, seed: int | None = 0) -> tuple[nn.Module, str]:
    """The torch module whose weights are exported, and a description of where they came from.
    ``weights``: None (initialization, with :class:`UntrainedWarning`), a module, a state_dict or a path;
    weights of another zoo's layout are mapped by the caller first (:func:`netdsl.load_weights`: the
    backends never import :mod:`netdsl.weights`, which imports them).
    Whatever the kind, its keys and shapes are checked against ``graph`` here, so a module of another
    spec (or other parameter values) is one clear error, not a failure deep in the inference rewrites."""
    if weights is None:
        warnings.warn(
            f"no weights given: exporting the untrained initialization (seed {seed})", UntrainedWarning, stacklevel=3
        )
        return torch_codegen.build(graph, seed), f"untrained initialization, seed {seed}"
    state: Mapping
    if isinstance(weights, (str, Path)):
        origin, state = str(weights), read_state_dict(weights)
    elif isinstance(weights, nn.Module):
        origin, state = f"module {type(weights).__name__}", weights.state_dict()
    elif isinstance(weights, Mapping):
        origin, state = "state_dict", weights
    else:
        raise NetdslError(
            f"weights: expected a torch module, a state_dict or a checkpoint path, got {type(weights).__name__}",
            None,
            "for example weights=netdsl.build_model(<the same target and values>)",
        )
    name = graph.graph.get("name")
    module = torch_codegen.module_from_graph(graph)
    missing, unexpected = _key_mismatch(module, state)
    if missing or unexpected:
        raise NetdslError(
            f"weights ({origin}) do not fit '{name}' ({torch_codegen.class_name(name)}): "
            f"{len(missing)} missing, {len(unexpected)} unexpected keys",
            None,
            "first missing: "
            + (", ".join(missing[:3]) or "none")
            + "; first unexpected: "
            + (", ".join(unexpected[:3]) or "none")
            + " (build or compile with the same target and parameter values the weights come from)",
        )
    for key, want in module.state_dict().items():  # the first tensor in the module's order that differs
        got = tuple(state[key].shape) if torch.is_tensor(state[key]) else type(state[key]).__name__
        if got != tuple(want.shape):
            raise NetdslError(
                f"weights ({origin}) do not fit '{name}': {key} has shape {got}, the network's is {tuple(want.shape)}",
                None,
                "build or compile with the same target and parameter values the weights come from",
            )
    module.load_state_dict(state, strict=True)
    return module, origin


def _key_mismatch(module: nn.Module, state: Mapping) -> tuple[list[str], list[str]]:
    want = set(module.state_dict())
    return sorted(want - set(state)), sorted(set(state) - want)


def bind_weights(graph: nx.DiGraph, module: nn.Module) -> nx.DiGraph:
    """A copy of ``graph`` whose stateful nodes carry ``weights``: name -> float32 numpy array,
    named as in the node's torch submodule (``weight``, ``running_mean``, ``fc1.weight``)."""
    out = copy_graph(graph)
    for n, d in out.nodes(data=True):
        try:
            sub = module.get_submodule(n)
        except AttributeError:
            continue
        d["weights"] = {
            k: v.detach().to("cpu", torch.float32).numpy().copy()
            for k, v in sub.state_dict().items()
            if v.is_floating_point()
        }
    return out


@dataclass(frozen=True, slots=True)
class ExportReport:
    weights: str  # where the weights came from
    onnx_nodes: int
    concat_nodes: int
    concat_bytes: int  # bytes the concats copy per sample (float32)
    folded_bn: int
    affine_bn: int

    def lines(self) -> list[str]:
        return [
            f"weights: {self.weights}",
            f"onnx: {self.onnx_nodes} nodes; BatchNorm folded into conv: {self.folded_bn}, "
            f"turned into affine: {self.affine_bn}",
            f"concat: {self.concat_nodes} Concat nodes copying {self.concat_bytes / 2**20:.2f} MiB per sample",
        ]


def export(graph: nx.DiGraph, weights=None, *, seed: int | None = 0) -> tuple[onnx.ModelProto, ExportReport]:
    """ONNX inference model of ``graph`` (see :func:`module_with_weights` for ``weights``)."""
    module, origin = module_with_weights(graph, weights, seed)
    bound = bind_weights(graph, module)
    rewritten = run_pipeline(bound, inference_passes(), lint)
    from ..._version import __version__

    meta = {
        "netdsl.version": __version__,
        "netdsl.spec": Path(graph.graph.get("file", "")).name,
        "netdsl.preset": graph.graph.get("preset") or "",
        "netdsl.params": json.dumps(graph.graph.get("params", {}), default=str),
        "netdsl.weights": origin,
    }
    model = emit_onnx(rewritten, meta)
    n_concat, concat_bytes = concat_stats(model, rewritten)
    folded = sum(len(d.get("folded", ())) for _, d in rewritten.nodes(data=True))
    affine = sum(1 for _, d in rewritten.nodes(data=True) if d["kind"] == "affine")
    return model, ExportReport(origin, len(model.graph.node), n_concat, concat_bytes, folded, affine)
