"""Evaluation of spec expressions. Spec text is data: this is a small interpreter over the
AST, never Python's eval. Numbers are bounded so a hostile spec cannot hang it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import NetdslError, SpecNameError, SpecTypeError, SpecValueError, did_you_mean
from ..ir import generators as G
from ..ir import patterns as P
from . import ast
from .rule_compile import Fallback, compile_rule

MAX_MAGNITUDE = 10**18


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A labelled tensor in the current body (``h: bottleneck(k)`` then ``add(h)``)."""

    node: str
    label: str


@dataclass(frozen=True, slots=True)
class OpValue:
    """An op or template call used as a value (``bypass=avgpool(3, 2, pad=1)``), applied later."""

    call: ast.Call
    env: Env


class Env:
    """Lexical variables: a chain of dicts."""

    __slots__ = ("parent", "vars")

    def __init__(self, vars: dict | None = None, parent: Env | None = None):
        self.vars = dict(vars or {})
        self.parent = parent

    def lookup(self, name: str):
        env: Env | None = self
        while env is not None:
            if name in env.vars:
                return True, env.vars[name]
            env = env.parent
        return False, None

    def names(self) -> set[str]:
        out: set[str] = set()
        env: Env | None = self
        while env is not None:
            out |= set(env.vars)
            env = env.parent
        return out

    def child(self, vars: dict | None = None) -> Env:
        return Env(vars, self)


def type_name(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if v is None:
        return "none"
    if isinstance(v, P.PATTERN_TYPES):
        return "pattern"
    if isinstance(v, TensorRef):
        return "tensor"
    if isinstance(v, OpValue):
        return "op"
    return type(v).__name__


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bounded(v, span):
    if _num(v):
        if isinstance(v, float) and not math.isfinite(v):
            raise SpecValueError("number is not finite", span)
        if abs(v) > MAX_MAGNITUDE:
            raise SpecValueError(f"number too large (more than {MAX_MAGNITUDE:.0e})", span)
    return v


def _need_num(v, span, what="a number"):
    if not _num(v):
        raise SpecTypeError(f"expected {what}, got {type_name(v)} {fmt_value(v)}", span)
    return v


def _need_int(v, span, what="an integer"):
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecTypeError(f"expected {what}, got {type_name(v)} {fmt_value(v)}", span)
    return v


def fmt_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, list):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, TensorRef):
        return v.label
    if isinstance(v, OpValue):
        return v.call.name + "(...)"
    return str(v)


def _ispow2(n):
    return isinstance(n, int) and not isinstance(n, bool) and n > 0 and n & (n - 1) == 0


BUILTIN_FUNCS: dict[str, Callable] = {
    "floor": lambda x: math.floor(x),
    "ceil": lambda x: math.ceil(x),
    "int": lambda x: int(x),
    "round": lambda x: round(x),  # an int for every finite number
    "float": lambda x: float(x),
    "abs": abs,
    "min": min,
    "max": max,
    "ispow2": _ispow2,
}
PATTERN_FUNCS = ("path", "window", "split", "rule", "graph")
CONSTANTS = {
    "dense": P.Dense(),
    "all": "all",
    "new": "new",
    "last": "last",
    "next": "next",
    "ascending": "ascending",
    "descending": "descending",
    "concat": "concat",
    "add": "add",
    "mul": "mul",
    "wsum": "wsum",  # block(..., aggregate=wsum): RandWire's weighted sum
    "sinks": "sinks",  # block(..., output=sinks / mean): the units no unit reads
    "mean": "mean",
    "nearest": "nearest",  # upsample modes
    "bilinear": "bilinear",
}


