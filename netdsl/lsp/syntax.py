"""Walking the AST: every node of a module, and the innermost nodes under a position."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ..frontend import ast
from .positions import contains, same_file


def children(node: ast.Node) -> Iterator[ast.Node]:
    for f in dataclasses.fields(node):
        if f.name == "span" or f.name == "name_span":
            continue
        value = getattr(node, f.name)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, ast.Node):
                yield item


def walk(node: ast.Node) -> Iterator[ast.Node]:
    """Every node under ``node`` (itself first), depth first in source order."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(list(children(n))))


def path_to(module: ast.Module, file: str, line0: int, char0: int) -> list[ast.Node]:
    """The nodes containing a position, outermost first (only nodes of this file: a module's
    nodes all are)."""
    out: list[ast.Node] = []
    level: list[ast.Node] = [module]
    while True:
        inner = [n for n in level if contains(n.span, line0, char0) or isinstance(n, ast.Module)]
        if not inner:
            return out
        node = inner[-1]
        out.append(node)
        level = list(children(node))


def scopes(module: ast.Module, line0: int, char0: int) -> list[ast.Network | ast.Template]:
    """The network or template definition around a position (at most one: they do not nest)."""
    found: list[ast.Network | ast.Template] = [*module.networks, *module.templates]
    return [d for d in found if contains(d.span, line0, char0) or d.span.line - 1 == line0]


def same(module: ast.Module, file: str) -> bool:
    return same_file(module.file, file)
