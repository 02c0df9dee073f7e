"""Completion: what may be written at the cursor, from the registry, the grammar and the AST.

- inside ``include "...``: the .net files the include may name (the document's folder, the
  bundled library), never a path the include confinement would refuse;
- inside an op's parentheses: its keyword arguments (``stride=``), then the names in scope;
- elsewhere: op names with their signatures, templates (this file's and its includes'), structural
  statements, patterns with their arguments, parameters, ``let`` and loop names in scope, labels,
  named constants and the grammar's keywords.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lsprotocol import types as lsp

from ..frontend import ast
from ..frontend.builtins import STRUCTURAL
from ..frontend.evaluate import BUILTIN_FUNCS, CONSTANTS, PATTERN_FUNCS
from ..frontend.source import SPEC_SUFFIX, library_dirs
from ..highlight import grammar_words
from ..ops import SPEC_OPS
from ..presets import presets
from .describe import op_arguments, op_signature, source_of, template_signature
from .positions import lines_of
from .syntax import scopes, walk

# A pattern's arguments, as the evaluator binds them (netdsl/frontend/evaluate.py, Evaluator._pattern).
PATTERN_ARGS = {
    "path": "path(far=${1:7}, near=${2:7})",
    "window": "window(${1:g})",
    "split": "split(scale=${1:4})",
    "rule": 'rule("${1:j < i}")',
    "graph": "graph(${1:ws(n, 4, 0.25)}, seed=${2:0})",
}
MAX_INCLUDE_FILES = 200  # files offered after include "
MAX_INCLUDE_FOLDERS = 500  # folders searched for them
_INCLUDE = re.compile(r'^\s*include\s+"([^"]*)$')
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(([^()]*)$")


def completions(
    text: str, path: Path, module: ast.Module | None, templates: dict, line0: int, char0: int, snippets: bool = False
):
    lines = lines_of(text)
    if not 0 <= line0 < len(lines):
        return []
    before = lines[line0][:char0]
    m = _INCLUDE.match(before)
    if m:
        return _include_files(path, m.group(1))
    if before.rstrip().endswith("--set") or re.search(r"preset\s*[:=]?\s*$", before):
        return [_item(n, lsp.CompletionItemKind.Value, "preset", p.spec) for n, p in presets().items()]
    items: list[lsp.CompletionItem] = []
    m = _CALL.search(before)
    if m and m.group(1) in SPEC_OPS:
        spec = SPEC_OPS[m.group(1)]
        written = m.group(2).split(",")[:-1]  # the arguments before the cursor's
        given = {w.split("=")[0].strip() for w in written if "=" in w}
        positional = sum(1 for w in written if "=" not in w)
        for k, (arg, line) in enumerate(zip(spec.args, op_arguments(spec), strict=True)):
            if arg.name not in given and k >= positional:
                items.append(_item(arg.name + "=", lsp.CompletionItemKind.Field, line, sort="0", insert=arg.name + "="))
    items += _names_in_scope(module, line0, char0)
    if not m:
        items += _statements(templates or ({t.name: t for t in module.templates} if module else {}), snippets)
    else:
        items += [_pattern(name, snippets) for name in PATTERN_FUNCS]
        items += [_item(name, lsp.CompletionItemKind.Function, "function") for name in BUILTIN_FUNCS]
    items += [_item(name, lsp.CompletionItemKind.Constant, "constant") for name in CONSTANTS]
    return items


def _item(label, kind, detail="", doc=None, sort="5", insert=None, snippet=False) -> lsp.CompletionItem:
    return lsp.CompletionItem(
        label=label,
        kind=kind,
        detail=detail or None,
        documentation=doc,
        sort_text=sort + label,
        insert_text=insert,
        insert_text_format=lsp.InsertTextFormat.Snippet if snippet else None,
    )


def _pattern(name: str, snippets: bool) -> lsp.CompletionItem:
    """A pattern with its arguments: a snippet where the client takes them, else the name."""
    plain = re.sub(r"\$\{\d+:([^}]*)\}", r"\1", PATTERN_ARGS[name])
    return _item(
        name,
        lsp.CompletionItemKind.Function,
        "pattern " + plain,
        sort="3",
        insert=PATTERN_ARGS[name] if snippets else None,
        snippet=snippets,
    )


def _statements(templates: dict, snippets: bool) -> list[lsp.CompletionItem]:
    items = [
        _item(name, lsp.CompletionItemKind.Function, op_signature(spec), spec.doc or None, sort="2")
        for name, spec in SPEC_OPS.items()
    ]
    items += [
        _item(
            t.name,
            lsp.CompletionItemKind.Snippet,
            template_signature(t),
            f"template from {Path(t.span.file).name}",
            sort="1",
        )
        for t in templates.values()
    ]
    items += [_item(name, lsp.CompletionItemKind.Keyword, "statement", sort="3") for name in STRUCTURAL]
    items += [_pattern(name, snippets) for name in PATTERN_FUNCS]
    words = [w for w in grammar_words() if w not in STRUCTURAL]
    items += [_item(w, lsp.CompletionItemKind.Keyword, "keyword", sort="4") for w in words]
    return items


def _names_in_scope(module: ast.Module | None, line0: int, char0: int) -> list[lsp.CompletionItem]:
    """Parameters of the enclosing network or template, its ``let`` and loop names defined above
    the cursor, and its labels."""
    if module is None:
        return []
    out = []
    for owner in scopes(module, line0, char0):
        for p in owner.params:
            default = f" = {source_of(p.default.span)}" if p.default is not None else ""
            out.append(_item(p.name, lsp.CompletionItemKind.Variable, f"parameter{default}", sort="0"))
        for n in walk(owner):
            above = n.span.line - 1 < line0
            if isinstance(n, ast.Let) and above:
                out.append(_item(n.name, lsp.CompletionItemKind.Variable, f"let {source_of(n.value.span)}", sort="0"))
            elif isinstance(n, ast.For) and above:
                out.append(_item(n.var, lsp.CompletionItemKind.Variable, "loop variable", sort="0"))
            elif isinstance(n, ast.OpStmt) and n.label:
                out.append(_item(n.label, lsp.CompletionItemKind.Reference, f"label of {n.call.name}", sort="1"))
    return out


def _include_files(path: Path, typed: str) -> list[lsp.CompletionItem]:
    """The .net files an include in ``path`` may name: under its folder and in the library."""
    found: dict[str, str] = {}
    visited = 0
    for base, where in [(path.parent, "beside this file"), *((d, "bundled library") for d in library_dirs())]:
        if not base.is_dir():
            continue
        inside = base.resolve()
        for folder, dirs, files in os.walk(base):
            visited += 1
            if visited > MAX_INCLUDE_FOLDERS:
                break
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "node_modules")
            for f in sorted(files):
                # only files the include confinement would accept (no symlink out of the folder)
                if (
                    f.endswith(SPEC_SUFFIX)
                    and len(found) < MAX_INCLUDE_FILES
                    and Path(folder, f).resolve().is_relative_to(inside)
                ):
                    rel = Path(folder, f).relative_to(base).as_posix()
                    if rel != path.name:
                        found.setdefault(rel, where)
            if len(found) >= MAX_INCLUDE_FILES:
                break
    return [_item(rel, lsp.CompletionItemKind.File, where) for rel, where in found.items() if rel.startswith(typed)]
