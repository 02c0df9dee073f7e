"""The torch backend: one code generator from the (planned) IR to the Python source of one
``nn.Module`` class, exec'd in-process with a ``linecache`` entry, as torch.fx's GraphModule is:
what ``netdsl compile --target torch`` prints is the code that runs, tracebacks and
``inspect.getsource(type(model))`` show its real lines, and the module pickles, deep-copies,
traces, exports and compiles like a hand-written one.

What a careful engineer would write, derived from the IR:

- **Units are loops.** A block whose units have the same structure (up to their input width
  ``cin``) is one unit class, an ``nn.ModuleDict`` of its instances (state_dict keys stay the
  spec's names, ``block1.unit3.conv1.weight``) and a ``for`` over constant index tables. Nested
  blocks (Res2Net inside Dense2Net units) recurse. Irregular blocks are written out op by op.
- **The concat plan is in the code** (opt 1, :mod:`netdsl.passes.plan_concat` decides, this
  module only reads its IR attributes): a block's features live in one preallocated buffer, each
  unit writes its output into its channel range and reads a view (a ``gather`` read concatenates
  its runs). The per-channel chain that starts a unit (concat -> BN -> ReLU -> 1x1 conv, the
  plan's ``segment``) is the unit's ``head``. Every head that reads a feature normalizes its
  channels with the same batch statistics, so in training they are computed once per feature,
  when it is stored (``_store``), and a head's BatchNorm is one pass with them
  (``_statistics`` updates its running statistics as nn.BatchNorm does). In eager training a
  BN -> ReLU [-> conv] head runs as ``_BatchNormReluConv``, an autograd Function that reads the
  buffer and saves it with the statistics, not the concatenation or its normalized copy:
  backward recomputes those from the buffer (the memory-efficient DenseNet) and differentiates
  through the statistics itself. Its input gradient is added into one buffer-shaped sum, and
  each feature takes its channels of the sum once autograd has run all its readers (the
  heads take the feature's ``_Claim``, whose backward runs after theirs): one add per head where
  autograd would sum a gradient per feature and reader (narrow strided adds, 16-bit copies).
  Under torch.compile the Function normalizes the concatenation instead (dynamo cannot trace
  the buffer alias), saves it and the ReLU's output, and leaves the conv to the compiler; its
  backward is still BatchNorm's own, which inductor fuses better than the autograd of the
  statistics (docs/performance.md). Compiled inference reads the buffer through
  ``as_strided`` views (from slices inductor would fuse a concatenation into every reader). In
  eager inference a BN -> ReLU -> unpadded conv head is one clamp of the buffer view and the
  conv, BN and the next BN folded into the conv's weights (``_clamp_conv_bn_eval``).
  Where a block's heads have another form, a head runs under ``torch.utils.checkpoint`` over
  the list of unit outputs (such blocks use the buffer in inference only), BatchNorm's running
  statistics updated once, and compiled, the checkpoint keeps the 1x1 conv's output, so no
  convolution runs twice.
- **opt 0** is the same generator without the plan: one ``torch.cat`` per unit.
- **The layout is the compiler's** (:func:`memory_format`): a module with an image input runs in
  channels_last whatever its caller passes -- ``forward`` converts the input at the stem (the
  line says whose choice it is), the weights are converted after they are drawn, the buffers
  follow the stem's output, and outputs with two spatial dims go back in the caller's layout.
  ``build_model(..., memory_format=...)`` / ``netdsl compile --memory-format`` pin it.
- **So is the precision** (:func:`precision`): under the caller's autocast, ``forward`` runs
  float32 where the device has no fast convolution in autocast's dtype (``_fast_16bit``: a CPU
  without oneDNN's kernel for it, a GPU without tensor cores for it) and hands its outputs back
  in autocast's dtype; ``precision="autocast"`` pins following autocast.
- **Mixed precision is planned through the buffers**: under autocast the buffers hold the
  autocast dtype (the convs' outputs), the eval-mode BatchNorm of a head writes that dtype (its
  per-channel factors computed in fp32), and each feature's batch statistics are reduced in fp32
  by BatchNorm's kernel itself (an fp32 weight, no fp32 copy of the feature): one cast of the
  activations per forward, the input's (tests/test_layout_precision.py counts them).
"""

from __future__ import annotations

import copyreg
import hashlib
import itertools
import linecache
import re
import sys
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import networkx as nx

from ...errors import IRError
from ...ir.channels import merge_runs
from ...ir.graph import BlockInfo, blocks, graph_outputs, output_nodes, topo_nodes
from ...ir.plan import Runs, bn_relu_head, buffer_plans, segments
from ...naming import GENERATED_IDENTIFIERS, camel_case, checked_identifier, class_name
from ...ops import get
from ...passes.fold_bn import bn_fold_source
from . import runtime, windows
from .decisions import memory_format, precision
from .file import EMBEDDABLE_NAMES, LAYERS, Namespace, Uses, embedded
from .layout import fit


def _keeps_channels(kind: str) -> bool:
    """Ops that act on each channel alone keep the channel count (``cin`` flows through them)."""
    op = get(kind)
    return op.per_channel or op.eval_identity


# Constructor keywords equal to torch's defaults are left out of the source.
_CTOR_DEFAULTS: dict[str, dict[str, object]] = {
    "nn.Conv2d": {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True},
    "nn.ConvTranspose2d": {"stride": 1, "padding": 0, "output_padding": 0, "bias": True},
    "nn.BatchNorm2d": {"eps": 1e-5, "momentum": 0.1},
    "nn.Linear": {"bias": True},
    "SqueezeExcite": {"bias": True},
    "L2Norm": {"eps": 1e-10},
}

# Identifiers of the generated file itself and of everything it may embed: spec names never shadow them.
_RESERVED = GENERATED_IDENTIFIERS | EMBEDDABLE_NAMES


class _LoopBuffer(NamedTuple):
    """A planned block's buffer as its loop uses it (from the block's :class:`BufferPlan`)."""

    channels: int
    stores: tuple[tuple[int, int], ...]  # per unit: the channels its output is written to
    unit_reads: tuple[Runs, ...]  # per unit: the channels its aggregate is
    out_read: Runs  # the channels the block output is
    in_stores: list[tuple[tuple[int, int], str]]  # the block's first features: (channels, node)


class _Head(NamedTuple):
    """The recomputed head of a block's units (or of the block output's consumer)."""

    bns: tuple[str, ...]  # its BatchNorm modules (a checkpoint puts back their statistics)
    fused: tuple[str, ...] | None  # (bn, conv or "None"[, pool]) when it is BN -> ReLU [-> conv [-> pool]]


class _Cin(int):
    """An input width that prints as the unit class's ``cin`` parameter."""

    def __repr__(self) -> str:
        return "cin"


def _op_module(kind: str, attrs: dict, in_shapes: list) -> tuple | None:
    return get(kind).torch.module(attrs, in_shapes)


def _inplace_act(attrs: dict, var: str) -> str | None:
    inplace = get("act").torch.inplace
    return None if inplace is None else inplace(attrs, var)


def _op_call(kind: str, attrs: dict, module_expr: str, xs: list[str]) -> str:
    return get(kind).torch.call(attrs, module_expr, xs)


def _ctor_source(ctor: tuple) -> str:
    cls, args, kwargs = ctor
    defaults = _CTOR_DEFAULTS.get(cls, {})
    parts = [repr(a) for a in args]
    parts += [
        f"{k}={v!r}"
        for k, v in kwargs.items()
        if k not in defaults or defaults[k] != v or type(defaults[k]) is not type(v)
    ]
    return f"{cls}({', '.join(parts)})"


def _class_base(unit, block: str) -> str:
    """A unit class's name: its template's, CamelCase (``bottleneck`` -> ``Bottleneck``); a unit
    that is no one template call is named after its block (``Block1Unit``)."""
    return camel_case(unit.template) if unit.template else camel_case(f"{block}.unit")


def _range_src(values: tuple[int, ...]) -> str:
    """A tuple of ints as source: ``range(a, b, s)`` when it is an arithmetic run of 3 or more,
    else its runs and repeats unpacked where that is shorter (``(*range(96, 272, 16), 256)``)."""
    if len(values) >= 3:
        step = values[1] - values[0]
        if step > 0 and all(b - a == step for a, b in itertools.pairwise(values)):
            return (
                f"range({values[0]}, {values[-1] + step}, {step})"
                if step != 1
                else f"range({values[0]}, {values[-1] + 1})"
            )
    parts, i = [], 0
    while i < len(values):
        run = _run_length(values, i)
        if run < 3:
            parts.append(repr(values[i]))
            run = 1
        elif values[i + 1] == values[i]:
            parts.append(f"*[{values[i]}] * {run}")
        else:
            parts.append(f"*{_range_src(values[i : i + run])}")
        i += run
    packed = f"({', '.join(parts)})" if len(parts) > 1 else f"({values[0]},) * {len(values)}"  # one run: a repeat
    return packed if len(packed) < len(repr(tuple(values))) else repr(tuple(values))


