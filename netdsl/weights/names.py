"""Export names: the key prefixes a layout gives netdsl's weight-bearing modules, derived from
where each module sits in the IR, not from per-model tables.

:func:`places` finds each module's place -- the stem, unit u of dense block b, the transition
after block b, the head, or the main branch / shortcut of residual unit j of stage s -- from the
IR's blocks and add nodes; each layout then spells the places its own way:

torchvision
    DenseNet: ``features.conv0``/``norm0``, ``features.denseblock{b}.denselayer{u}.norm{i}``/
    ``conv{i}``, ``features.transition{b}.norm``/``conv``, ``features.norm5`` (for any number of
    blocks), ``classifier``. ResNet: ``conv1``/``bn1``, ``layer{s}.{j}.conv{i}``/``bn{i}``,
    ``layer{s}.{j}.downsample.0``/``.1``, ``fc``.
pytorchcv
    BN-ReLU-conv pairs are one module (``conv1.bn``, ``conv1.conv``; ``conv`` in a one-conv unit).
    DenseNet: ``features.init_block`` (a lone conv) or ``.conv``/``.bn``,
    ``features.stage{b}.unit{u}.conv{i}.bn``, ``features.stage{b+1}.trans{b+1}.conv.bn``,
    ``features.post_activ.bn``, ``output``; SparseNet (blocks that hand on ``output=next``):
    ``features.stage{b}.blocks.block{u}...`` and ``features.stage{b+1}.trans.conv...``. ResNet
    (conv-BN pairs): ``features.init_block.conv.conv``, ``features.stage{s}.unit{j}.body.conv{i}.bn``,
    ``...identity_conv.conv``, ``output``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import networkx as nx

from ..errors import WeightsError
from ..ir.graph import blocks
from .modules import ModuleWeights


@dataclass(frozen=True)
class Place:
    """Where a weight module sits. ``section``: stem, unit, transition, head (DenseNet family)
    or stem, residual, head (ResNet family); ``block``/``unit``: b and u (or stage s and unit j,
    0-based as torchvision counts them); ``ordinal``: the i-th module of its kind in its scope;
    ``pair``: the conv it pairs with (BN before its conv in a dense unit, after it in a residual
    one); ``convs``: how many convs the scope has."""

    family: str
    section: str
    kind: str
    block: int = 0
    unit: int = 0
    ordinal: int = 1
    pair: int = 1
    convs: int = 1
    shortcut: bool = False
    sparse: bool = False  # a block that hands on what the next unit reads (output=next)


def places(graph: nx.DiGraph, modules: list[ModuleWeights], layout: str) -> list[Place]:
    if any(b.kind == "concat" for b in blocks(graph)):
        return _dense_places(graph, modules, layout)
    if any(d["kind"] == "add" for _, d in graph.nodes(data=True)):
        return _residual_places(graph, modules, layout)
    raise WeightsError(
        f"no {layout} layout for '{graph.graph.get('name')}'",
        None,
        f"{layout} names DenseNets (concat blocks) and ResNets (residual units); export with layout='netdsl'",
    )


def _node(graph: nx.DiGraph, module: ModuleWeights, layout: str) -> dict:
    if module.prefix not in graph:
        raise WeightsError(f"'{module.prefix}' is not one op of the network; its {layout} name is unknown")
    return graph.nodes[module.prefix]


def _counted(found: list[tuple[tuple, Place]], pre_activation: bool) -> list[Place]:
    """The places with their ordinal, pair and conv count filled in, per scope."""
    convs = Counter(scope for scope, place in found if place.kind == "conv")
    count: Counter[tuple] = Counter()
    out = []
    for scope, place in found:
        count[scope, place.kind] += 1
        seen = count[scope, "conv"]
        pair = seen if place.kind == "conv" or not pre_activation else seen + 1
        out.append(replace(place, ordinal=count[scope, place.kind], pair=pair, convs=convs[scope]))
    return out


def _dense_places(graph: nx.DiGraph, modules: list[ModuleWeights], layout: str) -> list[Place]:
    dense = [b for b in blocks(graph) if b.kind == "concat"]
    if len(dense) != len(blocks(graph)) or graph.graph.get("block_parents"):
        raise WeightsError(f"the {layout} DenseNet layout has plain dense blocks only (no nested or add blocks)")
    order = [b.name for b in dense]
    sparse = [b.output_mode == "next" for b in dense]
    seen = 0  # blocks passed so far (topological order: a transition follows its block)
    found: list[tuple[tuple, Place]] = []
    for module in modules:
        data = _node(graph, module, layout)
        if data.get("block") in order:
            seen = order.index(data["block"]) + 1
            place = Place("densenet", "unit", module.kind, seen, data["unit"], sparse=sparse[seen - 1])
            found.append(((seen, data["unit"]), place))
        else:
            section = "stem" if seen == 0 else "head" if seen == len(order) else "transition"
            found.append(
                ((section, seen), Place("densenet", section, module.kind, seen, sparse=sparse[max(seen, 1) - 1]))
            )
    return _counted(found, pre_activation=True)


def _residual_places(graph: nx.DiGraph, modules: list[ModuleWeights], layout: str) -> list[Place]:
    # A residual unit is the template call (the nodes' `stage`) that ends in an add of two branches.
    units = {d["stage"]: n for n, d in graph.nodes(data=True) if d["kind"] == "add"}
    branches = {}
    for unit, add in units.items():
        inputs = graph.nodes[add]["inputs"]
        if len(inputs) != 2:
            raise WeightsError(f"the {layout} ResNet layout adds two branches; '{add}' adds {len(inputs)}")
        sides = [nx.ancestors(graph, i) | {i} for i in inputs]
        mine = [{n for n in side if graph.nodes[n].get("stage") == unit} for side in sides]
        convs = [sum(graph.nodes[n]["kind"] == "conv" for n in side) for side in mine]
        longer = 0 if convs[0] >= convs[1] else 1  # the main branch; the other is the shortcut
        branches[unit] = (mine[longer], bool(convs[1 - longer]))
    stage, index, current = 0, -1, None
    found: list[tuple[tuple, Place]] = []
    for module in modules:
        data = _node(graph, module, layout)
        unit = data.get("stage")
        if unit not in units:
            section = "stem" if current is None else "head"
            found.append(((section,), Place("resnet", section, module.kind)))
            continue
        on_main, projection = branches[unit]
        if unit != current:
            current = unit
            stage, index = (stage + 1, 0) if projection else (stage, index + 1)  # a projection starts a stage
            if stage == 0:
                raise WeightsError(f"'{unit}': the {layout} ResNet layout starts each stage with a projection shortcut")
        shortcut = module.prefix not in on_main
        found.append(
            ((stage, index, shortcut), Place("resnet", "residual", module.kind, stage, index, shortcut=shortcut))
        )
    return _counted(found, pre_activation=False)


def _single(place: Place, kinds, layout: str) -> None:
    """Refuse a module a single-slot scope (a stem, a transition, a head, a shortcut) has no name for."""
    if place.kind not in kinds or place.ordinal > 1:
        where = f"transition after block {place.block}" if place.section == "transition" else place.section
        raise WeightsError(f"no {layout} name for the {place.kind} module {place.ordinal} of the {where}")


def _slot(place: Place, slots: dict[str, str], layout: str) -> str:
    """The one name a kind has in a single-slot scope."""
    _single(place, slots, layout)
    return slots[place.kind]


def torchvision_names(graph: nx.DiGraph, modules: list[ModuleWeights]) -> list[str]:
    """torchvision's key prefix for each of netdsl's ``modules`` (state_dict order)."""
    out = []
    for p in places(graph, modules, "torchvision"):
        short = {"batchnorm": "norm" if p.family == "densenet" else "bn", "conv": "conv", "linear": "fc"}[p.kind]
        if p.family == "densenet" and p.section == "unit":
            out.append(f"features.denseblock{p.block}.denselayer{p.unit}.{short}{p.ordinal}")
        elif p.family == "densenet":
            slots = {
                "stem": {"conv": "features.conv0", "batchnorm": "features.norm0"},
                "transition": {
                    "conv": f"features.transition{p.block}.conv",
                    "batchnorm": f"features.transition{p.block}.norm",
                },
                "head": {"batchnorm": "features.norm5", "linear": "classifier"},
            }[p.section]
            out.append(_slot(p, slots, "torchvision"))
        elif p.section == "residual" and not p.shortcut:
            out.append(f"layer{p.block}.{p.unit}.{short}{p.ordinal}")
        else:
            scope = f"layer{p.block}.{p.unit}.downsample"
            slots = {
                "stem": {"conv": "conv1", "batchnorm": "bn1"},
                "head": {"linear": "fc"},
                "residual": {"conv": f"{scope}.0", "batchnorm": f"{scope}.1"},
            }[p.section]
            out.append(_slot(p, slots, "torchvision"))
    return out


def pytorchcv_names(graph: nx.DiGraph, modules: list[ModuleWeights]) -> list[str]:
    """pytorchcv 0.0.74's key prefix for each of netdsl's ``modules`` (state_dict order)."""
    found = places(graph, modules, "pytorchcv")
    stem_convs = sum(p.section == "stem" and p.kind == "conv" for p in found)
    stem_bns = sum(p.section == "stem" and p.kind == "batchnorm" for p in found)
    out = []
    for p in found:
        part = {"batchnorm": "bn", "conv": "conv"}.get(p.kind, "")
        pair = "conv" if p.convs == 1 else f"conv{p.pair}"
        if p.section == "head":
            out.append(_slot(p, {"batchnorm": "features.post_activ.bn", "linear": "output"}, "pytorchcv"))
        elif p.family == "densenet" and p.section == "stem":
            lone = stem_convs == 1 and stem_bns == 0  # CIFAR: a plain 3x3 conv
            slots = {
                "conv": "features.init_block" if lone else "features.init_block.conv",
                "batchnorm": "features.init_block.bn",
            }
            out.append(_slot(p, slots, "pytorchcv"))
        elif p.family == "densenet" and p.section == "unit":
            unit = f"blocks.block{p.unit}" if p.sparse else f"unit{p.unit}"
            out.append(f"features.stage{p.block}.{unit}.{pair}.{part}")
        elif p.family == "densenet":
            _single(p, ("conv", "batchnorm"), "pytorchcv")  # a transition
            trans = "trans" if p.sparse else f"trans{p.block + 1}"
            out.append(f"features.stage{p.block + 1}.{trans}.conv.{part}")
        elif p.section == "stem":
            stem = {"conv": "features.init_block.conv.conv", "batchnorm": "features.init_block.conv.bn"}
            out.append(_slot(p, stem, "pytorchcv"))
        else:
            unit = f"features.stage{p.block}.unit{p.unit + 1}"
            out.append(f"{unit}.identity_conv.{part}" if p.shortcut else f"{unit}.body.{pair}.{part}")
    return out
