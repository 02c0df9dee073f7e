"""A fast path for ``rule(...)`` predicates: the rule's AST turned into nested closures.

A rule block of L units tests its rule on L*(L+1)/2 pairs (i, j), so the interpreter's per-node
checks dominate lowering. Rules are small arithmetic over i, j and numbers, which this module
compiles into plain Python closures (no eval: a closure per AST node). Anything outside that
subset is not compiled; any value the interpreter would refuse or treat specially (a division by
zero, a number past 10**18, a variable whose type changed) makes the closure give up on that pair
(:class:`Fallback`), and the interpreter evaluates it -- so results and errors are the
interpreter's, only faster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeGuard

from . import ast

MAX_MAGNITUDE = 10**18
Fn = Callable[[int, int], Any]  # a spec value: bool or number, checked at run time


class Fallback(Exception):
    """This pair needs the interpreter."""


def _num(v) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bounded(r):
    if isinstance(r, bool) or not -MAX_MAGNITUDE <= r <= MAX_MAGNITUDE:  # NaN fails both comparisons
        raise Fallback
    return r


def _ispow2(n):
    return isinstance(n, int) and n > 0 and n & (n - 1) == 0


def _arith(op: str, a: Fn, b: Fn) -> Fn | None:
    if op == "+":
        return lambda i, j: _bounded(a(i, j) + b(i, j))
    if op == "-":
        return lambda i, j: _bounded(a(i, j) - b(i, j))
    if op == "*":
        return lambda i, j: _bounded(a(i, j) * b(i, j))
    if op in ("/", "//", "%"):

        def divide(i, j, _op=op):
            x, y = a(i, j), b(i, j)
            if y == 0:
                raise Fallback
            return _bounded(x / y if _op == "/" else x // y if _op == "//" else x % y)

        return divide
    if op == "**":

        def power(i, j):
            x, y = a(i, j), b(i, j)
            if abs(y) > 64 or (abs(x) > 1 and abs(y) * math.log2(abs(x)) > 62):
                raise Fallback
            return _bounded(x**y)

        return power
    return None


_COMPARE = {
    "<": lambda x, y: x < y,
    "<=": lambda x, y: x <= y,
    ">": lambda x, y: x > y,
    ">=": lambda x, y: x >= y,
    "==": lambda x, y: x == y,
    "!=": lambda x, y: x != y,
}
_UNARY_FUNCS: dict[str, Callable[[Any], Any]] = {
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "int": int,
    "float": float,
    "round": round,
}  # round() of a number is already an int


def compile_rule(expr: ast.Expr, lookup: Callable[[str], tuple[bool, object]]) -> Fn | None:
    """A closure computing ``expr`` over (i, j), or None when the expression is outside the subset.
    ``lookup`` finds the rule's other variables at call time (their types are checked each call)."""
    out = _compile(expr, lookup)
    if out is None:
        return None
    fn, kind = out
    if kind == "bool":
        return fn
    return lambda i, j: fn(i, j) != 0


def _compile(e, lookup) -> tuple[Fn, str] | None:
    if isinstance(e, ast.Literal):
        v = e.value
        if isinstance(v, bool):
            return (lambda i, j, _v=v: _v), "bool"
        if _num(v) and math.isfinite(v) and abs(v) <= MAX_MAGNITUDE:
            return (lambda i, j, _v=v: _v), "num"
        return None
    if isinstance(e, ast.Var):
        if e.name == "i":
            return (lambda i, j: i), "num"
        if e.name == "j":
            return (lambda i, j: j), "num"
        found, v = lookup(e.name)
        if not found or not (isinstance(v, bool) or _num(v)):
            return None
        want_bool = isinstance(v, bool)

        def var(i, j, _name=e.name):
            ok, value = lookup(_name)
            if not ok or isinstance(value, bool) != want_bool or not (want_bool or _num(value)):
                raise Fallback
            return value

        return var, ("bool" if want_bool else "num")
    if isinstance(e, ast.UnaryOp):
        inner = _compile(e.operand, lookup)
        if inner is None:
            return None
        f, kind = inner
        if e.op == "not":
            return (lambda i, j: not f(i, j)) if kind == "bool" else (lambda i, j: f(i, j) == 0), "bool"
        if kind != "num":
            return None
        return (lambda i, j: _bounded(-f(i, j))), "num"
    if isinstance(e, ast.BinOp):
        left, right = _compile(e.left, lookup), _compile(e.right, lookup)
        if left is None or right is None:
            return None
        (a, ka), (b, kb) = left, right
        if e.op in ("and", "or"):
            ta = a if ka == "bool" else (lambda i, j: a(i, j) != 0)
            tb = b if kb == "bool" else (lambda i, j: b(i, j) != 0)
            if e.op == "and":
                return (lambda i, j: ta(i, j) and tb(i, j)), "bool"
            return (lambda i, j: ta(i, j) or tb(i, j)), "bool"
        if ka != kb or (ka == "bool" and e.op not in ("==", "!=")):
            return None  # mixed or boolean arithmetic: the interpreter's type errors
        if e.op in _COMPARE:
            cmp = _COMPARE[e.op]
            return (lambda i, j: cmp(a(i, j), b(i, j))), "bool"
        fn = _arith(e.op, a, b)
        return None if fn is None else (fn, "num")
    if isinstance(e, ast.Call):
        if e.kwargs or lookup(e.name)[0]:
            return None
        args = [_compile(x, lookup) for x in e.args]
        if any(x is None or x[1] != "num" for x in args):
            return None
        fns = [x[0] for x in args if x is not None]  # none is None: checked above
        if e.name == "ispow2" and len(fns) == 1:
            f = fns[0]
            return (lambda i, j: _ispow2(f(i, j))), "bool"
        if e.name in _UNARY_FUNCS and len(fns) == 1:
            f, g = fns[0], _UNARY_FUNCS[e.name]
            return (lambda i, j: _bounded(g(f(i, j)))), "num"
        if e.name in ("min", "max") and len(fns) >= 2:
            pick = min if e.name == "min" else max
            return (lambda i, j: pick(f(i, j) for f in fns)), "num"
        return None
    return None
