"""The statement interpreter: runs a network's statements (``let``, ``for``, ``if``, ops,
templates, the structural calls) against the current tensor of each scope. Blocks are
:mod:`.blocks`' and named streams :mod:`netdsl.frontend.streams`'."""

from __future__ import annotations

from collections.abc import Iterator

from ...errors import (
    LimitError,
    NetdslError,
    Span,
    SpecNameError,
    SpecTypeError,
    SpecValueError,
    SpecWarning,
    did_you_mean,
)
from ...naming import check_label
from .. import ast, streams
from ..builtins import OPS, REQUIRED, STRUCTURAL, Arg
from ..evaluate import Env, Evaluator, OpValue, TensorRef, fmt_value, type_name
from . import blocks
from .builder import GraphBuilder
from .limits import Limits
from .scope import NetworkScope, Scope


def _walk(e: ast.Node) -> Iterator[ast.Node]:
    """``e`` and every node inside it (each dataclass's own fields are its ``__slots__``)."""
    yield e
    for name in getattr(e, "__slots__", ()):
        child = getattr(e, name)
        for c in child if isinstance(child, tuple) else (child,):
            if isinstance(c, ast.Node):
                yield from _walk(c)


class Lowerer(GraphBuilder):
    """Lowers one network: the statement interpreter over a :class:`GraphBuilder`."""

    def __init__(self, templates: dict[str, ast.Template], limits: Limits | None = None):
        super().__init__(limits)
        self.templates = templates
        self.scope: Scope | None = None  # the scope of the statement being lowered (names resolve in it)
        # Unit widths found by probing, shared with the probes' own lowerers: nested window blocks
        # are probed once per distinct (body, input shape, visible variables), not once per level.
        self.probe_cache: dict = {}
        self.evaluator = Evaluator(self._resolve, self._is_op, self._extra_names)

    def fork(self) -> Lowerer:
        """A lowerer of its own graph that continues this lowering's nesting (a block's width
        probe): the same templates, limits and probe cache, the same template stack (or a template
        holding a window block of itself would probe forever) and the same depth."""
        sub = Lowerer(self.templates, self.limits)
        sub.probe_cache = self.probe_cache
        sub.state.template_stack = list(self.state.template_stack)
        sub.state.depth = self.state.depth
        return sub

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

    def loop_items(self, stmt: ast.For, env: Env) -> range | list:
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
        self.charge_iterations(len(items), stmt.span)
        return items

    def _for(self, stmt: ast.For, scope: Scope, env: Env) -> None:
        for v in self.loop_items(stmt, env):
            self.body(stmt.body, scope, env.child({stmt.var: v}))

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
            self.template(call, env, scope, label)
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
        cur = self.need_current(scope, call.span)
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
    def template(self, call: ast.Call, env: Env, scope: Scope, label: str | None, inline: Scope | None = None) -> None:
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
        cur = self.need_current(scope, call.span)
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
        inputs = refs if len(refs) > 1 else [self.need_current(scope, stmt.span)] + refs
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
        self.charge_iterations(n, stmt.span)
        for _ in range(n):
            self.body(body, scope, env.child())

    def _s_residual(self, stmt, scope, env):
        body = self._need_body(stmt)
        self.bind(stmt.call, [], env, "residual")
        cur = self.need_current(scope, stmt.span)
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

    def _s_block(self, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
        self._need_body(stmt)  # refuses a block without one early; the builders read stmt.body
        blocks.lower_block(self, stmt, scope, env)

    def _s_branch(self, stmt, scope, env):
        raise SpecValueError("'branch' may only appear directly inside parallel(...) { }", stmt.span)

    def _s_parallel(self, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
        body = self._need_body(stmt)
        b = self.bind(stmt.call, ["mode"], env, "parallel()")
        mode = b.get("mode", ("concat", stmt.span))
        if mode[0] not in ("add", "mul", "concat"):
            raise SpecValueError(f"parallel() mode must be add, mul or concat, got {fmt_value(mode[0])}", mode[1])
        cur = self.need_current(scope, stmt.span)
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
                    for v in self.loop_items(s, penv):
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
