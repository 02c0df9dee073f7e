"""The package's layers: every import in netdsl/ goes to the same layer or a lower one, and no
module imports itself back through others (CONTRIBUTING.md, "Layers").

The import graph is read from the source with ``ast``, not from ``sys.modules``: imports inside
functions count as much as those at the top of a module (they run too, only later). Imports under
``if TYPE_CHECKING:`` are left out: they never run, and a type annotation may name a class of a
higher layer (``streams`` annotating with the ``Lowerer`` that calls it).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "netdsl"

# Lowest first. A module's layer is that of its top-level name under netdsl/ (``netdsl.ops.norm``
# is in ``ops``); ``netdsl`` itself is the package root, whose __init__ is the public API.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    # Leaves every layer may use: errors and how they are shown, the naming rules, atomic writes,
    # progress lines, the version string.
    ("base", frozenset({"errors", "display", "naming", "io", "progress", "_version"})),
    ("ops", frozenset({"ops"})),  # the op registry: pure data and arithmetic
    ("ir", frozenset({"ir"})),  # the graph and its metadata, lint
    ("frontend", frozenset({"frontend", "presets"})),  # spec text (or a preset's) -> IR
    ("passes", frozenset({"passes"})),  # IR -> IR
    ("analysis", frozenset({"memory", "summary"})),  # figures read off a compiled graph
    ("backends", frozenset({"backends", "onnx_runtime"})),  # IR -> torch source, ONNX
    ("weights", frozenset({"weights"})),  # weights in and out of built modules
    ("pipeline", frozenset({"pipeline"})),  # a target and overrides -> compiled graph, module
    ("api", frozenset({"api"})),
    # Tools on top of the API: training, drawings, the report, the formatter and lexer, the language
    # server, the search (netdsl.explore).
    ("tools", frozenset({"train", "viz", "report", "fmt", "highlight", "lsp", "explore"})),
    # The package root re-exports the public functions, the tools' among them (netdsl.search).
    ("root", frozenset({"netdsl"})),
    ("cli", frozenset({"cli", "__main__"})),
)


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module under netdsl/."""
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the import statements under ``if TYPE_CHECKING:``."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


@functools.cache
def import_edges() -> tuple[tuple[str, str, str], ...]:
    """(importer, imported module, ``file:line``) for every netdsl import under netdsl/; ``from
    pkg import name`` goes to the module ``pkg.name`` when there is one, else to ``pkg``."""
    mods = _modules()
    edges = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skipped = _type_checking_only(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        where = path.relative_to(PACKAGE.parent).as_posix()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module for a in node.names]
            else:
                continue
            for target in targets:
                if target == "netdsl" or target.startswith("netdsl."):
                    while target not in mods:  # ``import netdsl.ops.kinds.x`` style: the module part
                        target = target.rpartition(".")[0]
                    if target != name:
                        edges.append((name, target, f"{where}:{node.lineno}"))
    return tuple(edges)


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for rank, (_, names) in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} is in no layer: add '{top}' to LAYERS in tests/test_layering.py")


def test_every_module_has_a_layer():
    for module in _modules():
        layer_of(module)


def test_no_import_goes_to_a_higher_layer():
    upward = [
        f"{where}: {src} (layer {LAYERS[layer_of(src)][0]}) imports {dst} (layer {LAYERS[layer_of(dst)][0]})"
        for src, dst, where in import_edges()
        if layer_of(dst) > layer_of(src)
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_import_graph_has_no_cycle():
    graph = nx.DiGraph()
    for src, dst, where in import_edges():
        graph.add_edge(src, dst, where=where)
    cycles = sorted(nx.simple_cycles(graph), key=len)
    shown = [
        "; ".join(f"{a} imports {b} ({graph.edges[a, b]['where']})" for a, b in zip(c, c[1:] + c[:1], strict=True))
        for c in cycles
    ]
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(shown)