class Evaluator:
    """Evaluates expressions; ``resolve(name)`` supplies names outside the environment
    (labelled tensors, ``channels``) and ``is_callable(name)`` tells which calls are ops."""

    def __init__(
        self,
        resolve: Callable[[str], tuple[bool, object]] | None = None,
        is_op: Callable[[str], bool] | None = None,
        extra_names: Callable[[], set[str]] | None = None,
    ):
        self.resolve = resolve or (lambda name: (False, None))
        self.is_op = is_op or (lambda name: False)
        self.extra_names = extra_names or (lambda: set())

    def eval(self, e: ast.Expr, env: Env):
        try:
            return self._eval(e, env)
        except NetdslError as err:
            err.with_span(e.span)
            raise
        except RecursionError:
            raise SpecValueError("expression nested too deeply", e.span) from None

    def _eval(self, e, env: Env):
        if isinstance(e, ast.Literal):
            return _bounded(e.value, e.span)
        if isinstance(e, ast.Var):
            return self._var(e, env)
        if isinstance(e, ast.ListExpr):
            return [self._eval(x, env) for x in e.items]
        if isinstance(e, ast.UnaryOp):
            v = self._eval(e.operand, env)
            if e.op == "not":
                return not self._truth(v, e.operand.span)
            return _bounded(-_need_num(v, e.operand.span), e.span)
        if isinstance(e, ast.BinOp):
            return self._binop(e, env)
        if isinstance(e, ast.Index):
            target = self._eval(e.target, env)
            idx = _need_int(self._eval(e.index, env), e.index.span, "an integer index")
            if not isinstance(target, list):
                raise SpecTypeError(f"only lists can be indexed, got {type_name(target)}", e.target.span)
            if not -len(target) <= idx < len(target):
                raise SpecValueError(
                    f"index {idx} is out of range for a list of {len(target)}",
                    e.index.span,
                    f"valid indices are 0..{len(target) - 1}" if target else "the list is empty",
                )
            return target[idx]
        if isinstance(e, ast.Call):
            return self._call(e, env)
        raise SpecTypeError(f"cannot evaluate {type(e).__name__}", e.span)  # pragma: no cover

    def _var(self, e: ast.Var, env: Env):
        found, v = env.lookup(e.name)
        if found:
            return v
        found, v = self.resolve(e.name)
        if found:
            return v
        if e.name in CONSTANTS:
            return CONSTANTS[e.name]
        names = env.names() | self.extra_names() | set(CONSTANTS)
        raise SpecNameError(f"unknown name '{e.name}'", e.span, did_you_mean(e.name, names))

    def _truth(self, v, span) -> bool:
        if isinstance(v, bool):
            return v
        if _num(v):
            return v != 0
        raise SpecTypeError(f"expected a condition, got {type_name(v)}", span)

    def _binop(self, e: ast.BinOp, env: Env):
        if e.op == "and":
            return self._truth(self._eval(e.left, env), e.left.span) and self._truth(
                self._eval(e.right, env), e.right.span
            )
        if e.op == "or":
            return self._truth(self._eval(e.left, env), e.left.span) or self._truth(
                self._eval(e.right, env), e.right.span
            )
        a, b = self._eval(e.left, env), self._eval(e.right, env)
        if e.op in ("==", "!="):
            eq = (a == b and type_name(a) == type_name(b)) or (_num(a) and _num(b) and a == b)
            return eq if e.op == "==" else not eq
        if e.op == "+" and isinstance(a, list) and isinstance(b, list):
            if len(a) + len(b) > 100_000:
                raise SpecValueError("list too long", e.span)
            return a + b
        _need_num(a, e.left.span)
        _need_num(b, e.right.span)
        if e.op in ("<", "<=", ">", ">="):
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[e.op]
        if e.op in ("/", "//", "%") and b == 0:
            raise SpecValueError("division by zero", e.right.span)
        if e.op == "**":
            if abs(b) > 64 or (abs(a) > 1 and abs(b) * math.log2(abs(a)) > 62):
                raise SpecValueError(f"number too large (more than {MAX_MAGNITUDE:.0e})", e.span)
            r = a**b
        else:
            r = {
                "+": lambda: a + b,
                "-": lambda: a - b,
                "*": lambda: a * b,
                "/": lambda: a / b,
                "//": lambda: a // b,
                "%": lambda: a % b,
            }[e.op]()
        return _bounded(r, e.span)

    def _call(self, e: ast.Call, env: Env):
        name = e.name
        if name == "rule":
            return self._rule(e, env)
        found, v = env.lookup(name)
        if found:
            raise SpecTypeError(f"'{name}' is a {type_name(v)}, not a function", e.name_span or e.span)
        if name in PATTERN_FUNCS:
            return self._pattern(e, env)
        if name in BUILTIN_FUNCS:
            if e.kwargs:
                raise SpecTypeError(f"{name}() takes no keyword arguments", e.kwargs[0].span)
            args = [self._eval(a, env) for a in e.args]
            if name in ("min", "max"):
                spans = [a.span for a in e.args]
                if len(args) == 1 and isinstance(args[0], list):  # min([a, b]): each item is checked at the list
                    args, spans = args[0], spans * len(args[0])
                if not args:
                    raise SpecTypeError(f"{name}() needs at least one value", e.span)
                for a, span in zip(args, spans, strict=True):
                    _need_num(a, span)
                return min(args) if name == "min" else max(args)
            if len(args) != 1:
                raise SpecTypeError(f"{name}() takes exactly one argument, got {len(args)}", e.span)
            if name != "ispow2":
                _need_num(args[0], e.args[0].span)
            return _bounded(BUILTIN_FUNCS[name](args[0]), e.span)
        if name == "len":
            args = [self._eval(a, env) for a in e.args]
            if len(args) != 1 or not isinstance(args[0], list):
                raise SpecTypeError("len() takes one list", e.span)
            return len(args[0])
        if self.is_op(name):
            return OpValue(e, env)
        known = set(BUILTIN_FUNCS) | set(PATTERN_FUNCS) | {"len"}
        raise SpecNameError(f"unknown function '{name}'", e.name_span or e.span, did_you_mean(name, known))

    def _kw(self, e: ast.Call, env: Env, names: tuple[str, ...]) -> dict:
        """Bind a pattern call's arguments by position then keyword."""
        if len(e.args) > len(names):
            raise SpecTypeError(f"{e.name}() takes at most {len(names)} arguments, got {len(e.args)}", e.span)
        out = {names[k]: (self._eval(a, env), a.span) for k, a in enumerate(e.args)}
        for kw in e.kwargs:
            if kw.name not in names:
                raise SpecTypeError(f"{e.name}() has no argument '{kw.name}'", kw.span, did_you_mean(kw.name, names))
            if kw.name in out:
                raise SpecTypeError(f"{e.name}() got '{kw.name}' twice", kw.span)
            out[kw.name] = (self._eval(kw.value, env), kw.span)
        return out

    def _pattern(self, e: ast.Call, env: Env):
        if e.name == "graph":
            return self._graph(e, env)
        if e.name == "path":
            a = self._kw(e, env, ("n", "far", "near"))
            if "n" in a:
                if "far" in a or "near" in a:
                    raise SpecTypeError("path() takes either a total n or far=/near=", e.span)
                n = _need_int(a["n"][0], a["n"][1])
                if n < 0:
                    raise SpecValueError(f"path total must be >= 0, got {n}", a["n"][1])
                return P.Path(far=n // 2, near=n - n // 2)
            far = _need_int(a.get("far", (0, e.span))[0], a.get("far", (0, e.span))[1])
            near = _need_int(a.get("near", (0, e.span))[0], a.get("near", (0, e.span))[1])
            if far < 0 or near < 0 or far + near < 1:
                raise SpecValueError(
                    f"path needs far >= 0, near >= 0 and far + near >= 1, got far={far}, near={near}", e.span
                )
            return P.Path(far=far, near=near)
        if e.name == "window":
            a = self._kw(e, env, ("g",))
            if "g" not in a:
                raise SpecTypeError("window() needs the window size g", e.span)
            g = _need_int(*a["g"])
            if g < 1:
                raise SpecValueError(
                    f"window size must be >= 1, got {g}", a["g"][1], "window(1) reads only the previous feature"
                )
            return P.Window(g)
        a = self._kw(e, env, ("scale",))
        if "scale" not in a:
            raise SpecTypeError("split() needs the scale s", e.span)
        s = _need_int(*a["scale"])
        if s < 2:
            raise SpecValueError(
                f"split scale must be >= 2, got {s}", a["scale"][1], "scale 1 is a plain unit; use it without a block"
            )
        return P.Split(s)

    def _graph(self, e: ast.Call, env: Env) -> P.Graph:
        """``graph(ws(n, k, p), seed=s)``: a generator call (only meaningful here, so its names are
        no builtins) and a required seed. The edges are drawn later, by lowering, once the work
        is charged to the budget."""
        if not e.args or not isinstance(e.args[0], ast.Call):
            raise SpecTypeError(
                "graph() needs a generator call and a seed",
                e.span,
                "for example graph(ws(32, 4, 0.75), seed=1); generators: " + ", ".join(G.GENERATORS),
            )
        gen_call = e.args[0]
        rest = ast.Call(e.span, e.name, e.args[1:], e.kwargs, e.name_span)
        a = self._kw(rest, env, ("seed",))
        gen = G.GENERATORS.get(gen_call.name)
        if gen is None:
            raise SpecNameError(
                f"unknown graph generator '{gen_call.name}'",
                gen_call.name_span or gen_call.span,
                did_you_mean(gen_call.name, G.GENERATORS)
                or "generators: " + "; ".join(f"{g.example}: {g.title}" for g in G.GENERATORS.values()),
            )
        ga = self._kw(gen_call, env, gen.params)
        for name in gen.params:
            if name not in ga:
                raise SpecTypeError(
                    f"{gen.name}() needs the argument '{name}'", gen_call.span, f"for example {gen.example}"
                )
        values: dict[str, int | float] = {}
        for name in gen.params:
            v, span = ga[name]
            values[name] = _need_num(v, span, "a probability") if name == "p" else _need_int(v, span)
        bad = G.check(gen.name, values)
        if bad is not None:
            arg, message, hint = bad
            raise SpecValueError(message, ga[arg][1], hint)
        if "seed" not in a:
            raise SpecTypeError(
                "graph() needs a seed", e.span, f"the seed fixes the network: graph({gen.example}, seed=1)"
            )
        seed = _need_int(*a["seed"])
        if seed < 0:
            raise SpecValueError(
                f"graph() seed must be >= 0, got {seed}", a["seed"][1], "any integer >= 0 fixes one network"
            )
        return P.Graph(gen.name, tuple(values[n] for n in gen.params), seed)

    def _rule(self, e: ast.Call, env: Env):
        if len(e.args) != 1 or e.kwargs:
            raise SpecTypeError("rule() takes one boolean expression over i and j", e.span)
        expr = e.args[0]
        text = _source_text(expr)

        def interpreted(i: int, j: int, _expr=expr, _env=env) -> bool:
            v = self.eval(_expr, _env.child({"i": i, "j": j}))
            return self._truth(v, _expr.span)

        interpreted(1, 0)  # an error in the rule is reported where the rule is written

        fast = compile_rule(expr, env.lookup)  # names outside the environment stay interpreted
        if fast is None:
            return P.Rule(text, interpreted)

        def predicate(i: int, j: int) -> bool:
            try:
                return fast(i, j)
            except Fallback:
                return interpreted(i, j)

        return P.Rule(text, predicate)


def _source_text(expr: ast.Node) -> str:
    span = expr.span
    if span.text is None or span.end_line is None or span.end_column is None:
        return "..."
    lines = span.text.splitlines()
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1 : span.end_column - 1]
    first = lines[span.line - 1][span.column - 1 :]
    return " ".join(
        [first]
        + [line.strip() for line in lines[span.line : span.end_line - 1]]
        + [lines[span.end_line - 1][: span.end_column - 1].strip()]
    )
