"""``lint(graph)``: checks the IR contract of :mod:`netdsl.ir.ops`. Run after every pass in tests."""

from __future__ import annotations

import networkx as nx

from ..errors import IRError, ShapeError
from ..ops import ACTIVATIONS, REGISTRY, infer_shape
from .graph import BlockInfo


def lint(graph: nx.DiGraph) -> None:
    """Raise :class:`IRError` naming the first broken rule; return None on a valid graph.

    Checks: acyclic; every kind in the closed set; arity; attrs present with the right types;
    edges mirror ``inputs``; stored shapes equal re-inferred ones (channel and spatial agreement);
    the graph input/output and block metadata name existing nodes; the declared ``outputs`` (when
    present) are distinct named nodes, the first of them ``output``; a block's streams are its
    input's per-unit slices and its pieces' concat (:class:`~netdsl.ir.graph.StreamInfo`); the membership attributes
    (``stage``, ``layer``, ``block``, ``unit``) are all there or all absent (a hand-built graph)
    and agree with the block metadata.
    """
    if not nx.is_directed_acyclic_graph(graph):
        raise IRError(f"graph has a cycle: {nx.find_cycle(graph)}")
    for n, d in graph.nodes(data=True):
        kind = d.get("kind")
        if kind not in REGISTRY:
            raise IRError(f"node '{n}' has unknown kind {kind!r}")
        spec = REGISTRY[kind]
        inputs = d.get("inputs")
        if not isinstance(inputs, tuple):
            raise IRError(f"node '{n}' inputs must be a tuple")
        if len(inputs) < spec.min_inputs or (spec.max_inputs is not None and len(inputs) > spec.max_inputs):
            raise IRError(f"node '{n}' ({kind}) has {len(inputs)} inputs")
        attrs = d.get("attrs")
        if not isinstance(attrs, dict):
            raise IRError(f"node '{n}' has no attrs dict")
        if kind == "act" and attrs.get("fn") not in ACTIVATIONS:
            raise IRError(f"node '{n}' has unknown activation {attrs.get('fn')!r}")
        for key, typ in spec.attr_types(attrs).items():
            if key not in attrs:
                raise IRError(f"node '{n}' ({kind}) lacks attribute '{key}'")
            val = attrs[key]
            if typ is int and (isinstance(val, bool) or not isinstance(val, int)):
                raise IRError(f"node '{n}' attribute '{key}' must be int, got {val!r}")
            if typ is float and isinstance(val, bool):
                raise IRError(f"node '{n}' attribute '{key}' must be {typ}, got {val!r}")
            if typ is not int and not isinstance(val, typ):
                raise IRError(f"node '{n}' attribute '{key}' must be {typ}, got {val!r}")
        preds: dict[str, tuple[int, ...]] = {}
        for pos, src in enumerate(inputs):
            if src not in graph:
                raise IRError(f"node '{n}' reads missing node '{src}'")
            preds[src] = preds.get(src, ()) + (pos,)
        if set(graph.predecessors(n)) != set(preds):
            raise IRError(f"node '{n}' edges do not match its inputs")
        for src, positions in preds.items():
            if tuple(graph.edges[src, n].get("index", ())) != positions:
                raise IRError(f"edge {src} -> {n} has index {graph.edges[src, n].get('index')}, expected {positions}")
        if "shape" in d:
            try:
                expect = infer_shape(kind, attrs, [graph.nodes[i]["shape"] for i in inputs])
            except (ShapeError, KeyError) as err:
                raise IRError(f"node '{n}' ({kind}) has inconsistent input shapes: {err}") from None
            if tuple(d["shape"]) != tuple(expect):
                raise IRError(f"node '{n}' shape {d['shape']} != inferred {expect}")
    for key in ("input", "output"):
        node = graph.graph.get(key)
        if node is None or node not in graph:
            raise IRError(f"graph {key} {node!r} is not a node")
    if graph.nodes[graph.graph["input"]]["kind"] != "input":
        raise IRError("graph input is not an input node")
    _lint_outputs(graph)
    for b in graph.graph.get("blocks", ()):
        named = [b.input, b.output] + [f.node for f in b.features]
        for node in named + [u.output for u in b.units] + [u.aggregate for u in b.units]:
            if node not in graph:
                raise IRError(f"block '{b.name}' names missing node '{node}'")
        for u in b.units:
            if list(u.reads) != sorted(set(u.reads)):
                raise IRError(f"block '{b.name}' unit {u.index} reads {u.reads}: not ascending and unique")
            if any(j >= u.index for j in u.reads):
                raise IRError(f"block '{b.name}' unit {u.index} reads a later feature: {u.reads}")
        _lint_streams(graph, b)
    _lint_membership(graph)


