"""Hover: what the IR knows about the statement under the cursor (output shape, parameters and
FLOPs of the node, its unit and its block), the registry entry of an op name, the features each
unit of a block reads for a pattern, and a parameter's type, default, domain and overrides."""

from __future__ import annotations

import re
from pathlib import Path

import networkx as nx

from ..frontend import ast
from ..frontend.builtins import STRUCTURAL
from ..frontend.evaluate import PATTERN_FUNCS
from ..ir.graph import BlockInfo, blocks
from ..ops import SPEC_OPS
from ..presets import presets
from .analysis import Analysis
from .describe import code, count, escape, inline, op_arguments, op_signature, shape, source_of, template_signature
from .positions import contains, word_at
from .syntax import path_to, walk

MAX_INSTANCES = 4  # instances of a statement listed one by one (a template line runs once per unit)
MAX_UNITS = 8  # units of a block listed with what they read


def hover_markdown(a: Analysis, module: ast.Module, others: list[Analysis], line0: int, char0: int) -> str | None:
    """The hover text at a 0-based position, or None where there is nothing to say."""
    found = word_at(a.text, line0, char0)
    if found is None:
        return None
    word = found[0]
    chain = path_to(module, str(a.path), line0, char0)
    stmts = [n for n in chain if isinstance(n, ast.OpStmt)]
    call = next((n for n in reversed(chain) if isinstance(n, ast.Call) and n.name == word), None)
    on_name = call is not None and call.name_span is not None and contains(call.name_span, line0, char0)
    parts: list[str] = []
    if on_name and call is not None:
        parts += _name_entry(call, a, module)
    elif isinstance(chain[-1] if chain else None, ast.Var) or _is_param_decl(chain, word):
        parts += _variable(word, chain, a, module)
    graphs = ([a] if a.graph is not None else []) + [x for x in others if x.graph is not None and x is not a]
    if stmts:
        stmt = stmts[-1]
        in_args = contains(stmt.call.span, line0, char0) and not on_name
        if stmt.call.name == "block" and (in_args or (call is not None and call.name in PATTERN_FUNCS)):
            parts += _pattern_reads(stmt, graphs)
        parts += _statement_counts(stmt, chain, graphs, module)
    return "\n\n".join(parts) if parts else None


# ---- names ------------------------------------------------------------------------------------
def _name_entry(call: ast.Call, a: Analysis, module: ast.Module) -> list[str]:
    name = call.name
    if name in SPEC_OPS:
        spec = SPEC_OPS[name]
        lines = [code(op_signature(spec)), escape(spec.doc) if spec.doc else ""]
        lines.append("\n".join(f"- {inline(arg)}" for arg in op_arguments(spec)))
        return [x for x in lines if x]
    templates = a.templates or {t.name: t for t in module.templates}
    if name in templates:
        t = templates[name]
        where = f"{Path(t.span.file).name}:{t.span.line}"
        return [code(template_signature(t)), f"template, defined at {escape(where)}"]
    if name in PATTERN_FUNCS:
        return [code(name + "(...)"), f"connectivity pattern `{name}`"]
    if name in STRUCTURAL:
        return [code(name + "(...)"), "structural statement"]
    return []


def _is_param_decl(chain: list[ast.Node], word: str) -> bool:
    return bool(chain) and isinstance(chain[-1], ast.Param) and chain[-1].name == word


def _variable(name: str, chain: list[ast.Node], a: Analysis, module: ast.Module) -> list[str]:
    owner = next((n for n in chain if isinstance(n, (ast.Network, ast.Template))), None)
    if owner is None:
        return []
    lets = [n for n in walk(owner) if isinstance(n, ast.Let) and n.name == name]
    if lets:
        return [code(f"let {name} = {source_of(lets[0].value.span)}"), f"defined at line {lets[0].span.line}"]
    loops = [n for n in walk(owner) if isinstance(n, ast.For) and n.var == name]
    if loops:
        return [code(f"for {name} in ..."), f"loop variable (line {loops[0].span.line})"]
    param = next((p for p in owner.params if p.name == name), None)
    if param is not None:
        return _parameter(param, owner, a)
    labelled = next((n for n in walk(owner) if isinstance(n, ast.OpStmt) and n.label == name), None)
    if labelled is not None:  # a label used as a tensor (add(a), concat(a, b)): what it names
        return [code(f"{name}: {source_of(labelled.call.span)}"), f"label, line {labelled.span.line}"]
    return []


