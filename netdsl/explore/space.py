"""The search space a spec declares: each network parameter's domain (``k=12 in 8..32 step 4``),
plus the command line's ``--space NAME=DOMAIN``.

A point of the space is the spec's syntax tree with every domain replaced by one value: a range by
a literal, a choice by one of its options (whose own domains are chosen in turn). So the point
evaluates, renders and reports errors exactly like hand-written values, located where the domain
is written. Optuna samples it define-by-run (:meth:`Space.sample`); a finite space can also be
listed (:meth:`Space.points`) for a dry run or a grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NetdslError, Span, SpecNameError, SpecTypeError, SpecValueError, SpecWarning, did_you_mean
from ..frontend import ast
from ..frontend.evaluate import Env, Evaluator, _source_text, fmt_value, type_name
from ..frontend.load import load_module
from ..frontend.parser import parse_domain
from ..ir import generators as G

# Positional argument names of the pattern functions (as the evaluator binds them), so a conditional
# parameter reads connect.path.far or connect.window.g rather than a position.
_POSITIONAL = {"path": ("n", "far", "near"), "window": ("g",), "split": ("scale",), "graph": ("generator", "seed")}
MAX_POINTS_LISTED = 10_000_000  # a finite space larger than this is sampled, never listed


def _positional_names(name: str) -> tuple[str, ...]:
    if name in _POSITIONAL:
        return _POSITIONAL[name]
    if name in G.GENERATORS:
        return tuple(G.GENERATORS[name].params)
    return ()


@dataclass(frozen=True)
class Point:
    """One point: each searched parameter's value as spec text (``path(far=3, near=5)``), and the
    flat Optuna parameters that chose it (conditional ones included)."""

    values: dict[str, str]
    params: dict[str, object] = field(default_factory=dict)

    def key(self) -> tuple:
        return tuple(sorted(self.values.items()))


@dataclass(frozen=True)
class ParamDomain:
    name: str
    domain: ast.Range | ast.Choice
    default: object  # the default's value (its type is the parameter's)
    declared: ast.Param


# A picker chooses one realization of a domain node: (node, its Optuna name) -> a literal or option.
Picker = Callable[[ast.Range | ast.Choice, str], ast.Expr]


class Space:
    """The domains of one spec's network (and ``--space`` additions) with their checks."""

    def __init__(self, spec: str | Path, extra: dict[str, str] | None = None, text: str | None = None):
        self.module, self.path = load_module(spec, text)
        if len(self.module.networks) != 1:
            raise SpecNameError("a spec file defines exactly one network", self.module.span)
        self.net = self.module.networks[0]
        self.text = self.module.span.text or ""
        self.evaluator = Evaluator()
        self.warnings: list[SpecWarning] = []
        self.unread: set[str] = set()  # searched parameters the body never reads (a warning each)
        domains: dict[str, ast.Range | ast.Choice] = {p.name: p.domain for p in self.net.params if p.domain}
        names = [p.name for p in self.net.params]
        for key, value in (extra or {}).items():
            if key not in names:
                raise SpecNameError(
                    f"network '{self.net.name}' has no parameter '{key}'",
                    Span("--space", 1, 1, 1, len(key) + 1, text=f"{key}={value}"),
                    did_you_mean(key, names) or "its parameters are: " + ", ".join(names),
                )
            domains[key] = parse_domain(value, f"--space {key}")
        env = Env()
        self.params: list[ParamDomain] = []
        for p in self.net.params:
            default = self.evaluator.eval(p.default, env) if p.default is not None else None
            env.vars[p.name] = default
            if p.name in domains:
                self.params.append(ParamDomain(p.name, domains[p.name], default, p))
        self._names: dict[int, str] = {}  # id(domain node) -> its Optuna parameter name
        for pd in self.params:
            self._name_domains(pd.domain, pd.name)
        self.check()

    # ---- naming: every range and choice gets the Optuna name its value is stored under
    def _name_domains(self, node: ast.Expr, name: str) -> None:
        if isinstance(node, ast.Range):
            self._names[id(node)] = name
        elif isinstance(node, ast.Choice):
            self._names[id(node)] = name
            heads = [o.name for o in node.options if isinstance(o, ast.Call)]
            for k, option in enumerate(node.options):
                if isinstance(option, ast.Call):
                    tag = option.name if heads.count(option.name) == 1 else f"{option.name}#{k + 1}"
                    self._name_call(option, f"{name}.{tag}")
                elif isinstance(option, ast.Range | ast.Choice):
                    raise SpecValueError(
                        "a choice's option is a value or a pattern, not another domain",
                        option.span,
                        "merge the ranges into one, or list the values: {1, 2, 4}",
                    )

    def _name_call(self, call: ast.Call, prefix: str) -> None:
        positional = _positional_names(call.name)
        args = [(positional[k] if k < len(positional) else f"arg{k + 1}", a) for k, a in enumerate(call.args)]
        args += [(kw.name, kw.value) for kw in call.kwargs]
        for argname, value in args:
            if isinstance(value, ast.Range | ast.Choice):
                self._name_domains(value, f"{prefix}.{argname}")
            elif isinstance(value, ast.Call):
                self._name_call(value, f"{prefix}.{value.name}")

    # ---- constants of a domain
    def _const(self, e: ast.Expr, what: str):
        try:
            v = self.evaluator.eval(e, Env())
        except SpecNameError as err:
            raise SpecValueError(
                "a domain's ends are constants, not names", e.span, "write numbers: 8..32 step 4"
            ) from err
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SpecTypeError(f"{what} of a range must be a number, got {type_name(v)} {fmt_value(v)}", e.span)
        return v

    def bounds(self, r: ast.Range) -> tuple[int | float, int | float, int | float | None, bool]:
        """(lo, hi, step, integer) of a range, checked."""
        lo, hi = self._const(r.lo, "the start"), self._const(r.hi, "the end")
        step = self._const(r.step, "the step") if r.step is not None else None
        integer = all(isinstance(v, int) for v in (lo, hi, step) if v is not None)
        if lo > hi:
            raise SpecValueError(
                f"empty range: {fmt_value(lo)} > {fmt_value(hi)}", r.span, "write lo..hi with lo <= hi"
            )
        if step is not None and step <= 0:
            raise SpecValueError(
                f"a range's step must be > 0, got {fmt_value(step)}", r.step.span if r.step else r.span
            )
        if r.log and lo <= 0:
            raise SpecValueError(
                f"a log-spaced range must start above 0, got {fmt_value(lo)}", r.lo.span, "for example 1e-4..1e-1 log"
            )
        return lo, hi, step, integer

    def values_of(self, r: ast.Range) -> list[int | float] | None:
        """Every value of a range, or None for a continuous one."""
        lo, hi, step, integer = self.bounds(r)
        if integer:
            return list(range(int(lo), int(hi) + 1, int(step or 1)))
        if step is None:
            return None
        count = math.floor((hi - lo) / step + 1e-9) + 1
        return [_tidy(lo + k * step) for k in range(count)]

    def labels(self, c: ast.Choice) -> list:
        """The categorical values Optuna stores for a choice's options: the literal itself for a
        number, bool or string, the option's text otherwise."""
        out = []
        heads = [o.name for o in c.options if isinstance(o, ast.Call)]
        for option in c.options:
            if isinstance(option, ast.Literal) and isinstance(option.value, int | float | str | bool):
                out.append(option.value)
            elif isinstance(option, ast.Call) and heads.count(option.name) == 1:
                out.append(option.name)  # a pattern by its name: connect=path, then connect.path.far
            else:
                out.append(_compact(_source_text(option)))
        for k, label in enumerate(out):
            if label in out[:k]:
                raise SpecValueError(f"the choice lists {label!r} twice", c.options[k].span)
        return out

    # ---- points
    def realize(self, node: ast.Expr, pick: Picker) -> ast.Expr:
        """``node`` with each domain replaced by ``pick``'s choice (recursively)."""
        if isinstance(node, ast.Range | ast.Choice):
            chosen = pick(node, self._names[id(node)])
            return self.realize(chosen, pick) if isinstance(node, ast.Choice) else chosen
        if isinstance(node, ast.Call) and (node.args or node.kwargs):
            args = tuple(self.realize(a, pick) for a in node.args)
            kwargs = tuple(dataclasses.replace(k, value=self.realize(k.value, pick)) for k in node.kwargs)
            return dataclasses.replace(node, args=args, kwargs=kwargs)
        return node

    def _point(self, pick: Picker, params: dict) -> Point:
        values = {}
        for pd in self.params:
            expr = self.realize(pd.domain, pick)
            values[pd.name] = render(expr)
        return Point(values, dict(params))

    def sample(self, trial) -> Point:
        """One point chosen by an Optuna trial (define-by-run: a pattern's own parameters are
        suggested only when the pattern is chosen)."""
        params: dict[str, object] = {}

        def pick(node, name):
            if isinstance(node, ast.Range):
                lo, hi, step, integer = self.bounds(node)
                if integer:
                    v = trial.suggest_int(name, int(lo), int(hi), step=int(step or 1), log=node.log)
                else:
                    v = _tidy(trial.suggest_float(name, float(lo), float(hi), step=step, log=node.log))
                params[name] = v
                return ast.Literal(node.span, v)
            labels = self.labels(node)
            label = trial.suggest_categorical(name, labels)
            params[name] = label
            return node.options[labels.index(label)]

        return self._point(pick, params)

    def size(self) -> int | None:
        """How many points the space has; None where a float range is continuous."""
        total = 1
        for pd in self.params:
            n = self._count(pd.domain)
            if n is None:
                return None
            total *= n
        return total

    def _count(self, node: ast.Expr) -> int | None:
        if isinstance(node, ast.Range):
            values = self.values_of(node)
            return None if values is None else len(values)
        if isinstance(node, ast.Choice):
            counts = [self._count(o) for o in node.options]
            return None if None in counts else sum(c for c in counts if c is not None)
        if isinstance(node, ast.Call):
            total = 1
            for a in (*node.args, *(k.value for k in node.kwargs)):
                n = self._count(a)
                if n is None:
                    return None
                total *= n
            return total
        return 1

    def points(self) -> Iterator[Point]:
        """Every point of a finite space, in a fixed order (the domains' own)."""
        if self.size() is None:
            raise SpecValueError("the space has a continuous float range: it can be sampled, not listed", None)
        for combo in itertools.product(*(list(self._options(pd.domain)) for pd in self.params)):
            values, params = {}, {}
            for pd, (expr, chosen) in zip(self.params, combo, strict=True):
                values[pd.name] = render(expr)
                params.update(chosen)
            yield Point(values, params)

    def _options(self, node: ast.Expr) -> Iterator[tuple[ast.Expr, dict]]:
        """Every realization of ``node`` with the Optuna parameters that choose it."""
        if isinstance(node, ast.Range):
            name = self._names[id(node)]
            for v in self.values_of(node) or ():
                yield ast.Literal(node.span, v), {name: v}
        elif isinstance(node, ast.Choice):
            name = self._names[id(node)]
            for label, option in zip(self.labels(node), node.options, strict=True):
                for expr, inner in self._options(option):
                    yield expr, {name: label, **inner}
        elif isinstance(node, ast.Call) and (node.args or node.kwargs):
            parts = [list(self._options(a)) for a in node.args]
            kw_parts = [list(self._options(k.value)) for k in node.kwargs]
            for combo in itertools.product(*parts, *kw_parts):
                args = tuple(e for e, _ in combo[: len(node.args)])
                kwargs = tuple(
                    dataclasses.replace(k, value=e)
                    for k, (e, _) in zip(node.kwargs, combo[len(node.args) :], strict=True)
                )
                chosen: dict = {}
                for _, c in combo:
                    chosen.update(c)
                yield dataclasses.replace(node, args=args, kwargs=kwargs), chosen
        else:
            yield node, {}

    # ---- checks (netdsl check, and before any search)
    def check(self) -> None:
        """Refuse a domain that cannot work (located); collect warnings in :attr:`warnings`."""
        read = _names_read(self.net)
        self.unread = {pd.name for pd in self.params if pd.name not in read}
        for pd in self.params:
            if pd.name not in read:
                self.warnings.append(
                    SpecWarning(
                        f"parameter '{pd.name}' has a search domain but the network never reads it",
                        pd.domain.span,
                        "every point would be the same network; remove the domain or use the parameter",
                    )
                )
            for corner in (0, -1):  # every range at its start, then at its end; each choice's options
                self._check_corner(pd, corner)

    def _check_corner(self, pd: ParamDomain, corner: int) -> None:
        options: list[int] = []

        def pick(node, name):
            if isinstance(node, ast.Range):
                lo, hi, _step, _integer = self.bounds(node)
                values = self.values_of(node)
                v = values[corner] if values else (lo if corner == 0 else hi)
                return ast.Literal(node.span, v)
            labels = self.labels(node)
            return node.options[options[0] % len(labels)] if options else node.options[corner]

        domain = pd.domain
        count = len(domain.options) if isinstance(domain, ast.Choice) else 1
        for k in range(count):
            options[:] = [k]
            expr = self.realize(domain, pick)
            value = self.evaluator.eval(expr, Env())
            if not _fits_type(pd.default, value):
                raise SpecTypeError(
                    f"parameter '{pd.name}' is {type_name(pd.default)} ({fmt_value(pd.default)} by default); "
                    f"this domain gives {type_name(value)} {fmt_value(value)}",
                    expr.span if isinstance(domain, ast.Choice) else domain.span,
                    f"'{pd.name}' is declared at {pd.declared.span}",
                )

    def describe(self) -> list[str]:
        """One line per searched parameter: name and domain as written."""
        return [f"{pd.name} in {_compact(_source_text(pd.domain))}" for pd in self.params]

    def signature(self) -> str:
        """What identifies this space in a study database: the network and its domains."""
        return self.net.name + ": " + "; ".join(self.describe())


