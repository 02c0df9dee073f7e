"""Inlay hints: each statement's output shape at the end of its line, from the IR."""

from __future__ import annotations

from lsprotocol import types as lsp

from ..frontend import ast
from .analysis import Analysis
from .describe import shape
from .hover import _stages_of
from .positions import lines_of
from .syntax import walk


def inlay_hints(a: Analysis, others: list[Analysis], first_line: int, last_line: int) -> list[lsp.InlayHint]:
    """A hint ``→ CxHxW`` after the last statement of each line in [first_line, last_line]
    (0-based) that made nodes: the last node it made (in its last run, for a statement in a loop
    or a template), a block's output, or a top-level template call's last stage."""
    if a.module is None:
        return []
    graphs = [g for g in [a, *others] if g.graph is not None]
    if not graphs:
        return []
    lines = lines_of(a.text)
    shapes: dict[int, str] = {}
    for owner in (*a.module.networks, *a.module.templates):
        for node in walk(owner):
            if not isinstance(node, ast.OpStmt):
                continue
            line0 = node.span.end_line - 1 if node.span.end_line else node.span.line - 1
            line0 = node.call.span.line - 1 if node.body is None else line0
            if not first_line <= line0 <= last_line:
                continue
            found = _shape_of(node, owner, graphs)
            if found is not None:
                shapes[line0] = found
    return [
        lsp.InlayHint(
            position=lsp.Position(line0, len(lines[line0]) if line0 < len(lines) else 0),
            label=f" → {s}",
            kind=lsp.InlayHintKind.Type,
            padding_left=True,
        )
        for line0, s in sorted(shapes.items())
    ]


def _shape_of(stmt: ast.OpStmt, owner, graphs: list[Analysis]) -> str | None:
    for g in graphs:
        assert g.graph is not None
        made = g.blocks_at(stmt.call.span)
        if made:
            return shape(g.graph.nodes[made[-1].output]["shape"])
        nodes = g.nodes_at(stmt.call.span)
        if nodes:
            return shape(g.graph.nodes[nodes[-1]]["shape"])
        if (isinstance(owner, ast.Network) and stmt in owner.body) or _in_loop(owner, stmt):
            stages = _stages_of(stmt, [owner, stmt], g.graph)
            if stages:
                last = [n for n, d in g.graph.nodes(data=True) if d.get("stage") == stages[-1]]
                return shape(g.graph.nodes[last[-1]]["shape"])
    return None


def _in_loop(owner, stmt: ast.OpStmt) -> bool:
    """A network statement under loops and ifs only (not inside a block's body)."""
    if not isinstance(owner, ast.Network):
        return False

    def search(body) -> bool:
        for s in body:
            if s is stmt:
                return True
            if isinstance(s, ast.For) and search(s.body):
                return True
            if isinstance(s, ast.If) and search(s.then + s.orelse):
                return True
        return False

    return search(owner.body)
