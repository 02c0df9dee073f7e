"""AST -> IR: evaluates a network's statements and builds the networkx graph.

Lowering walks the body like an interpreter: each statement transforms the *current* tensor.
Every node gets a deterministic dotted name from its scope (``block1.unit3.conv1``): labels
(``stem: conv(...)``) name it explicitly, otherwise the op's name plus a per-scope counter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import networkx as nx

from ..errors import (
    LimitError,
    NetdslError,
    ShapeError,
    Span,
    SpecNameError,
    SpecTypeError,
    SpecValueError,
    SpecWarning,
    did_you_mean,
)
from ..ir import generators as G
from ..ir import patterns as P
from ..ir.channels import DTYPE_BYTES, merge_runs
from ..ir.graph import BlockInfo, Feature, UnitInfo, add_op
from ..ir.ops import OP_KINDS, fmt_shape, infer_shape
from ..naming import check_label
from . import ast, streams
from .builtins import OPS, REQUIRED, STRUCTURAL, Arg
from .evaluate import Env, Evaluator, OpValue, TensorRef, fmt_value, type_name


@dataclass(frozen=True, slots=True)
class Limits:
    """The work budget: resource limits checked while lowering, before anything is allocated.

    Each limit a user can reach has a CLI flag of the same name (``--max-edges``); the defaults
    keep ``netdsl check`` of any spec within seconds while leaving every published network far
    inside (the largest preset, dense2net121_s8, has 2,513 ops and 3,801 edges)."""

    max_params: int = 2_000_000_000
    max_nodes: int = 50_000  # about 2 s of lowering and passes on a 2-core machine
    max_map_elements: int = 2**31  # C*H*W of any one tensor, per sample
    max_template_depth: int = 48
    # Statements nested inside each other, counting through template calls and unit bodies;
    # lowering recurses once per level, so this keeps it far from Python's recursion limit.
    max_statement_depth: int = 100
    # Iterations of all loops together (for, repeat, and the for loops of parallel), nested ones counted.
    max_loop_iterations: int = 100_000
    max_layers: int = 10_000  # units of all blocks together
    # Connections between ops (IR edges); a rule block counts every (i, j) pair its rule tests, a
    # graph block the node pairs its generator visits (before networkx runs).
    max_edges: int = 250_000


# Flag that raises each limit, named in the limit's error message.
LIMIT_FLAGS = {
    "max_params": "--max-params",
    "max_nodes": "--max-nodes",
    "max_map_elements": "--max-map-elements",
    "max_loop_iterations": "--max-loop-iterations",
    "max_layers": "--max-layers",
    "max_edges": "--max-edges",
}


def _over(limits: Limits, name: str, what: str, span: Span | None) -> LimitError:
    """The error for a spent budget: what was asked for, the limit and the flag that raises it."""
    return LimitError(what, span, f"the limit is {getattr(limits, name):,}; raise it with {LIMIT_FLAGS[name]}")


def _walk(e: ast.Node) -> Iterator[ast.Node]:
    """``e`` and every node inside it (each dataclass's own fields are its ``__slots__``)."""
    yield e
    for name in getattr(e, "__slots__", ()):
        child = getattr(e, name)
        for c in child if isinstance(child, tuple) else (child,):
            if isinstance(c, ast.Node):
                yield from _walk(c)


class Scope:
    """A naming scope: one network body, template instance, unit or branch."""

    __slots__ = ("counters", "current", "input", "labels", "path", "streams", "used")

    def __init__(self, path: str, input: str | None):
        self.path = path
        self.counters: dict[str, int] = {}
        self.used: set[str] = set()
        self.labels: dict[str, str] = {}
        self.input = input
        self.current = input
        # Named streams carried beside the current tensor (netdsl.frontend.streams): name -> node.
        # Templates and residual/parallel bodies share their caller's dict; a block unit has its own.
        self.streams: dict[str, str | None] = {}

    @property
    def current_node(self) -> str:
        """``current`` where it cannot be None: a scope made with an input (a template, block, unit
        or branch) starts at a node, and every statement moves it to another node."""
        assert self.current is not None, self.path
        return self.current

    def fresh(self, base: str) -> str:
        n = self.counters.get(base, 0)
        while True:
            n += 1
            name = f"{base}{n}"
            if name not in self.used:
                self.counters[base] = n
                self.used.add(name)
                return name

    def claim(self, label: str, span: Span) -> str:
        if label in self.used:
            raise SpecNameError(
                f"the name '{label}' is already used in this scope", span, "labels must be unique within a body"
            )
        self.used.add(label)
        return label

    def id(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name


class NetworkScope(Scope):
    """The network body's scope. It remembers, in creation order, where each top-level name was
    claimed, so every node's ``stage`` (the top-level statement it comes from) is known from the
    lowering itself: a top-level statement claims its name before it creates its nodes."""

    __slots__ = ("created", "stages")

    def __init__(self, created: list[str]):
        super().__init__("", None)
        self.created = created  # the lowerer's node ids in creation order
        self.stages: list[tuple[int, str]] = [(0, "input")]  # (first node index, stage name)

    def fresh(self, base: str) -> str:
        name = super().fresh(base)
        self.stages.append((len(self.created), name))
        return name

    def claim(self, label: str, span: Span) -> str:
        name = super().claim(label, span)
        self.stages.append((len(self.created), name))
        return name


@dataclass
class _State:
    params: int = 0
    flops: int = 0
    template_stack: list = field(default_factory=list)
    depth: int = 0  # current statement nesting, checked against Limits.max_statement_depth
    iterations: int = 0  # loop iterations so far, all loops together (Limits.max_loop_iterations)
    layers: int = 0  # block units so far (Limits.max_layers)
    edges: int = 0  # IR edges so far (Limits.max_edges)


class Lowerer:
    def __init__(self, templates: dict[str, ast.Template], limits: Limits | None = None):
        self.templates = templates
        self.limits = limits or Limits()
        self.graph = nx.DiGraph()
        self.graph.graph["blocks"] = []
        self.graph.graph["block_parents"] = {}  # nested block -> (enclosing block, unit index)
        self.graph.graph["warnings"] = []  # SpecWarning: legal but suspicious, shown by the CLI
        self.state = _State()
        self.scope: Scope | None = None
        self._created: list[str] = []  # node ids in creation order, so a unit can tag its own nodes
        self._outer_unit: dict[str, tuple[str, str]] = {}  # node -> (block, unit scope) of its outermost unit
        # Unit widths found by probing, shared with the probes' own lowerers: nested window blocks
        # are probed once per distinct (body, input shape, visible variables), not once per level.
        self.probe_cache: dict = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        # The network's declared outputs, (name, node) in order, and the statement that declared
        # them: set once by ``output(...)``, which ends the network (no op may follow it).
        self.outputs: tuple[tuple[str, str], ...] | None = None
        self.outputs_span: Span | None = None
        self.evaluator = Evaluator(self._resolve, self._is_op, self._extra_names)

    # ---- name resolution for the evaluator
    def _resolve(self, name: str):
        scope = self.scope
        if scope is None:
            return False, None
        if name in scope.labels:
            return True, TensorRef(scope.labels[name], name)
        node = streams.stream_value(scope, name)
        if node is not None:
            return True, TensorRef(node, name)
        if name == "input" and scope.input is not None:
            return True, TensorRef(scope.input, "input")
        if name in ("channels", "height", "width") and scope.current is not None:
            shape = self.shape(scope.current)
            if name == "channels":
                return True, shape[0]
            if len(shape) != 3:
                raise SpecValueError(f"'{name}' needs a feature map, the current value is a vector")
            return True, shape[1] if name == "height" else shape[2]
        return False, None

    def _is_op(self, name: str) -> bool:
        return name in OPS or name in self.templates

    def _extra_names(self) -> set[str]:
        names = {"channels", "height", "width", "input"}
        if self.scope is not None:
            names |= set(self.scope.labels)
        return names

    def eval(self, e: ast.Expr, env: Env):
        return self.evaluator.eval(e, env)

    def shape(self, node: str) -> tuple[int, ...]:
        # A plain dict beside the graph: big blocks look shapes up once per connection, and
        # networkx's node view costs several times a dict lookup.
        shape = self._shapes.get(node)
        return self.graph.nodes[node]["shape"] if shape is None else shape

    # ---- node creation
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
            raise _over(lim, "max_nodes", f"the network has more than {lim.max_nodes:,} ops", span)
        self.state.edges += len(inputs)
        if self.state.edges > lim.max_edges:
            raise _over(lim, "max_edges", f"the network has more than {lim.max_edges:,} edges (op inputs)", span)
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
        self._created.append(node_id)
        return node_id

    # ---- statements
    def body(self, stmts: tuple[ast.Stmt, ...], scope: Scope, env: Env) -> None:
        for stmt in stmts:
            self.stmt(stmt, scope, env)

    def stmt(self, stmt: ast.Stmt, scope: Scope, env: Env) -> None:
        prev, self.scope = self.scope, scope
        self.state.depth += 1
        try:
            if self.state.depth > self.limits.max_statement_depth:
                raise LimitError(
                    f"statements nested more than {self.limits.max_statement_depth} deep "
                    "(counting through templates and blocks)",
                    stmt.span,
                    "flatten the nesting; deep nesting is usually an accidental recursion",
                )
            if isinstance(stmt, ast.Let):
                if stmt.name in env.vars:
                    raise SpecNameError(
                        f"'{stmt.name}' is already defined here", stmt.span, "names are bound once; use a new name"
                    )
                env.vars[stmt.name] = self.eval(stmt.value, env)
            elif isinstance(stmt, ast.For):
                self._for(stmt, scope, env)
            elif isinstance(stmt, ast.If):
                cond = self.eval(stmt.cond, env)
                if not isinstance(cond, (bool, int)) or isinstance(cond, float):
                    raise SpecTypeError(f"'if' needs a condition, got {type_name(cond)}", stmt.cond.span)
                self.body(stmt.then if cond else stmt.orelse, scope, env.child())
            else:
                self.op_stmt(stmt, scope, env)
        except NetdslError as err:
            err.with_span(stmt.span)
            raise
        finally:
            self.state.depth -= 1
            self.scope = prev

    def _loop_items(self, stmt: ast.For, env: Env) -> range | list:
        """The values a ``for`` runs over, charged to the loop budget before the first iteration.
        One function for every ``for`` (in bodies and in ``parallel``), so all obey the same rules."""
        start = self.eval(stmt.start, env)
        if stmt.stop is not None:
            stop = self.eval(stmt.stop, env)
            for v, e in ((start, stmt.start), (stop, stmt.stop)):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise SpecTypeError(
                        f"a range needs integers, got {type_name(v)} {fmt_value(v)}",
                        e.span,
                        "write a..b with integers a <= b + 1 (a..a-1 is empty)",
                    )
            if stop < start - 1:
                raise SpecValueError(
                    f"the range {start}..{stop} runs backwards",
                    stmt.start.span,
                    "ranges count up: write a..b with a <= b (a..a-1 is an empty loop)",
                )
            items: range | list = range(start, stop + 1)
        elif isinstance(start, list):
            items = start
        else:
            raise SpecTypeError(f"'for' needs a range a..b or a list, got {type_name(start)}", stmt.start.span)
        self._charge_iterations(len(items), stmt.span)
        return items

    def _charge_iterations(self, n: int, span: Span) -> None:
        lim = self.limits.max_loop_iterations
        self.state.iterations += n
        if self.state.iterations > lim:
            raise _over(
                self.limits,
                "max_loop_iterations",
                f"loops would run more than {lim:,} iterations in all (this one: {n:,})",
                span,
            )

    def _for(self, stmt: ast.For, scope: Scope, env: Env) -> None:
        for v in self._loop_items(stmt, env):
            self.body(stmt.body, scope, env.child({stmt.var: v}))

    def _need_current(self, scope: Scope, span: Span) -> str:
        if scope.current is None:
            raise SpecValueError("no input yet", span, "a network body starts with input(channels, height, width)")
        return scope.current

    def op_stmt(self, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
        call = stmt.call
        name = call.name
        if stmt.label is not None:
            check_label(stmt.label, stmt.span)
            found, _ = env.lookup(stmt.label)
            if found:
                raise SpecNameError(f"label '{stmt.label}' shadows the variable '{stmt.label}'", stmt.span)
            streams.check_label(scope, stmt.label, stmt.span)
        if name in STRUCTURAL:
            getattr(self, f"_s_{name}")(stmt, scope, env)
            return
        if stmt.body is not None:
            raise SpecTypeError(
                f"'{name}' takes no body", stmt.span, "only block, residual, parallel, branch and repeat take { ... }"
            )
        found, value = env.lookup(name)
        if found:
            if not isinstance(value, OpValue):
                raise SpecTypeError(f"'{name}' is a {type_name(value)}, not an op", call.name_span or call.span)
            if call.args or call.kwargs:
                raise SpecTypeError(f"'{name}' is an op value; it is applied without arguments", call.span)
            self.apply_call(value.call, value.env, scope, stmt.label)
            return
        self.apply_call(call, env, scope, stmt.label)

    def apply_call(self, call: ast.Call, env: Env, scope: Scope, label: str | None) -> None:
        name = call.name
        if name in self.templates:
            self._template(call, env, scope, label)
        elif name in OPS:
            self._primitive(call, env, scope, label)
        else:
            known = set(OPS) | set(self.templates) | set(STRUCTURAL)
            raise SpecNameError(
                f"unknown op or template '{name}'", call.name_span or call.span, did_you_mean(name, known)
            )

    # ---- argument binding
    def bind(self, call: ast.Call, names: list[str], env: Env, what: str) -> dict[str, tuple[object, Span]]:
        if len(call.args) > len(names):
            raise SpecTypeError(
                f"{what} takes at most {len(names)} positional argument{'s' if len(names) != 1 else ''}, "
                f"got {len(call.args)}",
                call.args[len(names)].span,
                f"its arguments are: {', '.join(names)}" if names else None,
            )
        out = {names[k]: (self.eval(a, env), a.span) for k, a in enumerate(call.args)}
        for kw in call.kwargs:
            if kw.name not in names:
                raise SpecTypeError(
                    f"{what} has no argument '{kw.name}'",
                    kw.span,
                    did_you_mean(kw.name, names) or f"its arguments are: {', '.join(names)}",
                )
            if kw.name in out:
                raise SpecTypeError(f"{what} got argument '{kw.name}' twice", kw.span)
            out[kw.name] = (self.eval(kw.value, env), kw.span)
        return out

    @staticmethod
    def check(arg: Arg, value, span: Span, what: str):
        c = arg.check
        if c == "tensor":  # crop(x): a labelled tensor, read for its shape
            if not isinstance(value, TensorRef):
                raise SpecTypeError(
                    f"{what} '{arg.name}' must be a labelled tensor, got {type_name(value)} {fmt_value(value)}",
                    span,
                    "label a statement (skip: block(...)) and pass its name",
                )
            return value
        if "|" in c:  # one of a few names: upsample's mode=nearest|bilinear
            if value not in c.split("|"):
                raise SpecValueError(
                    f"{what} '{arg.name}' must be one of {', '.join(c.split('|'))}, got {fmt_value(value)}", span
                )
            return value
        if c == "bool":
            if not isinstance(value, bool):
                raise SpecTypeError(f"{what} '{arg.name}' must be true or false, got {fmt_value(value)}", span)
            return value
        if c.startswith("int"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecTypeError(
                    f"{what} '{arg.name}' must be an integer, got {type_name(value)} {fmt_value(value)}",
                    span,
                    "use // or floor() to get an integer",
                )
            low = int(c[-1])
            if value < low:
                raise SpecValueError(f"{what} '{arg.name}' must be >= {low}, got {value}", span)
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecTypeError(
                f"{what} '{arg.name}' must be a number, got {type_name(value)} {fmt_value(value)}", span
            )
        value = float(value)
        if c == "prob" and not 0.0 <= value <= 1.0:
            raise SpecValueError(f"{what} '{arg.name}' must be in [0, 1], got {value}", span)
        if c == "float>0" and value <= 0:
            raise SpecValueError(f"{what} '{arg.name}' must be > 0, got {value}", span)
        return value

    def _primitive(self, call: ast.Call, env: Env, scope: Scope, label: str | None) -> None:
        sig = OPS[call.name]
        bound = self.bind(call, [a.name for a in sig.args], env, f"{call.name}()")
        vals = {}
        for arg in sig.args:
            if arg.name in bound:
                value, span = bound[arg.name]
                vals[arg.name] = (
                    None if value is None and arg.default is None else self.check(arg, value, span, f"{call.name}()")
                )
            elif arg.default is REQUIRED:
                raise SpecTypeError(
                    f"{call.name}() needs the argument '{arg.name}'",
                    call.span,
                    f"for example {call.name}({', '.join(a.name for a in sig.args if a.default is REQUIRED)})",
                )
            else:
                vals[arg.name] = arg.default
        cur = self._need_current(scope, call.span)
        in_shape = self.shape(cur)
        # a "tensor" argument (crop(x)) is a further input of the node, after the current tensor
        refs = tuple(v.node for v in vals.values() if isinstance(v, TensorRef))
        vals = {k: v for k, v in vals.items() if not isinstance(v, TensorRef)}
        kind = sig.kind
        attrs = sig.to_attrs(vals, in_shape)  # the registry entry maps spec arguments to IR attrs
        if sig.flatten_first and len(in_shape) == 3:  # linear flattens a feature map first, as users expect
            cur = self.add(scope.id(scope.fresh("flatten")), "flatten", (cur,), {}, call.span)
        name = scope.claim(label, call.span) if label else scope.fresh(call.name)
        node = self.add(scope.id(name), kind, (cur, *refs), attrs, call.span)
        if label:
            scope.labels[label] = node
        scope.current = node

    # ---- templates
    def _template(self, call: ast.Call, env: Env, scope: Scope, label: str | None, inline: Scope | None = None) -> None:
        t = self.templates[call.name]
        stack = self.state.template_stack
        if call.name in stack:
            chain = " -> ".join(stack[stack.index(call.name) :] + [call.name])
            raise SpecValueError(f"recursive template: {chain}", call.span, "templates cannot call themselves")
        if len(stack) >= self.limits.max_template_depth:
            raise LimitError(f"templates nested more than {self.limits.max_template_depth} deep", call.span)
        names = [p.name for p in t.params]
        bound = self.bind(call, names, env, f"template '{t.name}'")
        tenv = Env()
        for p in t.params:
            if p.name in bound:
                tenv.vars[p.name] = bound[p.name][0]
            elif p.default is not None:
                tenv.vars[p.name] = self.eval(p.default, tenv)
            else:
                raise SpecTypeError(
                    f"template '{t.name}' needs the argument '{p.name}'", call.span, f"it is declared at {t.span}"
                )
        cur = self._need_current(scope, call.span)
        if inline is not None:
            sub = inline
        else:
            name = scope.claim(label, call.span) if label else scope.fresh(t.name)
            sub = Scope(scope.id(name), cur)
            sub.streams = scope.streams  # a template hands its streams back, as its current tensor
        stack.append(call.name)
        try:
            self.body(t.body, sub, tenv)
        finally:
            stack.pop()
        scope.current = sub.current
        if label:
            scope.labels[label] = sub.current_node

    # ---- structural statements
    def _s_input(self, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
        if scope.path or scope.current is not None:
            raise SpecValueError("input(...) must be the first op of a network", stmt.span)
        b = self.bind(stmt.call, ["channels", "height", "width"], env, "input()")
        if len(b) != 3:
            raise SpecTypeError(
                "input() needs channels, height and width", stmt.call.span, "for example input(3, 32, 32)"
            )
        dims = tuple(self.check(Arg(n, "int>=1"), *b[n], "input()") for n in ("channels", "height", "width"))
        node = self.add("input", "input", (), {"shape": dims}, stmt.span)
        scope.used.add("input")
        scope.input = scope.current = node
        self.graph.graph["input"] = node

    def _tensor_args(self, stmt: ast.OpStmt, env: Env) -> list[str]:
        if stmt.call.kwargs:
            raise SpecTypeError(f"{stmt.call.name}() takes only tensors", stmt.call.kwargs[0].span)
        out = []
        for a in stmt.call.args:
            v = self.eval(a, env)
            if not isinstance(v, TensorRef):
                raise SpecTypeError(
                    f"{stmt.call.name}() takes labelled tensors, got {type_name(v)} {fmt_value(v)}",
                    a.span,
                    "label a statement (h: conv(...)) and pass its name",
                )
            out.append(v.node)
        return out

    def _s_expect(self, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
        """``expect(condition, "message")``: a spec's own statement of what its parameters should
        satisfy (DenseNet-BC's depth is 6n+4). A false condition is a warning, located at the
        statement, whose hint gives the values of the names the condition reads; the spec compiles."""
        call = stmt.call
        if stmt.body is not None or stmt.label or call.kwargs or len(call.args) != 2:
            raise SpecTypeError(
                "expect() takes a condition and a message", stmt.span, 'for example expect(depth % 2 == 0, "even")'
            )
        cond, message = (self.eval(a, env) for a in call.args)
        if not isinstance(cond, bool):
            raise SpecTypeError(f"expect() needs a condition, got {type_name(cond)}", call.args[0].span)
        if not isinstance(message, str):
            raise SpecTypeError(f"expect() needs a message string, got {type_name(message)}", call.args[1].span)
        if cond:
            return
        names = dict.fromkeys(n.name for n in _walk(call.args[0]) if isinstance(n, ast.Var))
        values = [f"{n} = {fmt_value(v)}" for n in names for found, v in [env.lookup(n)] if found]
        warning = SpecWarning(message, call.args[0].span, "with " + ", ".join(values) if values else None)
        if all((w.message, w.span) != (warning.message, warning.span) for w in self.graph.graph["warnings"]):
            self.graph.graph["warnings"].append(warning)  # once, even in a loop or a repeated unit

    def _s_output(self, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
        """``output(a, b, ...)``: the network's outputs, named after the labels, in this order
        (the exact rules are in docs/language.md, "Outputs")."""
        call = stmt.call
        if not isinstance(scope, NetworkScope):
            raise SpecValueError(
                "output(...) declares the network's outputs: it belongs in the network body",
                stmt.span,
                "label the tensors (box: conv(...)) and name them in one output(...) at the end of the network",
            )
        if stmt.label or stmt.body is not None:
            raise SpecTypeError("output() takes labelled tensors only; it has no label and no body", stmt.span)
        if self.outputs is not None:
            raise SpecNameError(
                "the network's outputs are declared twice",
                stmt.span,
                f"they are first declared at {self.outputs_span}; name every output in one output(...)",
            )
        if call.kwargs:
            raise SpecTypeError(
                "output() takes labels, not keyword arguments",
                call.kwargs[0].span,
                "name the tensor by its label: box: conv(...) then output(box)",
            )
        if not call.args:
            raise SpecTypeError(
                "output() needs at least one labelled tensor", stmt.span, "for example output(cls, box)"
            )
        found: dict[str, str] = {}  # node -> name
        pairs: list[tuple[str, str]] = []
        for a in call.args:
            v = self.eval(a, env)
            if not isinstance(v, TensorRef) or not isinstance(a, ast.Var):
                raise SpecTypeError(
                    f"output() takes labels, got {type_name(v)} {fmt_value(v)}",
                    a.span,
                    "label a statement (box: conv(...)) and name it in output(...)",
                )
            if v.label == "input":
                raise SpecValueError(
                    "the network input cannot be an output", a.span, "an output is a tensor the network computes"
                )
            if any(name == v.label for name, _ in pairs):
                raise SpecNameError(f"'{v.label}' is named twice in output(...)", a.span, "name each output once")
            if v.node in found:
                raise SpecValueError(
                    f"outputs '{found[v.node]}' and '{v.label}' are the same tensor",
                    a.span,
                    "each output is a tensor of its own; drop one of the names",
                )
            found[v.node] = v.label
            pairs.append((v.label, v.node))
        self.outputs, self.outputs_span = tuple(pairs), stmt.span

    def _s_use(self, stmt, scope, env):
        refs = self._tensor_args(stmt, env)
        if len(refs) != 1 or stmt.body is not None or stmt.label:
            raise SpecTypeError("use() takes exactly one labelled tensor", stmt.span)
        scope.current = refs[0]

    def _merge(self, stmt, scope, env, kind):
        refs = self._tensor_args(stmt, env)
        if stmt.body is not None:
            raise SpecTypeError(f"'{kind}' takes no body", stmt.span)
        if not refs:
            raise SpecTypeError(f"{kind}() needs at least one labelled tensor", stmt.span)
        inputs = refs if len(refs) > 1 else [self._need_current(scope, stmt.span)] + refs
        if kind == "mul" and len(inputs) != 2:
            raise SpecTypeError("mul() multiplies exactly two tensors", stmt.span)
        name = scope.claim(stmt.label, stmt.span) if stmt.label else scope.fresh(kind)
        node = self.add(scope.id(name), kind, tuple(inputs), {}, stmt.span)
        if stmt.label:
            scope.labels[stmt.label] = node
        scope.current = node

    def _s_add(self, stmt, scope, env):
        self._merge(stmt, scope, env, "add")

    def _s_mul(self, stmt, scope, env):
        self._merge(stmt, scope, env, "mul")

    def _s_concat(self, stmt, scope, env):
        self._merge(stmt, scope, env, "concat")

    def _need_body(self, stmt):
        if stmt.body is None:
            raise SpecTypeError(f"'{stmt.call.name}' needs a body {{ ... }}", stmt.span)
        return stmt.body

    def _s_repeat(self, stmt, scope, env):
        body = self._need_body(stmt)
        b = self.bind(stmt.call, ["n"], env, "repeat()")
        if "n" not in b:
            raise SpecTypeError("repeat() needs a count", stmt.call.span)
        n = self.check(Arg("n", "int>=0"), *b["n"], "repeat()")
        self._charge_iterations(n, stmt.span)
        for _ in range(n):
            self.body(body, scope, env.child())

    def _s_residual(self, stmt, scope, env):
        body = self._need_body(stmt)
        self.bind(stmt.call, [], env, "residual")
        cur = self._need_current(scope, stmt.span)
        name = scope.claim(stmt.label, stmt.span) if stmt.label else scope.fresh("residual")
        sub = Scope(scope.id(name), cur)
        sub.streams = scope.streams
        self.body(body, sub, env.child())
        node = self.add(sub.id("add"), "add", (sub.current, cur), {}, stmt.span)
        scope.current = node
        if stmt.label:
            scope.labels[stmt.label] = node

    def _s_stream(self, stmt, scope, env):
        streams.s_stream(self, stmt, scope, env)

    def _s_branch(self, stmt, scope, env):
        raise SpecValueError("'branch' may only appear directly inside parallel(...) { }", stmt.span)

    def _s_parallel(self, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
        body = self._need_body(stmt)
        b = self.bind(stmt.call, ["mode"], env, "parallel()")
        mode = b.get("mode", ("concat", stmt.span))
        if mode[0] not in ("add", "mul", "concat"):
            raise SpecValueError(f"parallel() mode must be add, mul or concat, got {fmt_value(mode[0])}", mode[1])
        cur = self._need_current(scope, stmt.span)
        name = scope.claim(stmt.label, stmt.span) if stmt.label else scope.fresh("parallel")
        pscope = Scope(scope.id(name), cur)
        outs: list[str] = []

        def visit(stmts, penv):
            for s in stmts:
                if isinstance(s, ast.OpStmt) and s.call.name == "branch":
                    bbody = self._need_body(s)
                    self.bind(s.call, [], penv, "branch")
                    if s.label:
                        check_label(s.label, s.span)
                    bname = pscope.claim(s.label, s.span) if s.label else pscope.fresh("branch")
                    bscope = Scope(pscope.id(bname), cur)
                    bscope.streams = scope.streams
                    self.body(bbody, bscope, penv.child())
                    outs.append(bscope.current)
                elif isinstance(s, ast.Let):
                    self.stmt(s, pscope, penv)
                elif isinstance(s, ast.For):
                    for v in self._loop_items(s, penv):
                        visit(s.body, penv.child({s.var: v}))
                else:
                    raise SpecValueError("parallel(...) { } holds only branch { } statements", s.span)

        visit(body, env.child())
        if len(outs) < 2:
            raise SpecValueError(f"parallel() needs at least two branches, got {len(outs)}", stmt.span)
        if mode[0] == "mul" and len(outs) != 2:
            raise SpecValueError("parallel(mul) multiplies exactly two branches", stmt.span)
        node = self.add(pscope.id(mode[0]), mode[0], tuple(outs), {}, stmt.span)
        scope.current = node
        if stmt.label:
            scope.labels[stmt.label] = node

    # ---- blocks
    def _s_block(self, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
        self._need_body(stmt)  # refuses a block without one early; the builders below read stmt.body
        call = stmt.call
        pos = [(self.eval(a, env), a.span) for a in call.args]
        opts: dict[str, tuple[object, Span]] = {}
        for v, sp in pos:
            key = "connect" if isinstance(v, P.PATTERN_TYPES) else "units"
            if key in opts:
                raise SpecTypeError("block() takes a unit count and a pattern; pass other options by name", sp)
            opts[key] = (v, sp)
        names = ("units", "connect", "output", "aggregate", "width", "order", "stage", "bypass", "stream")
        for kw in call.kwargs:
            if kw.name not in names:
                raise SpecTypeError(
                    f"block() has no argument '{kw.name}'",
                    kw.span,
                    did_you_mean(kw.name, names) or "its arguments are: " + ", ".join(names),
                )
            if kw.name in opts:
                raise SpecTypeError(f"block() got '{kw.name}' twice", kw.span)
            if kw.name == "stream":  # stream names, not values: a stream may start in the block
                carried = streams.block_streams(self, kw.value, scope, env, kw.span)
                if carried:  # stream=none carries none
                    opts[kw.name] = (carried, kw.span)
                continue
            opts[kw.name] = (self.eval(kw.value, env), kw.span)
        pattern, psp = opts.get("connect", (P.Dense(), call.span))
        if not isinstance(pattern, P.PATTERN_TYPES):
            raise SpecTypeError(
                f"block() 'connect' must be a pattern, got {type_name(pattern)}",
                psp,
                "patterns: dense, path(far=a, near=b), window(g), split(scale=s), rule(expr), "
                "graph(ws(n, k, p), seed=s)",
            )
        cur = self._need_current(scope, stmt.span)
        name = scope.claim(stmt.label, stmt.span) if stmt.label else scope.fresh("block")
        bscope = Scope(scope.id(name), cur)
        bscope.streams = scope.streams  # a block hands on the streams it carries
        start = len(self._created)
        if isinstance(pattern, P.Split):
            if "stream" in opts:
                raise SpecTypeError(
                    "a split block carries no stream",
                    opts["stream"][1],
                    "stream= is for dense, path, window and rule blocks",
                )
            for bad in ("units", "output", "aggregate", "width", "order"):
                if bad in opts:
                    raise SpecTypeError(f"a split block has no '{bad}': its units are its scale", opts[bad][1])
            info = self._split_block(stmt, bscope, env, pattern, opts)
        else:
            for bad in ("stage", "bypass"):
                if bad in opts:
                    raise SpecTypeError(f"'{bad}' belongs to split blocks", opts[bad][1])
            info = self._pattern_block(stmt, bscope, env, pattern, psp, opts)
        self._tag_block(start, bscope.path)
        self.graph.graph["blocks"].append(info)
        scope.current = info.output
        if stmt.label:
            scope.labels[stmt.label] = info.output

    def _unit_body(self, body, uscope: Scope, env: Env) -> str | None:
        """Lower one unit's body; returns the template it instantiates when the body is one
        template call (the generated class is named after it), else None."""
        # A unit that is one template call names its ops directly under the unit
        # (block1.unit3.conv1, not block1.unit3.bottleneck1.conv1).
        if (
            len(body) == 1
            and isinstance(body[0], ast.OpStmt)
            and body[0].label is None
            and body[0].body is None
            and body[0].call.name in self.templates
            and env.lookup(body[0].call.name)[0] is False
        ):
            prev, self.scope = self.scope, uscope
            try:
                self._template(body[0].call, env, uscope, None, inline=uscope)
            except NetdslError as err:
                err.with_span(body[0].span)
                raise
            finally:
                self.scope = prev
            return str(body[0].call.name)
        self.body(body, uscope, env)
        return None

    def _gather(self, feats: list[tuple[str, int | None, int | None]], prefix: str, kind: str, span, role: str) -> str:
        """One tensor holding ``feats`` in order: the feature itself, a slice, or a concat/add node."""
        shape = self.shape
        pieces = []
        # a whole feature (start None) is never merged: it has a node of its own
        for k, (node, start, stop) in enumerate(merge_runs(feats)):
            if start is None or (start == 0 and stop == shape(node)[0]):
                pieces.append(node)
            else:
                sid = f"{prefix}.slice{k + 1}"
                pieces.append(self.add(sid, "slice", (node,), {"start": start, "stop": stop}, span, role="feature"))
        if len(pieces) == 1:
            return pieces[0]
        name = {"concat": "cat", "wsum": "wsum", "mean": "mean"}.get(kind, "sum")
        return self.add(f"{prefix}.{name}", kind, tuple(pieces), {}, span, role=role)

    def _probe_width(self, body, env: Env, in_node: str) -> int:
        key, keep = _probe_key(body, self.shape(in_node), env)
        if key in self.probe_cache:
            return self.probe_cache[key][0]
        width = self._probe(body, env, in_node)
        self.probe_cache[key] = (width, keep)  # keep: the objects whose ids are in the key stay alive
        return width

    def _probe(self, body, env: Env, in_node: str) -> int:
        probe = Lowerer(self.templates, self.limits)
        probe.probe_cache = self.probe_cache
        # The probe continues this lowering's nesting: it must see the same template stack (or a
        # template holding a window block of itself would probe forever) and the same depth.
        probe.state.template_stack = list(self.state.template_stack)
        probe.state.depth = self.state.depth
        add_op(probe.graph, "probe", "input", (), {"shape": self.shape(in_node)}, shape=self.shape(in_node))
        pscope = Scope("probe_unit", "probe")
        # unit 1 stands for every unit: window blocks take one group width (reads: a window of one)
        probe._unit_body(body, pscope, env.child({"unit": 1, "reads": 1, "source": True}))
        return probe.shape(pscope.current_node)[0]

    def _pattern_block(self, stmt, bscope: Scope, env, pattern, psp, opts: dict[str, tuple[Any, Span]]) -> BlockInfo:
        if isinstance(pattern, P.Graph):
            self._graph_options(pattern, psp, opts)
        if "units" not in opts:
            raise SpecTypeError(
                "block() needs the number of units", stmt.call.span, "for example block(16, dense) { ... }"
            )
        units = self.check(Arg("units", "int>=1"), *opts["units"], "block()")
        self._charge_layers(units, opts["units"][1])
        output, osp = opts.get("output", ("all", stmt.span))
        if not isinstance(output, P.Rule) and output not in ("all", "new", "last", "next", "sinks", "mean"):
            raise SpecValueError(
                f"block() output must be all, new, last, next, sinks, mean or rule(expr), got {fmt_value(output)}",
                osp,
                "output=rule(j % 2 == 1 or j == i - 1) keeps the features a further unit i = L + 1 would read",
            )
        kind, asp = opts.get("aggregate", ("concat", stmt.span))
        if kind not in ("concat", "add", "wsum"):
            raise SpecValueError(
                f"block() aggregate must be concat, add or wsum, got {fmt_value(kind)}",
                asp,
                "wsum: a sum weighted by learnable sigmoid(w) per input (RandWire)",
            )
        order, orsp = opts.get("order", ("ascending", stmt.span))
        if order not in ("ascending", "descending"):
            raise SpecValueError(
                f"block() order must be ascending or descending, got {fmt_value(order)}",
                orsp,
                "ascending concatenates x_0 first (the default); descending the nearest feature first",
            )
        x0 = bscope.input
        assert x0 is not None  # _s_block opens the block's scope at its input
        c0 = self.shape(x0)[0]
        feats: dict[int, tuple] = {}
        first = 0
        # A window block, or any block given width=, sees its input as groups of the unit width
        # (SparseNet's reference code drops k-channel groups of the block input as it drops features).
        if isinstance(pattern, P.Window) or "width" in opts:
            if "width" in opts:
                width = self.check(Arg("width", "int>=1"), *opts["width"], "block()")
            elif "stream" in opts:
                raise SpecTypeError(
                    "a window block that carries a stream needs width=",
                    opts["stream"][1],
                    "pass the unit width: block(L, window(g), width=w, stream=...)",
                )
            else:
                width = self._probe_width(stmt.body, env, x0)
            if c0 % width:
                raise SpecValueError(
                    f"window blocks and blocks given width= split their input into groups of {width} channels, "
                    f"but the input has {c0} channels",
                    psp,
                    f"make the input a multiple of {width} channels, or pass width= to block()",
                )
            groups = c0 // width
            first = 1 - groups
            for g in range(groups):
                feats[first + g] = (x0, g * width, (g + 1) * width)
        else:
            feats[0] = (x0, None, None)
        self._check_path(pattern, units - first, psp)
        all_reads = self._block_reads(pattern, units, first, psp)
        carried, ssp = opts.get("stream", ([], stmt.span))
        streams.check_widths(self, carried, units, ssp)
        pieces: list[list[str]] = []
        unit_infos = []
        for i in range(1, units + 1):
            reads = all_reads[i - 1]
            if not reads:
                raise SpecValueError(
                    f"unit {i} of the block reads no feature",
                    psp,
                    "a rule must select at least one j in 0..i-1 for every unit i",
                )
            prefix = bscope.id(f"unit{i}")
            start = len(self._created)
            in_order = reads[::-1] if order == "descending" else reads
            agg = self._gather([feats[j] for j in in_order], prefix, kind, stmt.span, "aggregate")
            uscope = Scope(prefix, agg)
            bscope.used.add(f"unit{i}")
            streams.open_unit(self, uscope, bscope, carried, i, units, ssp)
            template = self._unit_body(
                stmt.body, uscope, env.child({"unit": i, "reads": len(reads), "source": reads[0] <= 0})
            )
            pieces.append(streams.close_unit(uscope, carried, i, stmt.span))
            out = uscope.current_node
            if kind == "add" and self.shape(out) != self.shape(agg):
                raise ShapeError(
                    f"in an add block every unit must keep the shape: unit {i} maps "
                    f"{fmt_shape(self.shape(agg))} to {fmt_shape(self.shape(out))}",
                    stmt.span,
                )
            feats[i] = (out, None, None)
            self._tag_unit(start, prefix, bscope.path, i)
            unit_infos.append(
                UnitInfo(i, prefix, reads, agg, out, template=template, nodes=tuple(self._created[start:]))
            )
        # "next": the features a further unit would read -- a sparse block's output (SparseNet, Zhu et al.);
        # a rule: the features it selects for that further unit i = L + 1 (HarDNet: the odd units and the last).
        sel: Sequence[int]
        if isinstance(output, P.Rule):
            sel = P.connections(output, units + 1, first)
            if not sel:
                raise SpecValueError(
                    f"output={output} selects no feature of the block",
                    osp,
                    f"the rule is tested with i = {units + 1} (the units plus one) and j = {first}..{units}",
                )
        elif output in ("sinks", "mean"):  # the units no unit reads (RandWire's output nodes)
            read = {j for r in all_reads for j in r}
            sel = [j for j in range(1, units + 1) if j not in read]
        else:
            sel = {
                "all": range(first, units + 1),
                "new": range(1, units + 1),
                "last": range(units, units + 1),
                "next": P.connections(pattern, units + 1, first),
            }[output]
        out_kind = "mean" if output == "mean" else kind
        out_node = self._gather([feats[j] for j in sel], bscope.path, out_kind, stmt.span, "block_output")
        stream_infos = streams.close_block(self, bscope, carried, pieces, ssp) if carried else ()
        features = tuple(Feature(j, n, s, e) for j, (n, s, e) in sorted(feats.items()))
        mode = str(output)  # all, new, last, next or the rule's text
        return BlockInfo(
            bscope.path,
            str(pattern),
            kind,
            mode,
            x0,
            features,
            tuple(unit_infos),
            out_node,
            stmt.span,
            tuple(sel),
            str(order),
            stream_infos,
        )

    def _graph_options(self, pattern: P.Graph, psp: Span, opts: dict[str, tuple[Any, Span]]) -> None:
        """A graph block's units are its generator's nodes: ``units`` may be left out, and must equal
        n when given; its block input is read whole (no ``width=``), and no further unit exists to
        say what ``output=next`` would read."""
        n = pattern.nodes
        if "units" not in opts:
            opts["units"] = (n, psp)
        elif opts["units"][0] != n:
            raise SpecValueError(
                f"block() has {fmt_value(opts['units'][0])} units but {pattern} has {n} nodes",
                opts["units"][1],
                "a graph block has one unit per node: leave the unit count out, block(graph(...)) { ... }",
            )
        if "width" in opts:
            raise SpecTypeError(
                "a graph block reads its input whole: it takes no 'width='",
                opts["width"][1],
                "width= splits the block input into groups for window and path blocks; leave it out here",
            )
        if opts.get("output", ("all",))[0] == "next":
            raise SpecValueError(
                "output=next is what a further unit would read, and a graph has no further node",
                opts["output"][1],
                "output=mean averages the units no unit reads (RandWire); output=sinks joins them",
            )

    def _charge_layers(self, units: int, span: Span) -> None:
        lim = self.limits.max_layers
        self.state.layers += units
        if self.state.layers > lim:
            raise _over(
                self.limits,
                "max_layers",
                f"the network would have more than {lim:,} layers (block units; this block: {units:,})",
                span,
            )

    def _block_reads(self, pattern, units: int, first: int, span: Span) -> list[tuple[int, ...]]:
        """What every unit of a block reads, computed and charged to the edge budget before any
        unit is built: a dense block's edges grow as units**2, so the budget must see them first."""
        budget = self.limits.max_edges - self.state.edges
        if isinstance(pattern, P.Rule):  # the rule is tested on every (i, j) pair: bound that work too
            pairs = units * (units + 1) // 2 - units * first
            if pairs > budget:
                raise _over(
                    self.limits,
                    "max_edges",
                    f"{pattern} tests {pairs:,} candidate connections in a "
                    f"block of {units:,} units, more than the {budget:,} edges left",
                    span,
                )
        elif isinstance(pattern, P.Graph):  # the generator's own work, charged before networkx runs
            pairs = G.work(pattern.generator, pattern.args)
            if pairs > budget:
                raise _over(
                    self.limits,
                    "max_edges",
                    f"{pattern} visits up to {pairs:,} node pairs, more than the {budget:,} edges left",
                    span,
                )
        elif isinstance(pattern, P.Dense):
            edges = units * (units + 1) // 2 - units * first  # upper bound of the gathers' inputs
            if edges > budget:
                raise _over(
                    self.limits,
                    "max_edges",
                    f"a dense block of {units:,} units has about {edges:,} "
                    f"connections, more than the {budget:,} edges left",
                    span,
                )
        reads = [P.connections(pattern, i, first) for i in range(1, units + 1)]
        edges = sum(len(r) for r in reads if len(r) > 1)
        if edges > budget:
            raise _over(
                self.limits,
                "max_edges",
                f"the block of {units:,} units has about {edges:,} connections, more than the {budget:,} edges left",
                span,
            )
        return reads

    def _check_path(self, pattern, features: int, span: Span) -> None:
        """A path longer than the block is legal -- SparseNet V1 uses path 14 in blocks of 8 units,
        whose units then read all their predecessors, and one far/near pair is shared by blocks of
        different sizes -- but far or near ALONE exceeding every feature the block will ever hold
        (``features``: the block input's groups plus its units) asks for something that does not
        exist: warn, naming the block."""
        if isinstance(pattern, P.Path) and max(pattern.far, pattern.near) > features:
            self.graph.graph["warnings"].append(
                SpecWarning(
                    f"{pattern} is longer than the block: its units have at most {features} features to "
                    "read, so every unit reads all its predecessors (the block is dense)",
                    span,
                    f"far and near are each at most {features} here; write 'dense' if dense is meant",
                )
            )

    def _tag_unit(self, start: int, prefix: str, block: str, unit: int) -> None:
        """Mark the nodes of unit ``prefix`` (all created since ``start``) with their block and unit.
        A node of a block nested in the unit keeps its inner block's marks (that block ended first
        and tagged its nodes); every node remembers its outermost unit for :meth:`tag_membership`.
        Linear in the unit's size, not the graph's."""
        nodes = self.graph.nodes
        parents = self.graph.graph.setdefault("block_parents", {})
        for node in self._created[start:]:
            d = nodes[node]
            if "block" not in d:
                d["block"], d["unit"] = block, unit
            elif d["block"] != block:  # a block nested in this unit: the first unit to see it holds it
                parents.setdefault(d["block"], (block, unit))
            self._outer_unit[node] = (block, prefix)

    def _tag_block(self, start: int, block: str) -> None:
        """The block's own ops outside its units (split subsets, bypass, output gather): ``block``."""
        nodes = self.graph.nodes
        for node in self._created[start:]:
            nodes[node].setdefault("block", block)

    def tag_membership(self, network: NetworkScope) -> None:
        """Write ``stage`` and ``layer`` on every node (the contract in :mod:`netdsl.ir.ops`)."""
        marks = network.stages + [(len(self._created), "")]
        nodes = self.graph.nodes
        for (first, stage), (end, _) in pairwise(marks):
            for node in self._created[first:end]:
                d = nodes[node]
                d["stage"] = stage
                outer = self._outer_unit.get(node)
                d["layer"] = outer[1] if outer is not None and outer[0] == stage else stage

    def _split_block(self, stmt, bscope: Scope, env, pattern: P.Split, opts: dict[str, tuple[Any, Span]]) -> BlockInfo:
        s = pattern.scale
        self._charge_layers(s - 1, opts["connect"][1])
        x0 = bscope.input
        assert x0 is not None  # _s_block opens the block's scope at its input
        shape = self.shape(x0)
        c = shape[0]
        if c % s:
            divisors = [d for d in range(2, min(c, 64) + 1) if c % d == 0]
            raise SpecValueError(
                f"split scale {s} does not divide the width {c}",
                opts["connect"][1],
                f"scales that divide {c}: {', '.join(map(str, divisors)) or 'none'}",
            )
        stage = opts.get("stage", (False, None))
        if not isinstance(stage[0], bool):
            raise SpecTypeError("block() 'stage' must be true or false", stage[1])
        hierarchical = not stage[0]
        w = c // s
        xs = {}
        for i in range(1, s + 1):
            xs[i] = self.add(
                bscope.id(f"x{i}"),
                "slice",
                (x0,),
                {"start": (i - 1) * w, "stop": i * w},
                stmt.span,
                role="feature",
                block=bscope.path,
            )
            bscope.used.add(f"x{i}")
        y1 = xs[1]
        if "bypass" in opts:
            bv, bsp = opts["bypass"]
            if not isinstance(bv, OpValue):
                raise SpecTypeError(
                    f"block() 'bypass' must be an op such as avgpool(3, 2, pad=1), got {type_name(bv)}", bsp
                )
            byscope = Scope(bscope.id("bypass"), xs[1])
            bscope.used.add("bypass")
            prev, self.scope = self.scope, byscope
            try:
                self.apply_call(bv.call, bv.env, byscope, None)
            finally:
                self.scope = prev
            y1 = byscope.current_node
        ys = {1: y1}
        units = []
        for i in range(2, s + 1):
            prefix = bscope.id(f"unit{i}")
            bscope.used.add(f"unit{i}")
            start = len(self._created)
            reads: tuple[int, ...]
            if hierarchical and i > 2:
                agg = self.add(f"{prefix}.sum", "add", (xs[i], ys[i - 1]), {}, stmt.span, role="aggregate")
                reads = (i - s, i - 1)
            else:
                agg, reads = xs[i], (i - s,)
            uscope = Scope(prefix, agg)
            template = self._unit_body(stmt.body, uscope, env.child({"unit": i, "reads": len(reads)}))
            ys[i] = uscope.current_node
            self._tag_unit(start, prefix, bscope.path, i)
            units.append(UnitInfo(i, prefix, reads, agg, ys[i], template=template, nodes=tuple(self._created[start:])))
        y1_shape, unit_shape = self.shape(ys[1]), self.shape(ys[2])
        if "bypass" not in opts and y1_shape[1:] != unit_shape[1:]:
            raise ShapeError(
                f"split block: y1 = x1 stays {fmt_shape(y1_shape)} but the units make {fmt_shape(unit_shape)}",
                opts["connect"][1],
                "y1 skips the units: give the block a bypass that resizes it like them, e.g. "
                "bypass=avgpool(3, 2, pad=1) for stride-2 units (Res2Net's stage blocks)",
            )
        out = self.add(
            bscope.id("cat"), "concat", tuple(ys[i] for i in range(1, s + 1)), {}, stmt.span, role="block_output"
        )
        features = tuple(
            [Feature(i - s, xs[i]) for i in range(1, s + 1)] + [Feature(i, ys[i]) for i in range(1, s + 1)]
        )
        return BlockInfo(bscope.path, str(pattern), "split", "all", x0, features, tuple(units), out, stmt.span)


def _probe_key(body, shape: tuple, env: Env) -> tuple[tuple, list]:
    """What a unit body's output width can depend on: the body, its input shape and every
    variable it can see. Values without a stable equality (ops, rules) are keyed by identity,
    and returned in ``keep`` so that identity stays theirs while the cache lives."""
    keep: list = [body]
    seen: dict[str, object] = {}
    e: Env | None = env
    while e is not None:
        for name, value in e.vars.items():
            if name not in seen:
                seen[name] = _freeze(value, keep)
        e = e.parent
    return (id(body), shape, tuple(sorted(seen.items()))), keep


def _freeze(value, keep: list):
    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if isinstance(value, list):
        return ("list", tuple(_freeze(v, keep) for v in value))
    if isinstance(value, (P.Dense, P.Path, P.Window, P.Split, TensorRef)):
        return value
    keep.append(value)
    return ("id", id(value))