def _tidy(v: float) -> float:
    """A float range's value without binary noise (0.30000000000000004 -> 0.3)."""
    return float(f"{v:.12g}")


def _compact(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _fits_type(default, value) -> bool:
    td, tv = type_name(default), type_name(value)
    return td == tv or (td == "float" and tv == "int") or td == "none"


def render(expr: ast.Expr) -> str:
    """Spec text of a realized expression (no domains left): what ``--set`` and the trial's spec take."""
    if isinstance(expr, ast.Literal):
        if isinstance(expr.value, float):
            return repr(expr.value)
        return fmt_value(expr.value)
    if isinstance(expr, ast.Var):
        return expr.name
    if isinstance(expr, ast.Call):
        parts = [render(a) for a in expr.args] + [f"{k.name}={render(k.value)}" for k in expr.kwargs]
        return f"{expr.name}({', '.join(parts)})"
    if isinstance(expr, ast.Range | ast.Choice):  # pragma: no cover - realize() leaves none
        raise NetdslError("internal: a domain was left in a point", expr.span)
    text = _compact(_source_text(expr))
    return f"({text})" if isinstance(expr, ast.BinOp | ast.UnaryOp) else text


def _names_read(net: ast.Network) -> set[str]:
    """Every name the network's body (and its parameters' defaults) reads."""
    names: set[str] = set()
    stack: list[object] = [*net.body, *(p.default for p in net.params if p.default is not None)]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Var):
            names.add(node.name)
        elif isinstance(node, tuple | list):
            stack.extend(node)
        elif dataclasses.is_dataclass(node):
            stack.extend(getattr(node, f.name) for f in dataclasses.fields(node) if f.name != "span")
    return names


def domain_warnings(spec: str | Path) -> list[SpecWarning]:
    """``netdsl check``: the domains of a spec checked (a located error raised), their warnings returned."""
    module, _ = load_module(spec)
    if len(module.networks) != 1 or not any(p.domain for p in module.networks[0].params):
        return []
    return Space(spec).warnings