def _lint_outputs(graph: nx.DiGraph) -> None:
    """``outputs``, when present: a non-empty tuple of ``(name, node)`` pairs with distinct names
    naming existing non-input nodes, the first of which is ``output``. (The frontend refuses two
    names for one tensor; an inference rewrite that drops a no-op between two outputs may make
    them one node, which stays legal.)"""
    declared = graph.graph.get("outputs")
    if declared is None:
        return
    if not isinstance(declared, tuple) or not declared:
        raise IRError(f"graph outputs must be a non-empty tuple of (name, node) pairs, got {declared!r}")
    names: set[str] = set()
    for pair in declared:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise IRError(f"graph output {pair!r} is not a (name, node) pair")
        name, node = pair
        if not name.isidentifier():
            raise IRError(f"graph output name {name!r} is not an identifier")
        if name in names:
            raise IRError(f"graph output name {name!r} is used twice")
        if node not in graph or graph.nodes[node]["kind"] == "input":
            raise IRError(f"graph output {name!r} names {node!r}, which is not a computed node")
        names.add(name)
    if graph.graph["output"] != declared[0][1]:
        raise IRError(f"graph output {graph.graph['output']!r} is not the first declared output {declared[0]!r}")


def _lint_streams(graph: nx.DiGraph, b: BlockInfo) -> None:
    """A block's named streams (:class:`StreamInfo`): one slice and one piece per unit; unit i's
    slice is channels [(i-1)·w, i·w) of the stream input (w = its width / units) or, in a
    one-unit block, the input itself; the output is the pieces concatenated in unit order."""
    nodes = graph.nodes
    units = len(b.units)
    for s in b.streams:
        where = f"block '{b.name}' stream '{s.name}'"
        if len(s.slices) != units or len(s.pieces) != units:
            raise IRError(f"{where} has {len(s.slices)} slices and {len(s.pieces)} pieces for {units} units")
        named = [n for n in (s.input, s.output, *s.slices, *s.pieces) if n is not None]
        for n in named:
            if n not in graph:
                raise IRError(f"{where} names missing node '{n}'")
        if s.input is None and any(x is not None for x in s.slices):
            raise IRError(f"{where} starts in the block but has slices")
        if s.input is not None:
            w = nodes[s.input]["shape"][0] // units
            for i, x in enumerate(s.slices):
                if x is None or (units == 1 and x == s.input):
                    continue
                d = nodes[x]
                if (
                    d["kind"] != "slice"
                    or d["inputs"] != (s.input,)
                    or (
                        d["attrs"]["start"],
                        d["attrs"]["stop"],
                    )
                    != (i * w, (i + 1) * w)
                ):
                    raise IRError(
                        f"{where}: unit {i + 1} sees '{x}', not channels [{i * w}, {(i + 1) * w}) of the input"
                    )
        if s.output is not None and units > 1:
            d = nodes[s.output]
            if d["kind"] != "concat" or d["inputs"] != s.pieces:
                raise IRError(f"{where}: output '{s.output}' is not the concat of its pieces in unit order")
        elif s.output is not None and s.output != s.pieces[0]:
            raise IRError(f"{where}: a one-unit block's stream output is its piece")


def _lint_membership(graph: nx.DiGraph) -> None:
    """``stage``/``layer`` on every node or on none; ``block`` names a block, ``unit`` one of its
    units, and ``layer`` is the stage or a unit scope of the stage's own block."""
    infos = {b.name: b for b in graph.graph.get("blocks", ())}
    units = {u.scope: b.name for b in infos.values() for u in b.units}
    for inner, (outer, unit) in graph.graph.get("block_parents", {}).items():
        if inner not in infos or outer not in infos or unit not in {u.index for u in infos[outer].units}:
            raise IRError(f"block_parents names a missing block or unit: {inner!r} in {outer!r} unit {unit!r}")
    tagged = [n for n, d in graph.nodes(data=True) if "stage" in d]
    if not tagged:
        return
    for n, d in graph.nodes(data=True):
        stage, layer = d.get("stage"), d.get("layer")
        if not isinstance(stage, str) or not isinstance(layer, str):
            raise IRError(f"node '{n}' lacks its stage/layer (stage {stage!r}, layer {layer!r})")
        if layer != stage and units.get(layer) != stage:
            raise IRError(f"node '{n}' layer {layer!r} is neither its stage {stage!r} nor a unit of that block")
        block, unit = d.get("block"), d.get("unit")
        if block is None:
            if unit is not None:
                raise IRError(f"node '{n}' has unit {unit!r} but no block")
            continue
        if block not in infos:
            raise IRError(f"node '{n}' names an unknown block {block!r}")
        if unit is not None and unit not in {u.index for u in infos[block].units}:
            raise IRError(f"node '{n}' names unit {unit!r}, which block '{block}' does not have")
