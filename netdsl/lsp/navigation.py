"""Navigation: go to definition (template, include path, label, ``let``, loop variable,
parameter), find references, the document outline and workspace symbols."""

from __future__ import annotations

import os
from pathlib import Path

from lsprotocol import types as lsp

from ..errors import NetdslError, Span
from ..frontend import ast
from ..frontend.parser import parse
from ..frontend.source import SPEC_SUFFIX, read_spec_text, resolve_include
from .positions import contains, span_range, word_at
from .syntax import path_to, walk

MAX_WORKSPACE_FILES = 2000  # .net files a workspace-symbol search parses at most
MAX_WORKSPACE_FOLDERS = 5000  # folders it walks at most (a workspace opened on a home folder)


def _location(span: Span, text: str | None = None) -> lsp.Location:
    return lsp.Location(uri=Path(span.file).absolute().as_uri(), range=span_range(span, text or span.text or ""))


def _name_span(node: ast.Node, name: str) -> Span:
    """The span of ``name`` where ``node`` declares it (``def NAME``, ``let NAME``, ``NAME:``)."""
    s = node.span
    lines = (s.text or "").split("\n")
    if 1 <= s.line <= len(lines):
        col = lines[s.line - 1].find(name, s.column - 1)
        if col >= 0:
            return Span(s.file, s.line, col + 1, s.line, col + 1 + len(name), text=s.text)
    return s


def definition(
    text: str, path: Path, module: ast.Module, templates: dict, line0: int, char0: int
) -> list[lsp.Location]:
    chain = path_to(module, str(path), line0, char0)
    for inc in module.includes:
        if contains(inc.span, line0, char0):
            try:
                target = resolve_include(inc.path, path, path.absolute().parent.resolve(), inc.span)
            except NetdslError:
                return []  # a refused include is not followed, not even by the editor
            return [
                lsp.Location(uri=target.absolute().as_uri(), range=lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0)))
            ]
    found = word_at(text, line0, char0)
    if found is None:
        return []
    name = found[0]
    call = next((n for n in reversed(chain) if isinstance(n, ast.Call) and n.name == name), None)
    if call is not None and name in templates:
        t = templates[name]
        return [_location(_name_span(t, name))]
    owner = next((n for n in chain if isinstance(n, (ast.Network, ast.Template))), None)
    if owner is None:
        return []
    decl = _declaration(owner, name)
    return [_location(decl, text)] if decl is not None else []


def _declaration(owner: ast.Network | ast.Template, name: str) -> Span | None:
    for p in owner.params:
        if p.name == name:
            return Span(
                p.span.file, p.span.line, p.span.column, p.span.line, p.span.column + len(name), text=p.span.text
            )
    for n in walk(owner):
        if isinstance(n, ast.Let) and n.name == name:
            return _name_span(n, name)
        if isinstance(n, ast.For) and n.var == name:
            return _name_span(n, name)
        if isinstance(n, ast.OpStmt) and n.label == name:
            return Span(
                n.span.file, n.span.line, n.span.column, n.span.line, n.span.column + len(name), text=n.span.text
            )
    return None


def references(
    text: str, path: Path, module: ast.Module, line0: int, char0: int, declaration: bool
) -> list[lsp.Location]:
    """Every place this file names the word under the cursor as the same kind of thing: calls of a
    template (and its ``def``), or the uses of a parameter, ``let``, loop variable or label in its
    network or template (and its declaration)."""
    found = word_at(text, line0, char0)
    if found is None:
        return []
    name = found[0]
    spans: list[Span] = []
    templates = {t.name: t for t in module.templates}
    is_call = any(isinstance(n, ast.Call) and n.name == name for n in walk(module))
    owner = next(
        (n for n in path_to(module, str(path), line0, char0) if isinstance(n, (ast.Network, ast.Template))), None
    )
    if owner is not None and _declaration(owner, name) is not None:
        decl = _declaration(owner, name)
        if declaration and decl is not None:
            spans.append(decl)
        spans += [n.span for n in walk(owner) if isinstance(n, ast.Var) and n.name == name]
    elif is_call or name in templates:
        if declaration and name in templates:
            spans.append(_name_span(templates[name], name))
        spans += [n.name_span or n.span for n in walk(module) if isinstance(n, ast.Call) and n.name == name]
    return [_location(s, text) for s in spans]