def _parameter(param: ast.Param, owner: ast.Network | ast.Template, a: Analysis) -> list[str]:
    what = "network" if isinstance(owner, ast.Network) else "template"
    default = source_of(param.default.span) if param.default is not None else None
    lines = [code(f"{param.name}" + (f" = {default}" if default is not None else ""))]
    kind = _literal_type(param.default)
    info = [f"parameter of {what} {inline(owner.name)}", f"type: {kind}" if kind else ""]
    info.append(f"default: {inline(default)}" if default is not None else "no default: must be set")
    if isinstance(owner, ast.Network) and a.graph is not None and param.name in a.graph.graph.get("params", {}):
        info.append(f"value in this analysis: {inline(str(a.graph.graph['params'][param.name]))}")
    domains = sorted(_domains(owner, param.name))
    if domains:
        info.append("domain: " + "; ".join(escape(d) for d in domains))
    lines.append("\n".join(f"- {x}" for x in info if x))
    if isinstance(owner, ast.Network):
        overridden = [
            f"{inline(p.name)}: {inline(f'{param.name}={p.values[param.name]}')}"
            for p in presets().values()
            if p.spec == a.path.name and param.name in p.values
        ]
        if overridden:
            lines.append("overridden by presets: " + ", ".join(overridden))
        lines.append("override with " + inline(f"--set {param.name}=..."))
    return lines


def _literal_type(expr: ast.Expr | None) -> str | None:
    if isinstance(expr, ast.Literal):
        v = expr.value
        return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(v), type(v).__name__)
    if isinstance(expr, ast.ListExpr):
        return "list"
    if isinstance(expr, ast.Call) and expr.name in PATTERN_FUNCS:
        return "pattern"
    if isinstance(expr, ast.Var):
        return "pattern" if expr.name == "dense" else "name"
    return None


def _domains(owner: ast.Network | ast.Template, name: str) -> set[str]:
    """What the ops a parameter is passed to directly accept: ``conv out: int>=1``; and every
    ``expect`` that mentions it."""
    out = set()
    for n in walk(owner):
        if not isinstance(n, ast.Call):
            continue
        if n.name == "expect" and any(isinstance(v, ast.Var) and v.name == name for v in walk(n)):
            out.add(f"expect {source_of(n.args[0].span) if n.args else ''}")
        spec = SPEC_OPS.get(n.name)
        if spec is None:
            continue
        for arg, value in zip(spec.args, n.args, strict=False):
            if isinstance(value, ast.Var) and value.name == name:
                out.add(f"{n.name} {arg.name}: {arg.check}")
        for kw in n.kwargs:
            if isinstance(kw.value, ast.Var) and kw.value.name == name:
                check = next((x.check for x in spec.args if x.name == kw.name), "?")
                out.add(f"{n.name} {kw.name}: {check}")
    return out


# ---- counts from the IR -----------------------------------------------------------------------
def _statement_counts(stmt: ast.OpStmt, chain: list[ast.Node], graphs: list[Analysis], module: ast.Module) -> list[str]:
    for g in graphs:
        made = g.blocks_at(stmt.call.span)
        if made:
            return [_blocks_text(g.graph, made)]
        nodes = g.nodes_at(stmt.call.span)
        if nodes:
            return [_nodes_text(g.graph, nodes)]
        stages = _stages_of(stmt, chain, g.graph)
        if stages:
            return [_stages_text(g.graph, stages)]
        # a unit's body (a template call inside block { ... }): the units of the enclosing block
        outer = [n for n in chain if isinstance(n, ast.OpStmt) and n is not stmt and n.body is not None]
        for block_stmt in reversed(outer):
            made = g.blocks_at(block_stmt.call.span)
            if made:
                return [_units_text(g.graph, made)]
    return []


def _units_text(graph: nx.DiGraph, made: list[BlockInfo]) -> str:
    """Each unit of the blocks a statement's body runs in: the first and the last of each block."""
    lines = []
    for b in made[:MAX_INSTANCES]:
        picked = [b.units[0], b.units[-1]] if len(b.units) > 1 else list(b.units)
        for u in picked:
            params, flops = _totals(graph, u.nodes)
            lines.append(
                f"- unit {inline(u.scope)}: {shape(graph.nodes[u.output]['shape'])} · {count(params)} parameters"
                f" · {count(flops)} FLOPs"
            )
        lines.append("  - in " + _block_line(graph, b))
    return "**units**\n" + "\n".join(lines)


def _totals(graph: nx.DiGraph, nodes) -> tuple[int, int]:
    ds = [graph.nodes[n] for n in nodes]
    return sum(d.get("params", 0) for d in ds), sum(d.get("flops", 0) for d in ds)


def _node_line(graph: nx.DiGraph, n: str) -> str:
    d = graph.nodes[n]
    return (
        f"{inline(n)}: {shape(d['shape'])} · {count(d.get('params', 0))} parameters · {count(d.get('flops', 0))} FLOPs"
    )


