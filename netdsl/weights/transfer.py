"""Loading a state_dict of another layout into a netdsl model, and exporting one.

The mapping rule (docs/weights.md): both state_dicts are read as ordered lists of weight-bearing
modules (:mod:`.modules`); the i-th module of one is the i-th of the other, and each pair must
agree in kind (conv, batchnorm, linear), tensor names and shapes. Where the layout orders
concatenated channels differently, the per-input-channel weights are permuted (:mod:`.channels`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from pathlib import Path

import networkx as nx
import torch
from torch import nn

from ..backends.torch.state_dict_file import read_state_dict, unwrap_checkpoint
from ..errors import WeightsError
from . import channels
from .layouts import Layout, get_layout
from .modules import COUNTER, ModuleWeights, group, strip_wrapper_prefix

_FIT_HINT = "build the network with the parameters the weights were trained with (e.g. --set k=24)"
_ORDER_HINT = "modules are matched in the order the state_dict lists them (docs/weights.md)"

# The IR of each model netdsl.build_model made, so load_weights(model, ...) can follow its
# concatenations; weak, so a model that is dropped is not kept alive by it.
_GRAPHS: weakref.WeakKeyDictionary[nn.Module, nx.DiGraph] = weakref.WeakKeyDictionary()


def remember_graph(model: nn.Module, graph: nx.DiGraph) -> None:
    _GRAPHS[model] = graph


def read_weights(source) -> dict[str, torch.Tensor]:
    """A state_dict from a ``torch.save`` file (read with ``weights_only=True``; a raw state_dict
    or a checkpoint with it under ``"model"`` or ``"state_dict"``) or from a dict."""
    if isinstance(source, (str, Path)):
        return strip_wrapper_prefix(read_state_dict(source))
    if isinstance(source, Mapping):
        source = unwrap_checkpoint(source)
        bad = next((k for k, v in source.items() if not torch.is_tensor(v)), None)
        if bad is not None or not source:
            raise WeightsError(
                "the weights hold no state_dict" + (f" ('{bad}' is not a tensor)" if bad is not None else ""),
                None,
                "give model.state_dict(), a checkpoint dict holding it under 'model' or 'state_dict', or a file",
            )
        return strip_wrapper_prefix(source)
    raise WeightsError(f"weights must be a file path or a state_dict, not {type(source).__name__}")


def load_weights(model: nn.Module, weights, layout: str = "netdsl", *, graph: nx.DiGraph | None = None) -> nn.Module:
    """Load ``weights`` (a path or a state_dict) of ``layout`` ("netdsl", "torchvision" or
    "pytorchcv") into ``model``, a module :func:`netdsl.build_model` made (else pass its IR as
    ``graph``). Every tensor is checked before any is loaded; returns ``model``.

    >>> import netdsl
    >>> a = netdsl.build_model("densenet_bc100_k12", depth=10, k=4, seed=1)
    >>> b = netdsl.load_weights(netdsl.build_model("densenet_bc100_k12", depth=10, k=4), a.state_dict())
    >>> all((a.state_dict()[k] == v).all() for k, v in b.state_dict().items())
    True
    """
    lay = get_layout(layout)
    state = read_weights(weights)
    if lay.by_name:
        new = _by_name(model.state_dict(), state)
    else:
        own = group(model.state_dict())
        perms = _module_perms(_graph(model, graph), lay, own)
        new = {}
        for mod, theirs in zip(own, _align(own, group(state)), strict=True):
            perm = perms[mod.prefix]
            for name, mine in mod.tensors.items():
                if name == COUNTER and name not in theirs.tensors:
                    new[mod.key(name)] = mine  # an old checkpoint without BN step counters
                    continue
                new[mod.key(name)] = _permuted(mod, name, theirs.tensors[name], perm).to(mine.dtype)
    model.load_state_dict(new, strict=True)
    return model


def export_weights(
    model: nn.Module, layout: str = "torchvision", *, graph: nx.DiGraph | None = None, like=None
) -> dict[str, torch.Tensor]:
    """``model``'s weights as a state_dict of ``layout``: the inverse of :func:`load_weights`.

    ``like``: a state_dict (or file) of the target model, whose keys the export takes -- any
    layout, e.g. a pytorchcv model's ``state_dict()``; without it, the layout's own naming rule
    is used (DenseNets, SparseNets and ResNets: netdsl/weights/names.py).
    """
    lay = get_layout(layout)
    own = group(model.state_dict())
    if lay.by_name:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    g = _graph(model, graph)
    if like is not None:
        theirs = _align(own, group(read_weights(like)))
        prefixes = [t.prefix for t in theirs]
        keep = [set(t.tensors) for t in theirs]
    else:
        assert lay.names is not None  # every layout matched by position has a naming rule
        prefixes = lay.names(g, own)
        keep = [set(m.tensors) for m in own]
    perms = _module_perms(g, lay, own)
    out: dict[str, torch.Tensor] = {}
    for mod, prefix, names in zip(own, prefixes, keep, strict=True):
        perm = perms[mod.prefix]
        for name, value in mod.tensors.items():
            if name not in names:
                continue
            back = channels.inverse(perm) if perm is not None else None
            out[f"{prefix}.{name}" if prefix else name] = _permuted(mod, name, value, back).detach().clone()
    return out


def _graph(model: nn.Module, graph: nx.DiGraph | None) -> nx.DiGraph:
    found = graph if graph is not None else _GRAPHS.get(model)
    if found is None:
        raise WeightsError(
            "this model's network is unknown, so its modules cannot be matched by structure",
            None,
            "build it with netdsl.build_model(...), or pass graph=netdsl.compile_spec(target, ...)",
        )
    return found


def _by_name(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    missing = [k for k in own if k not in state]
    if missing:
        raise WeightsError(f"the weights have no '{missing[0]}' ({len(missing)} keys missing)", None, _FIT_HINT)
    extra = [k for k in state if k not in own]
    if extra:
        raise WeightsError(
            f"the network has no '{extra[0]}' ({len(extra)} keys unexpected)",
            None,
            "weights of another layout need layout='torchvision' or 'pytorchcv'",
        )
    for key, value in state.items():
        _check_shape(key, value, key, own[key])
    return {k: v.to(own[k].dtype) for k, v in state.items()}


def _align(own: list[ModuleWeights], theirs: list[ModuleWeights]) -> list[ModuleWeights]:
    """``theirs`` checked to pair with ``own`` position by position: kinds, tensor names and
    shapes, the first misfit reported."""
    for i, (mine, other) in enumerate(zip(own, theirs, strict=False)):  # lengths compared below
        if mine.signature() != other.signature():
            raise WeightsError(
                f"weight module {i + 1} does not fit: the weights have {other.describe()}"
                f"{_names(other)} where the network has {mine.describe()}{_names(mine)}",
                None,
                _ORDER_HINT,
            )
        for name, tensor in mine.tensors.items():
            if name in other.tensors:
                _check_shape(other.key(name), other.tensors[name], mine.key(name), tensor)
    if len(own) != len(theirs):
        more, what = (own, "network") if len(own) > len(theirs) else (theirs, "weights")
        raise WeightsError(
            f"the weights have {len(theirs)} weight modules, the network {len(own)}: "
            f"the first without a partner is the {what}'s {more[min(len(own), len(theirs))].describe()}",
            None,
            _FIT_HINT,
        )
    return theirs


def _names(mod: ModuleWeights) -> str:
    return " [" + ", ".join(n for n in mod.tensors if n != COUNTER) + "]"


def _check_shape(their_key: str, value: torch.Tensor, own_key: str, mine: torch.Tensor) -> None:
    if tuple(value.shape) != tuple(mine.shape):
        where = f"'{their_key}'" + (f" (netdsl's '{own_key}')" if own_key != their_key else "")
        raise WeightsError(
            f"{where} has shape {list(value.shape)}, the network needs {list(mine.shape)}", None, _FIT_HINT
        )


def _permuted(mod: ModuleWeights, name: str, value: torch.Tensor, perm: list[int] | None) -> torch.Tensor:
    """``value`` with its input-channel dimension taken in the order ``perm`` (None: as it is).
    A conv's or linear layer's weight runs over input channels in dim 1 (its bias over outputs);
    a BatchNorm's (or per-channel affine's) tensors in dim 0."""
    if perm is None or name == COUNTER or (mod.kind in ("conv", "linear") and name != "weight"):
        return value
    if mod.kind in ("conv", "linear"):
        dim = 1
    elif mod.kind == "batchnorm" or (mod.kind == "other" and value.dim() == 1):
        dim = 0
    else:
        raise WeightsError(f"cannot permute the input channels of {mod.describe()} ('{name}')")
    return value.index_select(dim, torch.tensor(perm, device=value.device))


def _module_perms(graph: nx.DiGraph, layout: Layout, own: list[ModuleWeights]) -> dict[str, list[int] | None]:
    """Each of netdsl's weight modules -> the permutation of the channels it reads."""
    reverse = channels.reversed_concats(graph, layout.newest_first)
    out: dict[str, list[int] | None] = {m.prefix: None for m in own}
    if not reverse:
        return out
    perms = channels.output_perms(graph, reverse, layout.name)
    for mod in own:
        node = mod.prefix
        while node and node not in graph:  # a submodule of an op (an SE block's fc1) reads what the op reads
            node = node.rpartition(".")[0]
        perm = channels.input_perm(graph, perms, node) if node else None
        if perm is not None and node != mod.prefix:
            raise WeightsError(f"cannot permute the input channels of {mod.describe()} for the '{layout.name}' layout")
        out[mod.prefix] = perm
    return out


def in_netdsl_layout(graph: nx.DiGraph, weights, layout: str, seed: int | None = 0):
    """``weights`` (a path or state_dict of ``layout``) as a module of ``graph`` in netdsl's own
    layout, for the ONNX export; a module, None or netdsl-layout weights are returned as they are."""
    if weights is None or layout == "netdsl" or isinstance(weights, nn.Module):
        return weights
    from ..backends.torch.codegen import build

    return load_weights(build(graph, seed), weights, layout, graph=graph)
