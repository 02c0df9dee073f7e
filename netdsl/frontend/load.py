"""Loading a spec: a file with its includes, a network chosen, parameters bound, lowered."""

from __future__ import annotations

import contextlib
import gc
import sys
from pathlib import Path

import networkx as nx

from ..errors import IncludeError, LimitError, NetdslError, Span, SpecNameError, SpecTypeError, did_you_mean
from ..naming import check_network_name
from . import ast
from .evaluate import Env, Evaluator, fmt_value, type_name
from .lower import Limits, Lowerer, NetworkScope
from .parser import parse, parse_expr
from .source import library_dirs, read_spec_text, resolve_include
from .streams import drop_unread as drop_unread_streams

__all__ = ["bind_params", "collect_templates", "library_dirs", "lower_spec", "parse_value"]

MAX_INCLUDE_DEPTH = 32
# Lowering recurses a few frames per statement level (Limits.max_statement_depth levels at most,
# plus expressions up to parser.MAX_EXPR_DEPTH); this much recursion is enough for the worst case.
LOWERING_RECURSION = 8000


@contextlib.contextmanager
def _stack_headroom():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, LOWERING_RECURSION))
    # Lowering allocates many long-lived objects (a node and edge dicts per connection); the cyclic
    # collector would rescan them again and again (block(2000, dense): 19 s with it, 5 s without).
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        sys.setrecursionlimit(old)
        if collecting:
            gc.enable()


def _name_span(net: ast.Network) -> Span:
    """The span of a network's name in its header (``network NAME(``), for messages about the name."""
    span = net.span
    lines = (span.text or "").splitlines()
    if 1 <= span.line <= len(lines):
        line = lines[span.line - 1]
        col = line.find(net.name, span.column - 1 + len("network"))
        if col >= 0:
            return Span(span.file, span.line, col + 1, span.line, col + 1 + len(net.name), text=span.text)
    return span


def collect_templates(
    module: ast.Module, path: Path, stack: tuple[Path, ...] = (), root_dir: Path | None = None
) -> dict[str, ast.Template]:
    """The templates of a module and, depth first, of everything it includes. Includes are
    confined to ``root_dir`` (the root spec's folder) and the bundled library (see source.py)."""
    templates: dict[str, ast.Template] = {}
    me = path.resolve() if path.exists() else path
    if root_dir is None:  # the folder the user named the root spec in (not a symlink's target folder)
        root_dir = path.absolute().parent.resolve()
    for inc in module.includes:
        target = resolve_include(inc.path, path, root_dir, inc.span)
        if target.resolve() == me or target.resolve() in stack:
            chain = " -> ".join(p.name for p in stack + (me, target))
            raise IncludeError(f"recursive include: {chain}", inc.span)
        if len(stack) >= MAX_INCLUDE_DEPTH:
            raise IncludeError("includes nested too deeply", inc.span)
        sub = parse(read_spec_text(target, inc.span, "include file"), str(target))
        if sub.networks:
            raise IncludeError(
                f"included file '{inc.path}' defines a network", inc.span, "included files hold templates (def) only"
            )
        for t in collect_templates(sub, target, stack + (me,), root_dir).values():
            _add_template(templates, t)
    for t in module.templates:
        _add_template(templates, t)
    return templates


def _add_template(templates: dict, t: ast.Template) -> None:
    from .builtins import OPS, STRUCTURAL

    if t.name in OPS or t.name in STRUCTURAL:
        raise SpecNameError(f"template '{t.name}' would hide the built-in op '{t.name}'", t.span, "choose another name")
    if t.name in templates and templates[t.name] is not t:
        prev = templates[t.name]
        raise SpecNameError(f"template '{t.name}' is defined twice", t.span, f"first defined at {prev.span}")
    templates[t.name] = t


def parse_value(text: str, what: str = "--set"):
    """Parse a parameter value given on the command line (``24``, ``[6,12,24,16]``, ``path(14)``).

    Errors point into the value itself: ``--set k:1:3: ...`` with a caret under the mistake.

    >>> parse_value("[6, 12, 24, 16]")
    [6, 12, 24, 16]
    """
    try:
        return Evaluator().eval(parse_expr(text, what), Env())
    except NetdslError as err:
        if err.span is None:
            err.span = Span(what, 1, 1, 1, len(text) + 1, text=text)
        if err.hint is None:
            err.hint = "values are numbers, true/false, lists [..] or patterns like path(far=7, near=7)"
        raise err from None


def _parse_override(key: str, text: str):
    """``parse_value`` with the error located in the whole ``--set key=value`` argument."""
    try:
        return parse_value(text, "--set")
    except NetdslError as err:
        span, shift = err.span, len(key) + 1
        if span is not None and span.file == "--set" and span.line == 1:
            err.span = Span(
                "--set",
                1,
                span.column + shift,
                1,
                span.end_column + shift if span.end_column else None,
                text=f"{key}={text}",
            )
        raise


