"""Quick fixes: the code actions a diagnostic's hint names (diagnostics.py puts the fix in the
diagnostic's ``data``, and the client hands the diagnostic back when it asks for actions)."""

from __future__ import annotations

from lsprotocol import types as lsp

from .positions import lines_of


def code_actions(uri: str, text: str, diagnostics: list[lsp.Diagnostic]) -> list[lsp.CodeAction]:
    out = []
    for d in diagnostics:
        data = d.data if isinstance(d.data, dict) else None
        if not data or d.source != "netdsl":
            continue
        for name in data.get("replace", ()):
            if isinstance(name, str) and name.isidentifier():
                out.append(_action(f"Change to '{name}'", uri, d, [lsp.TextEdit(d.range, name)]))
        closing = data.get("append")
        if isinstance(closing, str) and closing in ")]}":
            lines = lines_of(text)
            end = lsp.Position(len(lines) - 1, len(lines[-1]))
            insert = closing + "\n" if text.endswith("\n") else "\n" + closing + "\n"
            out.append(_action(f"Add '{closing}' at the end", uri, d, [lsp.TextEdit(lsp.Range(end, end), insert)]))
    return out


def _action(title: str, uri: str, diagnostic: lsp.Diagnostic, edits: list[lsp.TextEdit]) -> lsp.CodeAction:
    return lsp.CodeAction(
        title=title,
        kind=lsp.CodeActionKind.QuickFix,
        diagnostics=[diagnostic],
        is_preferred=True,
        edit=lsp.WorkspaceEdit(changes={uri: edits}),
    )