def document_symbols(module: ast.Module, text: str) -> list[lsp.DocumentSymbol]:
    out = []
    for inc in module.includes:
        r = span_range(inc.span, text)
        out.append(
            lsp.DocumentSymbol(name=inc.path, kind=lsp.SymbolKind.File, range=r, selection_range=r, detail="include")
        )
    for t in module.templates:
        out.append(_symbol(t, lsp.SymbolKind.Function, "def", text))
    for net in module.networks:
        out.append(_symbol(net, lsp.SymbolKind.Class, "network", text))
    return out


def _symbol(owner: ast.Network | ast.Template, kind: lsp.SymbolKind, detail: str, text: str) -> lsp.DocumentSymbol:
    rng = span_range(owner.span, text)
    children = [
        lsp.DocumentSymbol(
            name=p.name,
            kind=lsp.SymbolKind.Variable,
            range=span_range(p.span, text),
            selection_range=span_range(p.span, text),
            detail="parameter",
        )
        for p in owner.params
    ]
    children += _statement_symbols(owner.body, text)
    sel = span_range(_name_span(owner, owner.name), text)
    return lsp.DocumentSymbol(
        name=owner.name, kind=kind, range=rng, selection_range=sel, detail=detail, children=children
    )


def _statement_symbols(body: tuple, text: str) -> list[lsp.DocumentSymbol]:
    """Blocks and labelled statements as an outline (a loop's or an if's are its body's)."""
    out = []
    for stmt in body:
        if isinstance(stmt, ast.For):
            out += _statement_symbols(stmt.body, text)
        elif isinstance(stmt, ast.If):
            out += _statement_symbols(stmt.then + stmt.orelse, text)
        elif isinstance(stmt, ast.Let):
            r = span_range(stmt.span, text)
            out.append(
                lsp.DocumentSymbol(
                    name=stmt.name, kind=lsp.SymbolKind.Constant, range=r, selection_range=r, detail="let"
                )
            )
        elif isinstance(stmt, ast.OpStmt) and (stmt.label or stmt.body is not None):
            r = span_range(stmt.span, text)
            out.append(
                lsp.DocumentSymbol(
                    name=stmt.label or stmt.call.name,
                    kind=lsp.SymbolKind.Module if stmt.body is not None else lsp.SymbolKind.Field,
                    range=r,
                    selection_range=span_range(stmt.call.name_span or stmt.call.span, text),
                    detail=stmt.call.name,
                    children=_statement_symbols(stmt.body or (), text) or None,
                )
            )
    return out


_WORKSPACE_CACHE: dict[Path, tuple[float, list[tuple[str, lsp.SymbolKind, Span]]]] = {}


def workspace_symbols(folders: list[Path], query: str, open_texts: dict[Path, str]) -> list[lsp.WorkspaceSymbol]:
    """Networks and templates of every .net file under the workspace folders (hidden folders
    skipped, files read with check's limits), whose name contains ``query``."""
    out: list[lsp.WorkspaceSymbol] = []
    seen = visited = 0
    for folder in folders:
        inside = folder.resolve()
        for root, dirs, files in os.walk(folder):
            visited += 1
            if visited > MAX_WORKSPACE_FOLDERS:
                return out
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "node_modules")
            for f in sorted(files):
                if not f.endswith(SPEC_SUFFIX) or not Path(root, f).resolve().is_relative_to(inside):
                    continue  # a symlink out of the workspace is not followed
                seen += 1
                if seen > MAX_WORKSPACE_FILES:
                    return out
                for name, kind, span in _file_symbols(Path(root, f), open_texts):
                    if query.lower() in name.lower():
                        out.append(lsp.WorkspaceSymbol(name=name, kind=kind, location=_location(span)))
    return out


def _file_symbols(path: Path, open_texts: dict[Path, str]) -> list[tuple[str, lsp.SymbolKind, Span]]:
    real = path.resolve()
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return []
    cached = _WORKSPACE_CACHE.get(real)
    if real not in open_texts and cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        text = open_texts.get(real) or read_spec_text(path)
        module = parse(text, str(path))
    except NetdslError:
        return []
    found = [(t.name, lsp.SymbolKind.Function, _name_span(t, t.name)) for t in module.templates]
    found += [(n.name, lsp.SymbolKind.Class, _name_span(n, n.name)) for n in module.networks]
    if real not in open_texts:
        _WORKSPACE_CACHE[real] = (mtime, found)
    return found