def _run_length(values: tuple[int, ...], i: int) -> int:
    """How many values from ``values[i]`` on make one run of a constant step (upward or none)."""
    if i + 1 == len(values):
        return 1
    step = values[i + 1] - values[i]
    n = 2
    while i + n < len(values) and values[i + n] - values[i + n - 1] == step and step >= 0:
        n += 1
    return n if step >= 0 else 1


# ------------------------------------------------------------------------------------ regions


@dataclass
class _Func:
    """Lines of one function body under construction, with readable, unique variable names."""

    names: Namespace = field(default_factory=lambda: Namespace(_RESERVED))
    lines: list[str] = field(default_factory=list)
    last: tuple[int, str, str] | None = None  # the last assignment: (its line, variable, value)

    def fresh(self, base: str) -> str:
        return self.names.create_name(base)

    def assign(self, var: str, expr: str) -> None:
        self.lines.append(f"{var} = {expr}")
        self.last = (len(self.lines) - 1, var, expr)

    def guard_first(self, condition: str) -> None:
        """The first line under ``if condition``."""
        self.lines[0:1] = [f"if {condition}", "    " + self.lines[0]]
        if self.last is not None:  # the line moved down one (the first itself is now in the if)
            self.last = None if self.last[0] == 0 else (self.last[0] + 1, *self.last[1:])

    def returned(self, ret: str) -> tuple[list[str], str]:
        """(lines, what a ``return`` gives back): the value of the last line itself where that line
        only assigns it (``conv2 = self.conv2(x)`` then ``return conv2``: ``return self.conv2(x)``),
        and the line before it where that assigns the one variable the value reads, once
        (``x = torch.relu_(x)`` then ``return self.conv2(torch.relu_(x))``), while it stays short."""
        if self.last is None or self.last[0] != len(self.lines) - 1 or self.last[1] != ret:
            return self.lines, ret
        lines, value = self.lines[:-1], self.last[2]
        for _ in range(2):
            var, eq, expr = lines[-1].partition(" = ") if lines else ("", "", "")
            parts = re.split(rf"(?<![\w.]){re.escape(var)}\b", value) if var.isidentifier() and eq else []
            one_call = len(parts) == 2 and _is_call(expr)  # read once; a call binds tightest: no parentheses
            inlined = expr.join(parts) if one_call else ""
            if not inlined or len(inlined) > 88:  # a call in a call in a call, at most; the line fits
                break
            lines, value = lines[:-1], inlined
        return lines, value


def _is_call(expr: str) -> bool:
    """Whether ``expr`` is one call, ``name.attr(...)``, its first parenthesis closing at the end.

    >>> _is_call("torch.relu_(x)"), _is_call("f(x) + g(y)"), _is_call("x + y")
    (True, False, False)
    """
    if not re.match(r"[\w.]+\(", expr) or not expr.endswith(")"):
        return False
    depth = 0
    for i, ch in enumerate(expr):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and ch == ")":
            return i == len(expr) - 1
    return False


@dataclass
class _Scope:
    """One generated class: its module prefix in the node ids, init lines and helper methods."""

    prefix: str  # node ids of this class's modules start with prefix + "."  ("" at the top)
    init: list[str] = field(default_factory=list)
    containers: dict[str, str] = field(default_factory=dict)  # relative path -> "nn.Module" | "nn.ModuleDict"
    methods: list[str] = field(default_factory=list)
    declared: set[str] = field(default_factory=set)
    uses: Uses = field(default_factory=Uses)  # the helpers and unit classes its code calls
    # containers declared as one ModuleDict line: path -> (its init line, its members' entries)
    groups: dict[str, tuple[int, list[tuple[str, str]]]] = field(default_factory=dict)

    def use(self, helper) -> str:
        """The name of ``helper`` (a runtime function or layer class), registered where it is emitted."""
        return self.uses.add_global(helper)

    def rel(self, node: str) -> str:
        return node[len(self.prefix) + 1 :] if self.prefix else node

    def container(self, rel_path: str, kind: str = "nn.Module") -> None:
        parts = rel_path.split(".")
        for depth in range(1, len(parts) + 1):
            p = ".".join(parts[:depth])
            if p not in self.containers:
                if p.rpartition(".")[0] in self.groups:  # a container in it: the parent is not one line
                    self._unmerge(p.rpartition(".")[0])
                k = kind if depth == len(parts) else "nn.Module"
                self.containers[p] = k
                self.init.append(f"self.{p} = {k}()")
                if depth == len(parts) and k == "nn.Module":  # its members may make it one line
                    self.groups[p] = (len(self.init) - 1, [])

    def declare(self, rel: str, src: str) -> None:
        """``self.rel = src``. A container whose members are all declared right after it (a
        transition's BN and conv) is one ``nn.ModuleDict`` line, where that fits in 120 columns."""
        parent, _, attr = rel.rpartition(".")
        group = self.groups.get(parent)
        if group is not None:
            index, members = group
            merged = [*members, (attr, src)]
            entries = ", ".join(f'"{a}": {s}' for a, s in merged)
            line = f"self.{parent} = nn.ModuleDict({{{entries}}})"
            if index == len(self.init) - 1 and len(line) + 8 <= 120:  # 8: indented in __init__
                self.init[index], self.groups[parent] = line, (index, merged)
                return
            self._unmerge(parent)
        self.init.append(f"self.{rel} = {src}")

    def _unmerge(self, parent: str) -> None:
        """The container's ``nn.ModuleDict`` line back as ``nn.Module()`` and a line per member."""
        index, members = self.groups.pop(parent)
        lines = [f"self.{parent} = nn.Module()"] + [f"self.{parent}.{a} = {s}" for a, s in members]
        self.init[index : index + 1] = lines
        for other, (i, ms) in self.groups.items():  # the lines after it moved down
            if i > index:
                self.groups[other] = (i + len(lines) - 1, ms)