def _nodes_text(graph: nx.DiGraph, nodes: list[str]) -> str:
    lines = [f"**output** {shape(graph.nodes[nodes[-1]]['shape'])}"]
    if len(nodes) == 1:
        lines.append("- node " + _node_line(graph, nodes[0]))
    else:
        params, flops = _totals(graph, nodes)
        lines.append(f"- made {len(nodes)} times: {count(params)} parameters, {count(flops)} FLOPs in all")
        lines += ["- " + _node_line(graph, n) for n in nodes[:MAX_INSTANCES]]
        if len(nodes) > MAX_INSTANCES:
            lines.append(f"- ... and {len(nodes) - MAX_INSTANCES} more")
    first = graph.nodes[nodes[0]]
    units = {u.scope: (b, u) for b in blocks(graph) for u in b.units}
    layer = first.get("layer")
    if layer in units:
        b, u = units[layer]
        params, flops = _totals(graph, u.nodes)
        lines.append(
            f"- unit {inline(layer)}: {shape(graph.nodes[u.output]['shape'])} · {count(params)} parameters"
            f" · {count(flops)} FLOPs"
        )
        lines.append("- " + _block_line(graph, b))
    return "\n".join(lines)


def _block_nodes(graph: nx.DiGraph, b: BlockInfo) -> list[str]:
    return [n for n in graph.nodes if n == b.name or n.startswith(b.name + ".")]


def _block_line(graph: nx.DiGraph, b: BlockInfo) -> str:
    params, flops = _totals(graph, _block_nodes(graph, b))
    return (
        f"block {inline(b.name)} ({escape(b.pattern)}, {len(b.units)} units): "
        f"{shape(graph.nodes[b.output]['shape'])} · {count(params)} parameters · {count(flops)} FLOPs"
    )


def _blocks_text(graph: nx.DiGraph, made: list[BlockInfo]) -> str:
    lines = [f"**output** {shape(graph.nodes[made[-1].output]['shape'])}"]
    for b in made[:MAX_INSTANCES]:
        lines.append("- " + _block_line(graph, b))
        u = b.units[-1] if b.units else None
        if u is not None:
            params, flops = _totals(graph, u.nodes)
            lines.append(
                f"  - unit {u.index} (last): {shape(graph.nodes[u.output]['shape'])} · "
                f"{count(params)} parameters · {count(flops)} FLOPs"
            )
    if len(made) > MAX_INSTANCES:
        lines.append(f"- ... and {len(made) - MAX_INSTANCES} more blocks")
    return "\n".join(lines)


def _stages_of(stmt: ast.OpStmt, chain: list[ast.Node], graph: nx.DiGraph) -> list[str]:
    """The top-level stages a network-level statement made (``transition1``, ``transition2`` for a
    template call in a loop): lowering names a stage by the statement's label, else its call's
    name and a counter."""
    if not any(isinstance(n, ast.Network) for n in chain):
        return []
    outer = [n for n in chain if isinstance(n, ast.OpStmt)]
    if outer and outer[0] is not stmt:  # inside a block's body: its own nodes say where they are
        return []
    pattern = re.compile(re.escape(stmt.label) if stmt.label else re.escape(stmt.call.name) + r"\d+")
    return list(dict.fromkeys(d["stage"] for _, d in graph.nodes(data=True) if pattern.fullmatch(d.get("stage", ""))))


def _stages_text(graph: nx.DiGraph, stages: list[str]) -> str:
    lines = []
    for stage in stages[:MAX_INSTANCES]:
        nodes = [n for n, d in graph.nodes(data=True) if d.get("stage") == stage]
        outs = [n for n in nodes if graph.nodes[n].get("role") != "stream_output"]
        params, flops = _totals(graph, nodes)
        lines.append(
            f"- {inline(stage)}: {shape(graph.nodes[(outs or nodes)[-1]]['shape'])} · {count(params)} parameters"
            f" · {count(flops)} FLOPs"
        )
    if len(stages) > MAX_INSTANCES:
        lines.append(f"- ... and {len(stages) - MAX_INSTANCES} more")
    first = [n for n, d in graph.nodes(data=True) if d.get("stage") == stages[-1]]
    return f"**output** {shape(graph.nodes[first[-1]]['shape'])}\n" + "\n".join(lines)


def _pattern_reads(stmt: ast.OpStmt, graphs: list[Analysis]) -> list[str]:
    """Which earlier features each unit of the block reads."""
    for g in graphs:
        made = g.blocks_at(stmt.call.span)
        if not made:
            continue
        b = made[0]
        lines = [f"**{escape(b.pattern)}**: what each unit of {inline(b.name)} reads"]
        for u in b.units[:MAX_UNITS]:
            lines.append(f"- unit {u.index} reads {escape(b.reads_label(u.reads, limit=6))}")
        if len(b.units) > MAX_UNITS:
            lines.append(f"- ... {len(b.units) - MAX_UNITS} more units")
        if len(made) > 1:
            lines.append(f"(the first of {len(made)} blocks this statement makes)")
        return ["\n".join(lines)]
    return []