def _override_text(key: str, value) -> str:
    return f"{key}={value if isinstance(value, str) else fmt_value(value)}"


def _same_type(default, value) -> bool:
    td, tv = type_name(default), type_name(value)
    return td == tv or (td == "float" and tv == "int") or td == "none" or (td == "pattern" and tv == "pattern")


def bind_params(net: ast.Network, overrides: dict, evaluator: Evaluator) -> dict:
    names = [p.name for p in net.params]
    for key in overrides:
        if key not in names:
            text = _override_text(key, overrides[key])
            raise SpecNameError(
                f"network '{net.name}' has no parameter '{key}'",
                Span("--set", 1, 1, 1, len(key) + 1, text=text),
                did_you_mean(key, names)
                or ("its parameters are: " + ", ".join(names) if names else "it has no parameters"),
            )
    env = Env()
    for p in net.params:
        default = evaluator.eval(p.default, env) if p.default is not None else None
        if p.name in overrides:
            value = overrides[p.name]
            if isinstance(value, str) and not isinstance(default, str):
                value = _parse_override(p.name, value)
            if p.default is not None and not _same_type(default, value):
                text = _override_text(p.name, overrides[p.name])
                raise SpecTypeError(
                    f"parameter '{p.name}' is {type_name(default)} ({fmt_value(default)} by default), "
                    f"got {type_name(value)} {fmt_value(value)}",
                    Span("--set", 1, len(p.name) + 2, 1, len(text) + 1, text=text),
                    f"'{p.name}' is declared at {p.span}",
                )
            if type_name(default) == "float" and type_name(value) == "int":
                value = float(value)
        elif p.default is None:
            raise SpecTypeError(
                f"parameter '{p.name}' has no default and was not set", p.span, f"set it, e.g. --set {p.name}=..."
            )
        else:
            value = default
        env.vars[p.name] = value
    return env.vars


def load_module(source: str | Path, text: str | None = None) -> tuple[ast.Module, Path]:
    path = Path(source)
    module = parse(text, str(path)) if text is not None else parse(read_spec_text(path), str(path))
    return module, path


def lower_spec(
    source: str | Path, overrides: dict | None = None, limits: Limits | None = None, text: str | None = None
) -> nx.DiGraph:
    """Parse, resolve includes, bind parameters and lower a spec file into an IR graph.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "t.net")
    >>> _ = open(f, "w").write("network t(k=4) { input(3, 8, 8); conv(k, 3) }")
    >>> g = lower_spec(f, {"k": 6})
    >>> g.nodes["conv1"]["shape"]
    (6, 8, 8)
    """
    module, path = load_module(source, text)
    return lower_module(module, path, collect_templates(module, path), overrides, limits)


def lower_module(
    module: ast.Module,
    path: Path,
    templates: dict[str, ast.Template],
    overrides: dict | None = None,
    limits: Limits | None = None,
) -> nx.DiGraph:
    """:func:`lower_spec` on an already parsed module and its templates: ``netdsl search`` parses a
    spec once and lowers it at many points."""
    text = module.span.text
    if len(module.networks) != 1:
        span = module.networks[1].span if len(module.networks) > 1 else Span(str(path), 1, 1, text=text)
        raise SpecNameError(
            "a spec file defines exactly one network"
            + (f", this one defines {len(module.networks)}" if module.networks else ", this one defines none"),
            span,
            "put shared templates in a file of their own and include it",
        )
    net = module.networks[0]
    check_network_name(net.name, _name_span(net))
    lw = Lowerer(templates, limits)
    params = bind_params(net, dict(overrides or {}), lw.evaluator)
    scope = NetworkScope(lw.created)
    with _stack_headroom():
        try:
            lw.body(net.body, scope, Env(params))
        except RecursionError:  # the nesting limits should make this unreachable; never a traceback
            raise LimitError(
                "the spec nests too deeply to lower", net.span, "reduce the nesting of templates, blocks and statements"
            ) from None
    if scope.current is None:
        raise SpecTypeError(
            f"network '{net.name}' has no input", net.span, "start its body with input(channels, height, width)"
        )
    lw.tag_membership(scope)
    g = lw.graph
    g.graph["name"] = net.name
    g.graph["output"] = scope.current
    if lw.outputs is not None:  # output(a, b, ...): the first is "output" (netdsl.ir.graph.graph_outputs)
        g.graph["outputs"] = lw.outputs
        g.graph["output"] = lw.outputs[0][1]
    drop_unread_streams(g)
    g.graph["file"] = str(path)
    g.graph["params"] = {k: (v if isinstance(v, (int, float, bool, str, list)) else str(v)) for k, v in params.items()}
    return g