class Generator:
    def __init__(self, graph: nx.DiGraph):
        self.g = graph
        self.nodes = graph.nodes
        self.planned = bool(graph.graph.get("planned"))
        self.outputs = output_nodes(graph)  # values forward returns: never overwritten or reused
        self.order = topo_nodes(graph)
        self.pos = {n: k for k, n in enumerate(self.order)}
        # unit classes generated, (name, source) in definition order (a nested unit's class comes
        # before the class that uses it); one class per distinct source
        # the file's global names (unit classes, the network class), clear of every helper's
        self.names = Namespace(_RESERVED)
        # unit classes: name -> (source, what it uses), in definition order (a nested unit's class
        # comes before the class that uses it); one class per unit structure (unit_signature)
        self.unit_classes: dict[str, tuple[str, Uses]] = {}
        self.class_of: dict[tuple, tuple[str, _Head | None]] = {}
        self.block_feats: dict[str, str] = {}  # block output -> variable of its feature list (training)
        # block output -> (buffer variable, the runs it reads, the window they are) of a block
        # emitted by _buffer_loop
        self.block_buffers: dict[str, tuple[str, Runs, _Window | None]] = {}
        self.segments = segments(self.g)
        self._members: dict[str, set[str]] = {}
        self.unrolling: set[str] = set()
        # node -> the blocks containing it, outermost first
        self.containing: dict[str, list[BlockInfo]] = {}
        for b in sorted(blocks(graph), key=lambda b: -len(self._block_nodes(b))):
            for m in self._block_nodes(b):
                self.containing.setdefault(m, []).append(b)
        self.written_out = self._blocks_read_by_dead_units()

    def _blocks_read_by_dead_units(self) -> set[str]:
        """Blocks a unit of which is not an ancestor of the block output (a rule or an ``output=``
        that leaves it unread) and reads a feature computed inside the block: emitted whole, the
        block keeps that feature local, so such a block is written out op by op instead."""
        out: set[str] = set()
        by_name = {b.name: b for b in blocks(self.g)}
        for n, d in self.g.nodes(data=True):
            b = by_name.get(d.get("block", ""))
            if b is None or b.name in out or n in self._block_nodes(b):
                continue
            members = self._block_nodes(b)
            if any(i in members and i != b.output for i in d["inputs"]):
                out.add(b.name)
        return out

    # -- statements ---------------------------------------------------------------------------

    def module_expr(self, scope: _Scope, node: str, ins: list, cin_of: dict) -> str:
        d = self.nodes[node]
        shapes = [tuple(self.nodes[i]["shape"]) for i in d["inputs"]]
        if shapes and d["inputs"][0] in cin_of:
            shapes[0] = (cin_of[d["inputs"][0]],) + shapes[0][1:]
        ctor = _op_module(d["kind"], d["attrs"], shapes)
        if ctor is None:
            return ""
        rel = scope.rel(node)
        if rel in scope.declared:
            return f"self.{rel}"
        scope.declared.add(rel)
        for p in rel.split("."):
            checked_identifier(p)
        if "." in rel:
            scope.container(rel.rsplit(".", 1)[0])
        if ctor[0] in LAYERS:
            scope.use(LAYERS[ctor[0]])
        scope.declare(rel, _ctor_source(ctor))
        return f"self.{rel}"

    def region(
        self,
        scope: _Scope,
        fn: _Func,
        nodes: list[str],
        env: dict[str, str],
        cin_of: dict,
        output: str,
        keep: tuple[str, ...] = (),
    ) -> str:
        """Emit ``nodes`` (topological order) into ``fn``; ``env`` maps already-computed nodes to
        variables. A block all of whose nodes are here is emitted as a whole when its first node
        comes up. Returns the variable holding ``output``; the variables of ``keep`` (a unit's
        stream pieces, read after the region) are never reused or overwritten."""
        node_set = set(nodes)
        uses: dict[str, int] = {k: 1 for k in keep}
        for n in nodes:
            for i in self.nodes[n]["inputs"]:
                uses[i] = uses.get(i, 0) + 1
        done: set[str] = set()
        for n in nodes:
            if n in done:
                continue
            b = self._block_at(n, node_set, env)
            if b is not None:
                env[b.output] = self.block(scope, fn, b, env, cin_of)
                done |= self._block_nodes(b)
                continue
            chain = self._output_consumer_chain(n, node_set)
            if chain is not None:
                env[chain[-1]] = self.recomputed_head(scope, fn, chain, env, cin_of)
                done.update(chain)
                continue
            d = self.nodes[n]
            if d["inputs"] and n not in cin_of and _keeps_channels(d["kind"]) and d["inputs"][0] in cin_of:
                cin_of[n] = cin_of[d["inputs"][0]]
            xs = [env[i] for i in d["inputs"]]
            mod = self.module_expr(scope, n, xs, cin_of)
            expr = _op_call(d["kind"], d["attrs"], mod, xs)
            if self._may_overwrite_input(n, uses, node_set, output):
                expr = _inplace_act(d["attrs"], xs[0]) or expr
            src = d["inputs"][0] if d["inputs"] else None
            rel = scope.rel(n)
            stage = rel.split(".", 1)[0] if not scope.prefix else ""
            src_stage = (scope.rel(src).split(".", 1)[0] if not scope.prefix else "") if src else None
            if (
                src is not None
                and uses.get(src) == 1
                and (src in node_set or env.get(src) == "x")
                and len(d["inputs"]) == 1
                and n != output
                and src not in self.outputs
                and src_stage == stage
            ):
                var = env[src]  # a chain: the value flows on in the same variable
            else:
                var = fn.fresh(stage if "." in rel and not scope.prefix else rel.rsplit(".", 1)[-1])
            fn.assign(var, expr)
            env[n] = var
            done.add(n)
        return env[output]

    def _output_head(self, b: BlockInfo) -> tuple[str, ...] | None:
        """The plan's per-channel chain that is the block output's only consumer, if any."""
        succ = list(self.g.successors(b.output))
        if len(succ) != 1 or b.output in self.outputs:
            return None
        chain = self.segments.get(succ[0])
        if not chain or not all(sum(1 for _ in self.g.successors(c)) == 1 for c in chain[:-1]):
            return None
        # emitted by the region around the block, not inside another block's loop
        around = {x.name for x in self.containing.get(b.output, ())} - {b.name}
        if any({x.name for x in self.containing.get(c, ())} - around for c in chain):
            return None
        return chain

    def _output_consumer_chain(self, n: str, node_set: set[str]) -> tuple[str, ...] | None:
        d = self.nodes[n]
        if not d["inputs"] or d["inputs"][0] not in self.block_feats:
            return None
        chain = self.segments.get(n)
        return chain if chain and set(chain) <= node_set else None

    def recomputed_head(self, scope: _Scope, fn: _Func, chain: tuple[str, ...], env: dict, cin_of: dict) -> str:
        """A chain reading a block output, as a method of the class: in training it is
        recomputed from the block's features (their concatenation is never saved)."""
        src = self.nodes[chain[0]]["inputs"][0]
        rel = scope.rel(chain[0])
        feats = self.block_feats.pop(src)
        var = fn.fresh(rel.split(".", 1)[0])
        if src in self.block_buffers:  # the block's loop kept its buffer: the fused head reads it
            buf, runs, window = self.block_buffers.pop(src)
            fused = self._fused(chain, "self", scope)
            assert fused is not None  # block_buffers holds only outputs whose consumer is fused
            widths = dict(cin_of)
            for c in chain:  # declared here, called by _buffer_head itself (head None: no method)
                d = self.nodes[c]
                if _keeps_channels(d["kind"]) and d["inputs"][0] in widths:
                    widths[c] = widths[d["inputs"][0]]
                self.module_expr(scope, c, ["x"], widths)
            read = repr(runs)
            if window is not None:  # a window of the buffer: its features and runs first
                stop = runs[-1][1]
                fn.lines.append(
                    f"reads, runs = {scope.use(windows._window)}({feats}, {stop}, {window.far}, {window.near})"
                )
                feats, read = "reads", "runs"
            modules = ", ".join(fused)
            if "." in scope.rel(chain[0]) and self._only_modules(chain):  # its container holds just BN, conv
                modules = ", ".join([f"*self.{scope.rel(chain[0]).rsplit('.', 1)[0]}.children()", *fused[2:]])
            fn.lines.append(f"{var} = {scope.use(runtime._buffer_head)}(None, {feats}, {buf}, {read}, {modules})")
            return var
        name = checked_identifier("_" + "_".join(rel.split(".")[:-1] or [rel]) + "_head")
        f = _Func()  # inside the method the chain is plain code
        lines, out = f.returned(self.region(scope, f, list(chain), {src: "x"}, dict(cin_of), chain[-1]))
        kinds = " -> ".join(self.nodes[c]["kind"] for c in chain)
        scope.methods.append(
            _method(name, "*xs", [_JOIN] + lines, out, f"concat -> {kinds}: recomputed in backward when training")
        )
        bns = [f"self.{scope.rel(c)}" for c in chain if self.nodes[c]["kind"] == "bn"]
        fn.lines.append(f"if {_FEATURES}:")
        fn.lines.append(f"    {var} = {scope.use(runtime._recompute)}(self.{name}, {feats}, {', '.join(bns)})")
        fn.lines.append("else:")
        fn.lines.append(f"    {var} = self.{name}({env[src]})")
        return var

    def _only_modules(self, chain: tuple[str, ...]) -> bool:
        """Whether the modules of ``chain``'s container (its nodes' common prefix) are exactly its
        BN and conv, BN -> ReLU -> conv [-> pool]: ``container.children()`` are those two."""
        owner = chain[0].rsplit(".", 1)[0]
        if "." not in chain[0] or len(chain) not in (3, 4) or any(c.rsplit(".", 1)[0] != owner for c in chain):
            return False
        inside = [n for n in self.order if n.startswith(owner + ".") and self._has_module(n)]
        return inside == [chain[0], chain[2]]

    def _has_module(self, node: str) -> bool:
        d = self.nodes[node]
        shapes = [tuple(self.nodes[i]["shape"]) for i in d["inputs"]]
        return _op_module(d["kind"], d["attrs"], shapes) is not None

    def _may_overwrite_input(self, n: str, uses: dict, node_set: set[str], output: str) -> bool:
        """An activation may run in place on its input when that input is a fresh tensor that only
        it reads and whose own backward needs its input, not its output (BN -> ReLU, conv -> ReLU),
        as hand-written networks do with ``inplace=True``."""
        d = self.nodes[n]
        if d["kind"] != "act" or len(d["inputs"]) != 1:
            return False
        src = d["inputs"][0]
        sd = self.nodes[src]
        op = get(sd["kind"])
        return (
            src in node_set
            and uses.get(src) == 1
            and op.fresh_output
            and op.saves.startswith("input")
            and not sd.get("stores")
            and src not in self.outputs
            and src != output
        )

    def _block_at(self, n: str, node_set: set[str], env: dict) -> BlockInfo | None:
        """The outermost block containing ``n`` that can be emitted whole here."""
        for b in self.containing.get(n, ()):
            if b.output in self.unrolling or b.input not in env or b.name in self.written_out:
                continue
            members = self._block_nodes(b)
            if any(m in env for m in members):
                continue  # already begun op by op (an input it reads came late): never emit it twice
            if members <= node_set and all(i in members or i in env for m in members for i in self.nodes[m]["inputs"]):
                return b
        return None

    def _block_nodes(self, b: BlockInfo) -> set[str]:
        """Every node computed for block ``b`` (its units, features and output), not its input."""
        members = self._members.get(b.name)
        if members is None:
            up = nx.ancestors(self.g, b.output) | {b.output}
            members = (up & nx.descendants(self.g, b.input)) - {b.input}
            for st in b.streams:  # the units' stream slices and pieces, and the collected stream
                members |= st.nodes
            self._members[b.name] = members
        return members

    # -- blocks ---------------------------------------------------------------------------

    def unit_nodes(self, b: BlockInfo, u) -> list[str] | None:
        """The nodes a unit's class computes from its aggregate (and stream slices), as lowering
        recorded them (``UnitInfo.nodes`` after the aggregate, which lowering made from the unit's
        reads; less what passes removed), in schedule order. None if the unit reads anything else
        (then it is not a loop body)."""
        sources = {u.aggregate, *_unit_slices(b, u.index)}
        sinks = {u.output, *(st.pieces[u.index - 1] for st in b.streams)}
        made = u.nodes[u.nodes.index(u.aggregate) + 1 :] if u.aggregate in u.nodes else u.nodes  # after its aggregate
        body = {n for n in made if n in self.g and n not in sources}
        if not sinks <= body | sources:
            return None
        for n in body:
            if any(i not in sources and i not in body for i in self.nodes[n]["inputs"]):
                return None
        return sorted(body, key=self.pos.__getitem__)

    def unit_signature(self, b: BlockInfo, u, body: list[str]) -> tuple:
        """What the source of a unit's class is a function of, read from the IR: its template and,
        per node, its name in the unit, op, attributes, inputs, shape (the input width that flows
        through per-channel ops is the class's ``cin``) and what the plan and the rest of the graph
        see of it. Units of equal signature share one class."""
        prefix = u.scope + "."
        local = {u.aggregate: "x", **{x: f"s{k}" for k, x in enumerate(_unit_slices(b, u.index))}}
        flows = {u.aggregate}  # the nodes whose width is the class's cin

        def rel(n: str) -> str:
            return local.get(n) or (n[len(prefix) :] if n.startswith(prefix) else "@" + n)

        def shape(n: str) -> tuple:  # channels and rank: the ops' constructors read no spatial size
            sh = tuple(self.nodes[n]["shape"])
            return ("cin" if n in flows else sh[0], len(sh))

        seg = self.segments.get(body[0]) if body else None
        nodes = []
        inside = set(body)
        for n in body:
            d = self.nodes[n]
            if d["inputs"] and _keeps_channels(d["kind"]) and d["inputs"][0] in flows:
                flows.add(n)
            fold = bn_fold_source(self.g, n) if d["kind"] == "bn" else None
            nodes.append(
                (
                    rel(n),
                    d["kind"],
                    repr(sorted(d["attrs"].items())),
                    tuple((rel(i), shape(i)) for i in d["inputs"]),
                    shape(n),
                    bool(d.get("stores")),
                    n in self.outputs,
                    sum(1 for x in self.g.successors(n) if x in inside),
                    n != u.output and any(x not in inside for x in self.g.successors(n)),
                    None if fold is None else rel(fold),
                )
            )
        pieces = tuple(rel(st.pieces[u.index - 1]) for st in b.streams)
        return (u.template, rel(u.output), pieces, tuple(map(rel, seg or ())), tuple(nodes))

    def unit_class(self, b: BlockInfo, u, body: list[str]) -> tuple[str, _Head | None, int, Uses]:
        """(class body source, its recomputed head or None, cin) for one unit; the
        source names no unit-specific value, so units with equal sources share one class."""
        scope = _Scope(u.scope)
        agg = u.aggregate
        cin = _Cin(self.nodes[agg]["shape"][0])
        cin_of = {agg: cin}
        seg = self.segments.get(body[0]) if body else None
        methods: list[str] = []
        slices = _unit_slices(b, u.index)
        streams_in = {x: f"s{k}" for k, x in enumerate(slices)}  # a unit's stream slices: forward(x, s0, ...)
        pieces = tuple(st.pieces[u.index - 1] for st in b.streams)
        env = {agg: "x", **streams_in}
        head_len = 0
        if seg and self.planned and self._segment_fits(seg, body):
            head_len = len(seg)
            hf = _Func()
            after = body[len(seg)] if len(body) > len(seg) else None
            fold = (
                after
                if (
                    after is not None
                    and self.nodes[seg[-1]]["kind"] == "conv"
                    and bn_fold_source(self.g, after) == seg[-1]
                )
                else None
            )
            fast = self._inference_head(scope, seg, cin_of, fold)
            if not fast:
                fold = None
            hlines, hvar = hf.returned(self.region(scope, hf, list(seg), dict(env), cin_of, seg[-1]))
            methods.append(
                _method(
                    "head",
                    "*xs",
                    [_JOIN] + fast + hlines,
                    hvar,
                    f"concat -> {' -> '.join(self.nodes[n]['kind'] for n in seg)}: "
                    "recomputed in backward when training",
                )
            )
            env = {agg: "x", seg[-1]: "x", **streams_in}
            rest = body[head_len:]
        else:
            rest = body
        f = _Func()
        for v in streams_in.values():
            f.names.reserve(v)
        keep = (*pieces, u.output) if pieces else ()  # with streams, ops may follow the unit output
        out = self.region(scope, f, rest, env, cin_of, u.output, keep=keep) if rest else "x"
        if pieces:  # a unit of a block carrying streams returns its output and its pieces
            out = ", ".join([out] + [env[p] for p in pieces])
        if head_len and fold is not None:  # in inference this BN is folded into the head's conv
            f.guard_first("self.training or torch.is_grad_enabled():  # inference: folded into the head's conv")
        fwd = _method("forward", ", ".join(["x", *streams_in.values()]), *f.returned(out))
        init = [f"        {line}" for line in scope.init]
        text = (
            "(nn.Module):\n    def __init__(self, cin):\n        super().__init__()\n"
            + ("\n".join(init) + "\n" if init else "")
            + "".join("\n" + m for m in methods + scope.methods)
            + "\n"
            + fwd
        )
        if not head_len or seg is None:
            return text, None, cin, scope.uses
        bns = tuple(f"unit.{scope.rel(n)}" for n in seg[:head_len] if self.nodes[n]["kind"] == "bn")
        return text, _Head(bns, self._fused(seg, "unit", scope)), cin, scope.uses

    def _fused(self, chain: tuple[str, ...], owner: str, scope: _Scope) -> tuple[str, ...] | None:
        """(bn, conv[, pool]) arguments when ``chain`` is BN -> ReLU [-> conv [-> avg pool]], the
        head ``_BatchNormReluConv`` computes in training (conv "None" when there is none; the pool,
        "(kernel, stride)", runs before the conv: :func:`~netdsl.ir.plan.pool_before_conv`)."""
        if not bn_relu_head(self.g, chain):
            return None
        if len(chain) >= 3:  # a plain zero-padded nn.Conv2d: its backward is convolution_backward
            conv = self.nodes[chain[2]]
            ctor = _op_module("conv", conv["attrs"], [self.nodes[conv["inputs"][0]]["shape"]])
            if ctor is None or ctor[0] != "nn.Conv2d" or ctor[2].get("padding_mode", "zeros") != "zeros":
                return None
        bn = f"{owner}.{scope.rel(chain[0])}"
        if len(chain) == 2:
            return bn, "None"
        conv = f"{owner}.{scope.rel(chain[2])}"
        if len(chain) == 3:
            return bn, conv
        pool = self.nodes[chain[3]]["attrs"]
        return bn, conv, f"({pool['kernel']}, {pool['stride']})"

    def _inference_head(self, scope: _Scope, seg: tuple[str, ...], cin_of: dict, fold: str | None) -> list[str]:
        """Inference lines for a head that starts with BN and an activation with an in-place
        form: BN as one multiply-add pass over the buffer view into a fresh tensor (BatchNorm on a
        strided view copies it first), the activation in place on it; ``fold``, the BN after the
        head's last conv, is folded into that conv's weights."""
        if len(seg) < 2 or self.nodes[seg[0]]["kind"] != "bn" or self.nodes[seg[1]]["kind"] != "act":
            return []
        if _inplace_act(self.nodes[seg[1]]["attrs"], "x") is None:
            return []
        for n in seg[:2]:  # per-channel: the input width flows through
            src = self.nodes[n]["inputs"][0]
            if src in cin_of:
                cin_of[n] = cin_of[src]
        bn = self.module_expr(scope, seg[0], ["x"], cin_of)
        rest = list(seg[2:])
        if fold is not None and rest == [seg[-1]] and self._clamps(seg):  # ReLU as a clamp: one pass
            conv, bn2 = (self.module_expr(scope, n, ["x"], cin_of) for n in (seg[-1], fold))
            out = f"{scope.use(runtime._clamp_conv_bn_eval)}(x, {bn}, {conv}, {bn2})"
            return ["if not (self.training or torch.is_grad_enabled()):  # inference: one pass", f"    return {out}"]
        bn_eval = scope.use(runtime._batch_norm_eval)
        lines = [f"x = {_inplace_act(self.nodes[seg[1]]['attrs'], f'{bn_eval}(x, {bn})')}"]
        f = _Func()
        if fold is not None and rest == [seg[-1]]:
            conv = self.module_expr(scope, seg[-1], ["x"], cin_of)
            conv_bn_eval = scope.use(runtime._conv_bn_eval)
            out = f"{conv_bn_eval}(x, {conv}, {self.module_expr(scope, fold, ['x'], cin_of)})"
            folded = out.replace("(x, ", f"({lines[0].removeprefix('x = ')}, ", 1)
            lines, out = ([], folded) if len(folded) <= 88 else (lines, out)  # one line: the BN pass in the call
        else:
            out = self.region(scope, f, rest, {seg[1]: "x"}, dict(cin_of), seg[-1]) if rest else "x"
        body = ["if not (self.training or torch.is_grad_enabled()):  # inference: one pass, activation in place"]
        body += ["    " + line for line in lines + f.lines] + [f"    return {out}"]
        return body

    def _clamps(self, seg: tuple[str, ...]) -> bool:
        """Whether the head BN -> ReLU -> conv runs in eval as :func:`runtime._clamp_conv_bn_eval`:
        a plain ReLU and an unpadded ungrouped conv (its bias takes the BN's shift at every pixel)."""
        a = self.nodes[seg[-1]]["attrs"]
        conv = self.nodes[seg[-1]]["kind"] == "conv" and a["padding"] == 0 and a["groups"] == 1
        return len(seg) == 3 and conv and self.nodes[seg[1]]["attrs"] == {"fn": "relu"}

    def _segment_fits(self, seg: tuple[str, ...], body: list[str]) -> bool:
        return list(seg) == body[: len(seg)] and all(sum(1 for _ in self.g.successors(n)) == 1 for n in seg[:-1])

    def block(self, scope: _Scope, fn: _Func, b: BlockInfo, env: dict, cin_of: dict) -> str:
        """The block as a loop over one unit class when the IR says its units are one structure
        (:meth:`unit_signature`) that the loop computes (:meth:`_loopable`); else written out."""
        units = b.units
        found = [self.unit_nodes(b, u) for u in units]
        bodies = [body for body in found if body]
        if not units or len(bodies) != len(units) or not self._loopable(b, bodies):
            return self.unrolled(scope, fn, b, env, cin_of)
        signatures = {self.unit_signature(b, u, body) for u, body in zip(units, bodies, strict=True)}
        if len(signatures) != 1:
            return self.unrolled(scope, fn, b, env, cin_of)
        signature = signatures.pop()
        if signature not in self.class_of:  # the first block of this structure: its class
            self.unrolling.add(b.output)  # a unit body never re-enters its own block
            try:
                text, head, _, uses = self.unit_class(b, units[0], bodies[0])
            finally:
                self.unrolling.discard(b.output)
            name = self.names.create_name(_class_base(units[0], scope.rel(b.name)), sep="")
            self.class_of[signature] = (name, head)
            self.unit_classes[name] = (f"class {name}{text}", uses)
        name, has_head = self.class_of[signature]
        scope.uses.classes.add(name)
        rel = scope.rel(b.name)
        for p in rel.split("."):
            checked_identifier(p)
        unit_names = [scope.rel(u.scope).rsplit(".", 1)[-1] for u in units]
        for un in unit_names:
            checked_identifier(un)
        if "." in rel:
            scope.container(rel.rsplit(".", 1)[0])
        cins = tuple(int(self.nodes[u.aggregate]["shape"][0]) for u in units)
        regular = unit_names == [f"unit{i}" for i in range(1, len(units) + 1)]
        if regular and len(set(cins)) == 1:  # one width: no table
            scope.init.append(
                f'self.{rel} = nn.ModuleDict({{f"unit{{i}}": {name}({cins[0]}) for i in range(1, {len(cins) + 1})}})'
            )
        elif regular:
            scope.init.append(
                f'self.{rel} = nn.ModuleDict({{f"unit{{i}}": {name}(c) for i, c in enumerate({_range_src(cins)}, 1)}})'
            )
        else:
            scope.init.append(
                f"self.{rel} = nn.ModuleDict({{name: {name}(cin) for name, cin in "
                f"zip({tuple(unit_names)!r}, {cins!r}, strict=True)}})"
            )
        scope.containers[rel] = "nn.ModuleDict"
        return self.loop(scope, fn, b, env, has_head)

    def _loopable(self, b: BlockInfo, bodies: list[list[str]]) -> bool:
        """The loop computes exactly the block: every unit's aggregate is its read features
        joined by the block's rule (a concat/add node of them, one feature, or the whole block
        input read as its groups), and the units, features and output cover every block node."""
        if b.kind not in ("concat", "add", "split"):
            return False
        later = sorted(f.index for f in b.features if f.index > 0)
        if [self._feature_piece(b.features, j)[0] for j in later] != [u.output for u in b.units]:
            return False  # a feature that is no unit's output (Res2Net's bypass) is written out
        if self._out_positions(b) is None:
            return False
        covered = {b.output}
        for u, body in zip(b.units, bodies, strict=True):
            covered |= set(body)
            covered.add(u.aggregate)
            d = self.nodes[u.aggregate]
            want = merge_runs([self._feature_piece(b.features, j) for j in b.aggregate_order(u)])
            made_here = u.aggregate in self._block_nodes(b)  # not the block input read whole
            if len(u.reads) > 1 and made_here and d["kind"] == ("concat" if b.kind == "concat" else "add"):
                got = [self._piece(i) for i in d["inputs"]]
                covered.update(d["inputs"])  # feature slices of the input
                if b.kind == "concat":
                    got = merge_runs(got)
            else:
                got = merge_runs([self._piece(u.aggregate)])
            if got != want:
                return False
        for f in b.features:
            covered.add(f.node)
        for st in b.streams:
            covered |= st.nodes
        covered |= set(self.nodes[b.output]["inputs"])
        return self._block_nodes(b) <= covered

    def _out_positions(self, b: BlockInfo) -> tuple[int, ...] | None:
        """Positions (in feature-index order) of the features the block output concatenates."""
        index = {f.index: k for k, f in enumerate(sorted(b.features, key=lambda f: f.index))}
        if b.outputs:
            want = merge_runs([self._feature_piece(b.features, j) for j in b.outputs])
            d = self.nodes[b.output]
            got = merge_runs(
                [self._piece(i) for i in d["inputs"]] if d["kind"] == "concat" else [self._piece(b.output)]
            )
            return tuple(index[j] for j in b.outputs) if got == want else None
        return None

    def _piece(self, node: str) -> tuple[str, int, int]:
        """A value as (node, start, stop): a slice is a channel range of its input."""
        d = self.nodes[node]
        if d["kind"] == "slice":
            return d["inputs"][0], d["attrs"]["start"], d["attrs"]["stop"]
        return node, 0, d["shape"][0]

    def _piece_source(self, feature) -> str | None:
        """The node a block's first feature is a channel range (a slice) of, if it is one."""
        if feature.start is not None:
            return feature.node
        d = self.nodes[feature.node]
        return d["inputs"][0] if d["kind"] == "slice" else None

    def _first_spans(self, b: BlockInfo, in_stores) -> list[tuple[int, int]]:
        """The buffer channels of each of the block's first features: a stored value or a channel
        range (a slice, a piece) of one."""
        stored = {node: span for span, node in in_stores}
        spans = []
        for f in sorted((f for f in b.features if f.index <= 0), key=lambda f: f.index):
            node, d = f.node, self.nodes[f.node]
            if f.start is not None:
                a, z = f.start, f.stop
            elif node not in stored and d["kind"] == "slice":
                node, (a, z) = d["inputs"][0], (d["attrs"]["start"], d["attrs"]["stop"])
            else:
                a, z = 0, stored[node][1] - stored[node][0]
            spans.append((stored[node][0] + a, stored[node][0] + z))
        return spans

    def _feature_piece(self, features, j: int) -> tuple[str, int, int]:
        for f in features:
            if f.index == j:
                return (f.node, f.start, f.stop) if f.start is not None else self._piece(f.node)
        raise KeyError(j)

    def loop(self, scope: _Scope, fn: _Func, b: BlockInfo, env: dict, has_head: _Head | None) -> str:
        """The block as a loop over its unit modules; ``has_head``: the units' recomputed head
        (None: the units have no head)."""
        units = b.units
        rel = scope.rel(b.name)
        base = fn.fresh(rel.rsplit(".", 1)[-1])
        first = [f for f in b.features if f.index <= 0]
        feature_env = {}
        for f in first:
            if f.node not in env:
                # a feature node computed inside the block (a slice of the input): emit it
                src = self.nodes[f.node]["inputs"][0] if self.nodes[f.node]["inputs"] else None
                if src in env and self.nodes[f.node]["kind"] == "slice":
                    a = self.nodes[f.node]["attrs"]
                    feature_env[f.node] = f"{env[src]}[:, {a['start']}:{a['stop']}]"
                else:
                    raise IRError(f"block '{b.name}': feature '{f.node}' is not computed before the block")
        lookup = {**env, **feature_env}
        init = []
        for f in first:
            v = lookup[f.node]
            init.append(v if f.start is None else f"{v}[:, {f.start}:{f.stop}]")
        index = {f.index: k for k, f in enumerate(sorted(b.features, key=lambda f: f.index))}
        reads = tuple(tuple(index[j] for j in b.aggregate_order(u)) for u in units)
        join = "cat" if b.kind == "concat" else "sum"
        units_expr = f"self.{rel}.values()"
        out_positions = self._out_positions(b)
        lines = fn.lines
        about = f"# {b.name}: {b.pattern}, {len(units)} units, output={b.output_mode}; reads: "
        comment = about + _reads_comment(reads)
        buffer = self._buffer_of(b) if self.planned and b.kind == "concat" else None
        feats_var = fn.fresh(f"{base}_feats")
        keep_feats = buffer is not None and self._output_head(b) is not None
        streams = _StreamLoop.of(self, b, env, fn) if b.streams else None
        naive_uses = Uses()  # what the list-of-features loop calls, registered where it is emitted
        naive = self._naive_loop(
            naive_uses,
            fn,
            b,
            base,
            init,
            reads,
            join,
            units_expr,
            out_positions,
            use_head=has_head.bns if self.planned and has_head else None,
            feats=feats_var,
            keep_feats=keep_feats,
            streams=streams,
        )
        assert out_positions is not None  # _loopable checked it
        if keep_feats:
            self.block_feats[b.output] = _selected(feats_var, out_positions, len(init) + len(reads))
        if buffer is None:
            lines.append(comment)
            lines += naive
            scope.uses.merge(naive_uses)
            return base
        assert streams is None or not keep_feats  # a stream block's units return tuples
        channels, stores, unit_reads, out_read, in_stores = buffer
        out_chain = self._output_head(b) if keep_feats else None
        fused_out = out_chain is not None and self._fused(out_chain, "self", scope) is not None
        if has_head and has_head.fused and streams is None and (fused_out or not keep_feats):
            sources = [self._piece_source(f) for f in first]
            init, reads, outs = _whole_input(init, in_stores, lookup, reads, out_positions, sources)
            selected = _selected(feats_var, outs, len(init) + len(reads))
            window = _Window.of(buffer, len(init), reads)
            if window is not None:
                comment = f"{about}a window of the buffer"
            lines.append(f"{comment}; {_plan_comment(channels, stores)}")
            lines += self._buffer_loop(
                scope, b, base, feats_var, init, lookup, buffer, reads, units_expr, has_head.fused, fn.fresh("y")
            )
            if fused_out:  # the output's only consumer is a fused head: it reads the buffer too
                if window is not None and window.fits(buffer, out_read[-1][1], outs, out_read):
                    self.block_buffers[b.output] = (base, out_read, window)
                    self.block_feats[b.output] = feats_var
                else:
                    self.block_buffers[b.output] = (base, out_read, None)
                    self.block_feats[b.output] = selected
            else:
                lines.append(f"{base} = {scope.use(runtime._output)}({base}, {out_read!r}, {selected})")
            return base
        lines.append(comment)
        lines.append(f"if {_FEATURES}:  # autograd: a list of features, heads recomputed in backward")
        lines += ["    " + line for line in naive]
        scope.uses.merge(naive_uses)
        lines.append(f"else:  # {_plan_comment(channels, stores)}")
        body = [f"{base} = {scope.use(runtime._buffer)}({init[0]}, {channels})"] + (streams.start() if streams else [])
        for (s, e), node in in_stores:
            body.append(f"{base}[:, {s}:{e}] = {lookup[node]}")
        tables = _Tables()
        a, b_ = _store_vars(tables, stores)
        runs = _runs_var(tables, unit_reads)
        x = f"{scope.use(runtime._read)}({base}, {runs})"
        stream_args = streams.args(tables) if streams else []
        body.append(tables.header(units_expr))
        arg = f"unit.head({x})" if has_head is not None else x
        if streams is None:
            body.append(f"    {base}[:, {a}:{b_}] = unit({arg})")
        else:
            body += streams.call(arg, stream_args, lambda y: f"{base}[:, {a}:{b_}] = {y}")
        if out_read != ((0, channels),):
            if len(out_read) == 1:
                body.append(f"{base} = {base}[:, {out_read[0][0]}:{out_read[0][1]}]")
            else:
                body.append(f"{base} = torch.cat([{', '.join(f'{base}[:, {s}:{e}]' for s, e in out_read)}], 1)")
        body += streams.finish() if streams else []
        lines += ["    " + line for line in body]
        return base

    def _buffer_loop(self, scope, b, base, feats, init, lookup, buffer, reads, units_expr, fused, y) -> list[str]:
        """The planned block in one loop for inference and training: each unit's output goes into
        its channels of the buffer, its fused head reads its runs there (in training through
        ``_BatchNormReluConv``, which saves the buffer, not a concatenation); with autograd the
        outputs are kept in ``feats`` too, the tensors the heads' gradients flow to."""
        channels, stores, unit_reads, _, in_stores = buffer
        out = [f"{base}, {feats} = {scope.use(runtime._buffer)}({init[0]}, {channels}), []"]
        spans = self._first_spans(b, in_stores)
        if len(init) == 1 < len(spans):  # pieces of one value, read as one feature (``_whole_input``)
            spans = [(spans[0][0], spans[-1][1])]
        assert len(spans) == len(init) and spans == sorted(spans), (init, spans)  # ``feats`` in buffer order
        store = scope.use(runtime._store)
        out += [f"{store}({base}, {s}, {e}, {v}, {feats})" for v, (s, e) in zip(init, spans, strict=True)]
        tables = _Tables()
        gather = feats
        window = _Window.of(buffer, len(init), reads)
        if window is None and any(r != tuple(range(len(init) + k)) for k, r in enumerate(reads)):  # a gather
            gather = f"[{feats}[j] for j in {tables.var('reads', reads)}]"
        a, b_ = _store_vars(tables, stores)
        runs = "runs" if window else _runs_var(tables, unit_reads)
        out.append(tables.header(units_expr))
        if window:  # the features and runs each unit reads, from its window of the buffer
            gather = "reads"
            out.append(f"    reads, runs = {scope.use(windows._window)}({feats}, {a}, {window.far}, {window.near})")
        head = f"{scope.use(runtime._buffer_head)}(unit.head, {gather}, {base}, {runs}, {', '.join(fused)})"
        out.append(f"    {y} = {head}")
        out.append(f"    {scope.use(runtime._store)}({base}, {a}, {b_}, unit({y}), {feats})")
        return out

    def _naive_loop(
        self,
        uses: Uses,
        fn,
        b,
        base,
        init,
        reads,
        join,
        units_expr,
        out_positions,
        use_head,
        feats,
        keep_feats=False,
        streams=None,
    ) -> list[str]:
        out = [f"{feats} = [{', '.join(init)}]"] + (streams.start() if streams else [])
        dense = all(r == tuple(range(len(init) + k)) for k, r in enumerate(reads))
        tables = _Tables()
        single = not use_head and all(len(r) == 1 for r in reads)  # each unit reads one feature
        if single:
            arg = f"{feats}[-1]" if dense else f"{feats}[{tables.var('read', tuple(r[0] for r in reads))}]"
        else:
            gather = f"{feats}" if dense else f"[{feats}[j] for j in {tables.var('reads', reads)}]"
            arg = f"torch.cat({gather}, 1)" if join == "cat" else f"sum({gather})"
            if use_head:
                arg = f"{uses.add_global(runtime._recompute)}(unit.head, {gather}, {', '.join(use_head)})"
        stream_args = streams.args(tables) if streams else []
        out.append(tables.header(units_expr))
        if streams is None:
            out.append(f"    {feats}.append(unit({arg}))")
        else:
            out += streams.call(arg, stream_args, lambda y: f"{feats}.append({y})")
        n = len(init) + len(reads)
        if keep_feats:
            pass  # the block output's only consumer recomputes the concatenation from the features
        elif out_positions == tuple(range(n)):
            out.append(f"{base} = torch.cat({feats}, 1)")
        elif len(out_positions) == 1:
            p = out_positions[0]
            out.append(f"{base} = {feats}[{p - n if p >= len(init) else p}]")
        else:
            out.append(f"{base} = torch.cat([{feats}[j] for j in {out_positions!r}], 1)")
        return out + (streams.finish() if streams else [])

    def _buffer_of(self, b: BlockInfo) -> _LoopBuffer | None:
        """What the block's loop takes from its :class:`BufferPlan`, or None when the loop cannot
        use the plan (a unit output stored elsewhere, an aggregate or output the plan does not hold)."""
        plan = buffer_plans(self.g).get(b.name)
        out_read = None if plan is None else plan.read_of(b.output)
        if plan is None or out_read is None:
            return None
        stores, unit_reads = [], []
        for u in b.units:
            store, runs = plan.store_of(u.output), plan.runs_of(u.aggregate)
            if store is None or runs is None:
                return None
            stores.append((store.start, store.stop))
            unit_reads.append(runs)
        first = {f.node for f in b.features if f.index <= 0}
        in_stores = sorted(((s.start, s.stop), s.node) for s in plan.stores if s.node in first)
        return _LoopBuffer(plan.channels, tuple(stores), tuple(unit_reads), out_read.runs, in_stores)

    def unrolled(self, scope: _Scope, fn: _Func, b: BlockInfo, env: dict, cin_of: dict) -> str:
        members = sorted(self._block_nodes(b), key=self.pos.__getitem__)
        # emit the members without block grouping for this block (nested blocks may still loop)
        self.unrolling.add(b.output)
        try:
            fn.lines.append(f"# {b.name}: {b.pattern}, {len(b.units)} units, written out")
            return self.region(scope, fn, members, env, cin_of, b.output)
        finally:
            self.unrolling.discard(b.output)


