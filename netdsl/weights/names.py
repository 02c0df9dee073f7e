"""Export names: the key prefixes a layout gives netdsl's weight-bearing modules, derived from
where each module sits in the IR (stem, dense block and unit, transition, residual unit and
branch, head), not from per-model tables.

torchvision names two families:

- DenseNet (a network of concat blocks): ``features.conv0``/``norm0`` for the stem,
  ``features.denseblock{b}.denselayer{u}.norm{i}``/``conv{i}`` for the i-th BN/conv of unit u,
  ``features.transition{b}.norm``/``conv`` after block b, ``features.norm5`` for the final
  BN (torchvision says norm5 for any number of blocks) and ``classifier``;
- ResNet (residual units joined by add): ``conv1``/``bn1`` for the stem,
  ``layer{s}.{j}.conv{i}``/``bn{i}`` on the main branch, ``layer{s}.{j}.downsample.0``/``.1``
  for a projection shortcut (a unit with one starts stage s), ``fc``.
"""

from __future__ import annotations

from collections import Counter

import networkx as nx

from ..errors import WeightsError
from ..ir.graph import blocks
from .modules import ModuleWeights

_SHORT = {"batchnorm": "bn", "conv": "conv", "linear": "fc"}


def torchvision_names(graph: nx.DiGraph, modules: list[ModuleWeights]) -> list[str]:
    """torchvision's key prefix for each of netdsl's ``modules`` (state_dict order)."""
    if any(b.kind == "concat" for b in blocks(graph)):
        return _densenet_names(graph, modules)
    if any(d["kind"] == "add" for _, d in graph.nodes(data=True)):
        return _resnet_names(graph, modules)
    raise WeightsError(
        f"no torchvision layout for '{graph.graph.get('name')}'",
        None,
        "torchvision names DenseNets (concat blocks) and ResNets (residual units); export with layout='netdsl'",
    )


def _node(graph: nx.DiGraph, module: ModuleWeights) -> dict:
    if module.prefix not in graph:
        raise WeightsError(f"'{module.prefix}' is not one op of the network; its torchvision name is unknown")
    return graph.nodes[module.prefix]


def _once(names: dict[str, str], module: ModuleWeights, where: str) -> str:
    """The one name a kind has in a single-slot scope (a stem, a transition, a head)."""
    name = names.get(module.kind)
    if name is None:
        raise WeightsError(f"no torchvision name for {module.describe()} in the {where}")
    names.pop(module.kind)  # a second module of this kind in the scope has no name
    return name


def _densenet_names(graph: nx.DiGraph, modules: list[ModuleWeights]) -> list[str]:
    order = [b.name for b in blocks(graph) if b.kind == "concat"]
    if any(b.kind != "concat" for b in blocks(graph)) or graph.graph.get("block_parents"):
        raise WeightsError("torchvision's DenseNet layout has plain dense blocks only (no nested or add blocks)")
    last = len(order)
    seen = 0  # blocks passed so far (topological order: a transition follows its block)
    count: Counter[tuple[str, str]] = Counter()
    slots: dict[int, dict[str, str]] = {}
    out = []
    for module in modules:
        data = _node(graph, module)
        if data.get("block") in order:
            seen = order.index(data["block"]) + 1
            scope = f"features.denseblock{seen}.denselayer{data['unit']}"
            count[scope, module.kind] += 1
            short = "norm" if module.kind == "batchnorm" else module.kind
            out.append(f"{scope}.{short}{count[scope, module.kind]}")
            continue
        if seen not in slots:
            if seen == 0:
                slots[seen] = {"conv": "features.conv0", "batchnorm": "features.norm0"}
            elif seen < last:
                slots[seen] = {
                    "conv": f"features.transition{seen}.conv",
                    "batchnorm": f"features.transition{seen}.norm",
                }
            else:
                slots[seen] = {"batchnorm": "features.norm5", "linear": "classifier"}  # norm5 whatever the depth
        where = "stem" if seen == 0 else ("head" if seen == last else f"transition after block {seen}")
        out.append(_once(slots[seen], module, where))
    return out


def _resnet_names(graph: nx.DiGraph, modules: list[ModuleWeights]) -> list[str]:
    # A residual unit is the template call (the node's `stage`) that ends in an add of two branches.
    units = {d["stage"]: n for n, d in graph.nodes(data=True) if d["kind"] == "add"}
    branches = {}
    for stage, add in units.items():
        inputs = graph.nodes[add]["inputs"]
        if len(inputs) != 2:
            raise WeightsError(f"torchvision's ResNet layout adds two branches; '{add}' adds {len(inputs)}")
        branches[stage] = [nx.ancestors(graph, i) | {i} for i in inputs]
    stage_no, block_no, current = 0, -1, None
    stem = {"conv": "conv1", "batchnorm": "bn1"}
    head = {"linear": "fc"}
    count: Counter[tuple[str, str]] = Counter()
    out = []
    for module in modules:
        data = _node(graph, module)
        unit = data.get("stage")
        if unit not in units:
            out.append(_once(stem if current is None else head, module, "stem" if current is None else "head"))
            continue
        a, b = branches[unit]
        weighted = [
            {n for n in br if graph.nodes[n]["kind"] == "conv" and graph.nodes[n].get("stage") == unit} for br in (a, b)
        ]
        main = 0 if len(weighted[0]) >= len(weighted[1]) else 1
        if unit != current:
            current = unit
            if weighted[1 - main]:  # a projection shortcut starts a stage
                stage_no, block_no = stage_no + 1, 0
            else:
                block_no += 1
            if stage_no == 0:
                raise WeightsError(
                    f"'{unit}': torchvision's ResNet layout starts each stage with a projection shortcut"
                )
        scope = f"layer{stage_no}.{block_no}"
        on_main = module.prefix in (a, b)[main] and module.prefix not in (a, b)[1 - main]
        if on_main:
            count[scope, module.kind] += 1
            out.append(f"{scope}.{_SHORT[module.kind]}{count[scope, module.kind]}")
        else:
            count[scope + ".downsample", module.kind] += 1
            position = {"conv": 0, "batchnorm": 1}.get(module.kind)
            if position is None or count[scope + ".downsample", module.kind] > 1:
                raise WeightsError(f"no torchvision name for {module.describe()} on a shortcut")
            out.append(f"{scope}.downsample.{position}")
    return out
