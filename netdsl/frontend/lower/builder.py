"""The graph under construction: nodes added with their shapes checked against the work budget,
and the block, unit, stage and layer marks written on them. This is the API the statement
interpreter (:mod:`.statements`), the block builders (:mod:`.blocks`), named streams
(:mod:`netdsl.frontend.streams`) and :func:`netdsl.frontend.load.lower_spec` build with."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import networkx as nx

from ...errors import LimitError, ShapeError, Span, SpecNameError, SpecValueError
from ...ir.channels import DTYPE_BYTES
from ...ir.graph import add_op
from ...ir.ops import OP_KINDS, fmt_shape, infer_shape
from .limits import Limits, over_limit
from .scope import NetworkScope, Scope


@dataclass
class State:
    """What a lowering has spent so far, checked against :class:`Limits` as it goes."""

    params: int = 0
    flops: int = 0
    template_stack: list = field(default_factory=list)
    depth: int = 0  # current statement nesting, checked against Limits.max_statement_depth
    iterations: int = 0  # loop iterations so far, all loops together (Limits.max_loop_iterations)
    layers: int = 0  # block units so far (Limits.max_layers)
    edges: int = 0  # IR edges so far (Limits.max_edges)


class GraphBuilder:
    """Adds nodes to one IR graph: shapes inferred, the work budget charged, names unique."""

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits()
        self.graph = nx.DiGraph()
        self.graph.graph["blocks"] = []
        self.graph.graph["block_parents"] = {}  # nested block -> (enclosing block, unit index)
        self.graph.graph["warnings"] = []  # SpecWarning: legal but suspicious, shown by the CLI
        self.state = State()
        self.created: list[str] = []  # node ids in creation order, so a unit can tag its own nodes
        self.outer_unit: dict[str, tuple[str, str]] = {}  # node -> (block, unit scope) of its outermost unit
        self._shapes: dict[str, tuple[int, ...]] = {}
        # The network's declared outputs, (name, node) in order, and the statement that declared
        # them: set once by ``output(...)``, which ends the network (no op may follow it).
        self.outputs: tuple[tuple[str, str], ...] | None = None
        self.outputs_span: Span | None = None

    def shape(self, node: str) -> tuple[int, ...]:
        # A plain dict beside the graph: big blocks look shapes up once per connection, and
        # networkx's node view costs several times a dict lookup.
        shape = self._shapes.get(node)
        return self.graph.nodes[node]["shape"] if shape is None else shape

    def add(self, node_id: str, kind: str, inputs: tuple[str, ...], attrs: dict, span: Span | None, **extra) -> str:
        in_shapes = [self.shape(i) for i in inputs]
        try:
            shape = infer_shape(kind, attrs, in_shapes)
        except ShapeError as err:
            if len(inputs) > 1:
                err.message += (
                    " (inputs: "
                    + ", ".join(f"'{i}' {fmt_shape(s)}" for i, s in zip(inputs, in_shapes, strict=True))
                    + ")"
                )
            err.with_span(span)
            raise
        elems = 1
        for d in shape:
            elems *= d
        lim = self.limits
        if elems > lim.max_map_elements:
            raise LimitError(
                f"'{node_id}' would hold {elems:,} values per sample ({fmt_shape(shape)})",
                span,
                f"the limit is {lim.max_map_elements:,}; raise it with --max-map-elements",
            )
        kind_info = OP_KINDS[kind]
        params = kind_info.params(attrs, in_shapes, shape)
        self.state.params += params
        if self.state.params > lim.max_params:
            raise LimitError(
                f"the network would need about {self.state.params:,} parameters "
                f"({self.state.params * DTYPE_BYTES / 2**30:,.1f} GiB in float32)",
                span,
                f"the limit is {lim.max_params:,}; raise it with --max-params",
            )
        if self.graph.number_of_nodes() >= lim.max_nodes:
            raise over_limit(lim, "max_nodes", f"the network has more than {lim.max_nodes:,} ops", span)
        self.state.edges += len(inputs)
        if self.state.edges > lim.max_edges:
            raise over_limit(lim, "max_edges", f"the network has more than {lim.max_edges:,} edges (op inputs)", span)
        if node_id in self.graph:
            raise SpecNameError(f"the name '{node_id}' is used twice", span)
        if self.outputs is not None:
            raise SpecValueError(
                "an op after output(...): the network's outputs are already declared",
                span,
                f"output(...) ends the network (declared at {self.outputs_span}); move it after the last op",
            )
        add_op(self.graph, node_id, kind, inputs, attrs, span=span, shape=shape, **extra)
        self._shapes[node_id] = shape
        self.created.append(node_id)
        return node_id

    def need_current(self, scope: Scope, span: Span) -> str:
        if scope.current is None:
            raise SpecValueError("no input yet", span, "a network body starts with input(channels, height, width)")
        return scope.current

    def charge_iterations(self, n: int, span: Span) -> None:
        lim = self.limits.max_loop_iterations
        self.state.iterations += n
        if self.state.iterations > lim:
            raise over_limit(
                self.limits,
                "max_loop_iterations",
                f"loops would run more than {lim:,} iterations in all (this one: {n:,})",
                span,
            )

    def charge_layers(self, units: int, span: Span) -> None:
        lim = self.limits.max_layers
        self.state.layers += units
        if self.state.layers > lim:
            raise over_limit(
                self.limits,
                "max_layers",
                f"the network would have more than {lim:,} layers (block units; this block: {units:,})",
                span,
            )

    def tag_unit(self, start: int, prefix: str, block: str, unit: int) -> None:
        """Mark the nodes of unit ``prefix`` (all created since ``start``) with their block and unit.
        A node of a block nested in the unit keeps its inner block's marks (that block ended first
        and tagged its nodes); every node remembers its outermost unit for :meth:`tag_membership`.
        Linear in the unit's size, not the graph's."""
        nodes = self.graph.nodes
        parents = self.graph.graph.setdefault("block_parents", {})
        for node in self.created[start:]:
            d = nodes[node]
            if "block" not in d:
                d["block"], d["unit"] = block, unit
            elif d["block"] != block:  # a block nested in this unit: the first unit to see it holds it
                parents.setdefault(d["block"], (block, unit))
            self.outer_unit[node] = (block, prefix)

    def tag_block(self, start: int, block: str) -> None:
        """The block's own ops outside its units (split subsets, bypass, output gather): ``block``."""
        nodes = self.graph.nodes
        for node in self.created[start:]:
            nodes[node].setdefault("block", block)

    def tag_membership(self, network: NetworkScope) -> None:
        """Write ``stage`` and ``layer`` on every node (the contract in :mod:`netdsl.ir.ops`)."""
        marks = network.stages + [(len(self.created), "")]
        nodes = self.graph.nodes
        for (first, stage), (end, _) in pairwise(marks):
            for node in self.created[first:end]:
                d = nodes[node]
                d["stage"] = stage
                outer = self.outer_unit.get(node)
                d["layer"] = outer[1] if outer is not None and outer[0] == stage else stage