class _Window(NamedTuple):
    """The ``far`` first and ``near`` last channels below its own that each unit of a planned
    block reads (SparseNet's ``path``), when they are exactly the plan's reads (checked by calling
    :func:`windows._window` on stand-ins of the block's features)."""

    far: int
    near: int

    @classmethod
    def of(cls, buffer: _LoopBuffer, n_init: int, reads: tuple) -> _Window | None:
        """The window of a block with one first feature stored at channel 0 and the units' outputs
        after it, in order; None where the units' reads are no such window (or a dense prefix)."""
        _, stores, unit_reads, _, in_stores = buffer
        if n_init != 1 or len(in_stores) != 1 or in_stores[0][0][0] != 0:
            return None
        if [s[0] for s in stores] != [in_stores[0][0][1], *(s[1] for s in stores[:-1])]:
            return None  # not stored one after the other
        two = [(store[0], r) for store, r in zip(stores, unit_reads, strict=True) if len(r) == 2]
        if not two:
            return None
        stop, runs = two[0]
        window = cls(runs[0][1], stop - runs[1][0])
        ok = all(window.fits(buffer, s[0], r, rows) for s, r, rows in zip(stores, reads, unit_reads, strict=True))
        return window if ok else None

    def fits(self, buffer: _LoopBuffer, stop: int, reads: tuple[int, ...], runs: tuple) -> bool:
        """Whether the window below channel ``stop`` is the features at ``reads`` and the runs ``runs``."""
        starts = [0, *(a for a, _ in buffer.stores)]
        stand_ins = [(None, None, None, None, start) for start in starts]  # ``_store``'s entries: the start
        available = stand_ins[: 1 + sum(1 for a, _ in buffer.stores if a < stop)]
        picked, got = windows._window(available, stop, self.far, self.near)
        return got == tuple(runs) and [id(f) for f in picked] == [id(stand_ins[j]) for j in reads]


def _unit_slices(b: BlockInfo, unit: int) -> list[str]:
    """The stream slices unit ``unit`` of ``b`` reads (those nothing reads were dropped)."""
    return [x for st in b.streams if (x := st.slices[unit - 1]) is not None]


@dataclass
class _Tables:
    """The per-unit values a loop reads: each is a loop variable over its table, unless every unit
    has the same value (then the value itself is written) or an earlier table is the same (then
    that table's variable): the tables carry only what varies."""

    names: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    seen: dict[tuple, str] = field(default_factory=dict)

    def var(self, name: str, values: tuple) -> str:
        """The expression of this unit's value in the loop body."""
        if len(set(values)) == 1:
            return repr(values[0])
        if values not in self.seen:
            ints = all(isinstance(v, int) for v in values)
            self.names.append(name)
            self.tables.append(_range_src(values) if ints else repr(values))
            self.seen[values] = name
        return self.seen[values]

    def header(self, units: str) -> str:
        """``for unit, ... in zip(units, tables..., strict=True):`` (``for unit in units:`` alone)."""
        if not self.names:
            return f"for unit in {units}:"
        return f"for unit, {', '.join(self.names)} in zip({units}, {', '.join(self.tables)}, strict=True):"


def _store_vars(tables: _Tables, stores) -> tuple[str, str]:
    """The loop's expressions of the channels [a, b) a unit's output is written to."""
    return tables.var("a", tuple(s[0] for s in stores)), tables.var("b", tuple(s[1] for s in stores))


def _runs_var(tables: _Tables, unit_reads) -> str:
    """The loop's expression of the runs a unit's aggregate is in the buffer."""
    if all(len(r) == 1 for r in unit_reads):
        start = tables.var("start", tuple(r[0][0] for r in unit_reads))
        stop = tables.var("stop", tuple(r[0][1] for r in unit_reads))
        return f"(({start}, {stop}),)"
    return tables.var("runs", tuple(unit_reads))


@dataclass
class _StreamLoop:
    """What a loop over the units of a block carrying streams adds: per stream with an input,
    a table of each unit's slice range (``unit(x, raw[:, c:d])``); per stream whose collected
    value is read after the block, a list the units' pieces are appended to and its concatenation
    (an unread stream's pieces are dropped: ``y, _ = unit(...)``)."""

    slices: list[tuple[str, str, str, int]]  # per stream with an input: its variable, start and stop names, width
    units: int
    outs: list[tuple[str, str]]  # per read stream: (the pieces' list, the variable of its output)
    result: str  # the unit output's variable inside the loop
    got: list[str]  # per stream: the piece's variable inside the loop ("_": not kept)

    @classmethod
    def of(cls, gen: Generator, b: BlockInfo, env: dict, fn: _Func) -> _StreamLoop:
        units = len(b.units)
        slices, outs, got = [], [], []
        for st in b.streams:
            if st.input is not None and all(x is not None for x in st.slices):
                w = gen.nodes[st.input]["shape"][0] // units
                start, stop = fn.fresh(f"{st.name}_start"), fn.fresh(f"{st.name}_stop")
                slices.append((env[st.input], start, stop, w))
            elif any(x is not None for x in st.slices):
                raise IRError(f"block '{b.name}': stream '{st.name}' is read by some units only")
            if st.output is None:
                got.append("_")
                continue
            pieces, out = fn.fresh(f"{st.name}_pieces"), fn.fresh(st.name)
            env[st.output] = out
            outs.append((pieces, out))
            got.append(fn.fresh(f"{st.name}_piece"))
        return cls(slices, units, outs, fn.fresh("y"), got)

    def args(self, tables: _Tables) -> list[str]:
        """The slices of the streams passed to each unit, their ranges in the loop's ``tables``."""
        out = []
        for var, start, stop, w in self.slices:
            a = tables.var(start, tuple(i * w for i in range(self.units)))
            b = tables.var(stop, tuple((i + 1) * w for i in range(self.units)))
            out.append(f"{var}[:, {a}:{b}]")
        return out

    def start(self) -> list[str]:
        return [f"{p} = []" for p, _ in self.outs]

    def call(self, arg: str, args: list[str], store: Callable[[str], str]) -> list[str]:
        """The loop body: call the unit (``args``: the stream slices), store its output (the
        statement ``store`` makes of its variable), keep its pieces."""
        lines = [f"    {', '.join([self.result, *self.got])} = unit({', '.join([arg, *args])})"]
        lines.append(f"    {store(self.result)}")
        lines += [
            f"    {p}.append({g})" for (p, _), g in zip(self.outs, [g for g in self.got if g != "_"], strict=True)
        ]
        return lines

    def finish(self) -> list[str]:
        return [f"{out} = torch.cat({p}, 1)" for p, out in self.outs]


def _selected(feats: str, positions: tuple[int, ...], n_feats: int) -> str:
    """The features at ``positions`` of the list ``feats`` (of ``n_feats``), as source."""
    return feats if positions == tuple(range(n_feats)) else f"[{feats}[j] for j in {positions!r}]"


def _whole_input(init, in_stores, lookup, reads, outs, sources):
    """(init, reads, outs) with the block input as one feature when it was split into pieces (a
    SparseNet block's input counts as k-channel features) that every read takes all or none of, in
    order: the heads' gradient then flows to the input in one piece, not through one full-size
    slice backward per piece and read. ``sources``: per first feature, the node it is a channel
    range of."""
    pieces = range(len(init))
    whole = len(init) > 1 and len(in_stores) == 1 and in_stores[0][0][0] == 0
    # the pieces are channel ranges of the one value the buffer starts with
    whole = whole and all(node == in_stores[0][1] for node in sources)
    for r in (*reads, outs):
        taken = [j for j in r if j in pieces]
        whole = whole and taken in ([], list(pieces)) and (not taken or r[: len(init)] == tuple(pieces))
    if not whole:
        return init, reads, outs

    def shift(r):
        return (
            (0, *(j - len(init) + 1 for j in r[len(init) :])) if r[:1] == (0,) else tuple(j - len(init) + 1 for j in r)
        )

    return [lookup[in_stores[0][1]]], tuple(shift(r) for r in reads), shift(outs)


def _plan_comment(channels: int, stores) -> str:
    return f"one buffer of {channels} channels"


def _reads_comment(reads: tuple) -> str:
    if all(r == tuple(range(len(reads[0]) + k)) for k, r in enumerate(reads)) and reads:
        return "all earlier features"
    return "the table below" if len(reads) > 1 else repr(list(reads[0]))


def _fmt_ranges(ranges) -> str:
    rs = list(ranges)
    if len(rs) > 2:
        return f"[{rs[0][0]}, {rs[0][1]}) ... [{rs[-1][0]}, {rs[-1][1]})"
    return ", ".join(f"[{a}, {b})" for a, b in rs)


# When a block's features are a list and each unit concatenates what it reads: with autograd (the
# buffer's in-place writes would invalidate the views autograd saved). Without autograd, the
# planned buffer -- under torch.compile too: the buffer program compiles to a faster
# graph than the concatenating one (docs/performance.md).
_FEATURES = "torch.is_grad_enabled()"

_JOIN = "x = xs[0] if len(xs) == 1 else torch.cat(xs, 1)"


def _method(name: str, args: str, lines: list[str], ret: str, doc: str | None = None) -> str:
    out = [f"    def {name}(self, {args}):"]
    if doc:
        out.append(f'        """{doc}"""')
    out += [f"        {line}" for line in lines]
    out.append(f"        return {ret}")
    return "\n".join(out) + "\n"


def _wrapped(text: str) -> str:
    """``text``'s lines wrapped to the file's width (the header lists every parameter value)."""
    return "\n".join(
        "\n".join(textwrap.wrap(line, 116, break_long_words=False, break_on_hyphens=False)) if line else ""
        for line in text.split("\n")
    )


def _docstring(text: str) -> str:
    r'''A docstring literal for ``text``, escaped so nothing in it can end the string: the header
    quotes file names and parameter values, which may hold quotes, backslashes or newlines.

    >>> import ast
    >>> ast.literal_eval(_docstring('x"""; import os; """ \\ \x00'))
    'x"""; import os; """ \\ \x00'
    '''
    safe = "".join(
        c
        if c == "\n" or (c.isprintable() and c not in '\\"')
        else ("\\" + c if c in '\\"' else c.encode("unicode_escape").decode("ascii"))
        for c in text
    )
    return f'"""{safe}"""'


def generate(graph: nx.DiGraph, header: str = "") -> str:
    """The Python source of the network's module: imports, helpers, unit classes, the network
    class, ``Net`` and ``build()``. Needs only torch."""
    gen = Generator(graph)
    top = _Scope("")
    fn = _Func()
    inp, out = graph.graph["input"], graph.graph["output"]
    env = {inp: "x"}
    nodes = [n for n in gen.order if n != inp]
    result = gen.region(top, fn, nodes, env, {}, out)
    declared = graph_outputs(graph)
    # several outputs: returned as a tuple in declaration order (names: output_names)
    outs = [env[node] for _, node in declared] if len(declared) > 1 else [result]
    cls = class_name(graph.graph.get("name", "net"))
    if gen.names.taken(cls) or cls == "Net":
        cls = cls + "Network"
    network = _network_class(cls, graph, top, fn, outs)
    fmt = memory_format(graph)
    # The unit classes the network uses (directly or through another unit class) and the helpers
    # their code calls, as recorded while it was emitted; a class made for a block that was then
    # written out op by op is not in the file, nor what only it used.
    used: set[str] = set()
    helpers: set[str] = set()
    todo = [top.uses]
    while todo:
        uses = todo.pop()
        helpers |= uses.globals
        for name in uses.classes - used:
            used.add(name)
            todo.append(gen.unit_classes[name][1])
    classes = [src.rstrip() for name, (src, _) in gen.unit_classes.items() if name in used]
    imports, sources = embedded(helpers)
    body = "\n\n\n".join([*classes, network])
    head = [_docstring(_wrapped(header.strip())) if header else '"""Generated by netdsl."""', "", *imports]
    tail = [
        f"Net = {cls}",
        "",
        "",
        "def build():",
        f'    """A fresh {cls} (torch\'s default initialization)."""',
        f"    return {cls}()" + ("" if fmt is None else f".to(memory_format={_TORCH_FORMAT[fmt]})"),
        "",
    ]
    return fit("\n".join(head) + "\n\n\n" + "\n\n\n".join([*sources, body]) + "\n\n\n" + "\n".join(tail))


_TORCH_FORMAT = {"channels_last": "torch.channels_last", "contiguous": "torch.contiguous_format"}


def _network_class(cls: str, graph: nx.DiGraph, top: _Scope, fn: _Func, outs: list[str]) -> str:
    """The network class; ``outs``: the variables ``forward`` returns, one per declared output."""
    shape = tuple(graph.nodes[graph.graph["input"]]["shape"])
    fmt = memory_format(graph)
    lines = []
    lines.append(f"class {cls}(nn.Module):")
    lines.append(f'    """{graph.graph.get("name", "net")}: input (N, {", ".join(map(str, shape))})."""')
    lines.append("")
    lines.append(f"    input_shape = {shape!r}")
    declared = graph_outputs(graph)
    if len(declared) > 1:
        names = tuple(name for name, _ in declared)
        quoted = ", ".join(f'"{n}"' if n.isidentifier() else repr(n) for n in names)  # ruff's quotes
        lines.append(f"    output_names = ({quoted})  # forward returns them in this order")
    lines.append("")
    lines.append("    def __init__(self):")
    lines.append("        super().__init__()")
    lines += ["        " + line for line in top.init]
    lines.append("")
    for m in top.methods:
        lines.append(m.rstrip())
        lines.append("")
    lines.append("    def forward(self, x):")
    if precision(graph) == "auto":  # the compiler's choice: float32 where autocast's dtype has no fast convs
        back = "tuple(y.to(dtype) for y in {})" if len(outs) > 1 else "{}.to(dtype)"
        slow = top.use(runtime._slow_autocast)
        why = "precision: the compiler's choice, float32 where autocast's dtype is slow"
        lines.append(f"        if dtype := {slow}(x):  # {why}")
        lines.append("            with torch.autocast(x.device.type, enabled=False):")
        lines.append("                return " + back.format("self.forward(x.float())") + "  # as autocast would give")
    spatial = [len(graph.nodes[n]["shape"]) == 3 for _, n in declared]
    if fmt is not None and any(spatial):  # outputs with two spatial dims go back in the caller's layout
        lines.append(f"        caller = {top.use(runtime._memory_format)}(x)")
        outs = [f"{o}.contiguous(memory_format=caller)" if s else o for o, s in zip(outs, spatial, strict=True)]
    if fmt is not None:  # converted once, at the stem; the comment states the choice
        how = "the compiler's choice" if graph.graph.get("memory_format", "auto") == "auto" else "pinned"
        lines.append(f"        x = x.contiguous(memory_format={_TORCH_FORMAT[fmt]})  # layout: {how}")
    body, result = fn.returned(outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")")
    lines += ["        " + line for line in body]
    lines.append(f"        return {result}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- loading


_LOADED: dict[str, types.ModuleType] = {}


def load(source: str) -> types.ModuleType:
    """Exec generated source as a module registered with ``linecache`` (tracebacks and
    ``inspect.getsource`` show its lines) and make its classes picklable by value (their
    source travels with the pickle). Cached by source."""
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    mod = _LOADED.get(key)
    if mod is not None:
        return mod
    name = f"netdsl_generated_{key}"
    filename = f"<netdsl-generated-{key}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    mod = types.ModuleType(name)
    mod.__file__ = filename
    sys.modules[name] = mod
    exec(compile(source, filename, "exec"), mod.__dict__)  # our own generated source, never spec text
    for value in list(mod.__dict__.values()):
        if isinstance(value, type) and value.__module__ == name:
            copyreg.pickle(value, _reducer(source, value.__qualname__))
    _LOADED[key] = mod
    return mod


def _reducer(source: str, qualname: str):
    def reduce(obj):
        return _rebuild, (source, qualname), obj.__getstate__()

    return reduce


def _rebuild(source: str, qualname: str):
    cls = getattr(load(source), qualname)
    return cls.__new__(cls)


def init_weights(module, seed: int | None = None):
    """torchvision's DenseNet initialization: He-normal convs, BN weight 1 / bias 0, linear bias 0."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            with torch.no_grad():
                m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return module


def module_from_graph(graph: nx.DiGraph, header: str = ""):
    """An instance of the generated class (torch's default initialization)."""
    mod = load(generate(graph, header))
    return mod.build()


def build(graph: nx.DiGraph, seed: int | None = 0, header: str = ""):
    """The generated module, initialized as :func:`init_weights` does; with a seed, every initial
    tensor depends on it alone and the caller's global random state is left as it was."""
    import torch

    mod = load(generate(graph, header))
    fmt = memory_format(graph)
    if seed is None:
        module = init_weights(mod.Net(), None)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = init_weights(mod.Net(), seed)
    if fmt is None:  # the weights in the layout the module runs in, after they were drawn (as before)
        return module
    return module.to(memory_format=torch.channels_last if fmt == "channels_last" else torch.contiguous_format)
