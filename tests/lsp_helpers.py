"""Shared pieces of the language-server tests: the server command and a client fixture factory."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from lsprotocol import types as lsp

ROOT = Path(__file__).resolve().parent.parent
SERVER_COMMAND = [sys.executable, "-m", "netdsl", "lsp"]
SERVER_ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def initialize_params(root: Path = ROOT, **options) -> lsp.InitializeParams:
    return lsp.InitializeParams(
        capabilities=lsp.ClientCapabilities(
            text_document=lsp.TextDocumentClientCapabilities(
                publish_diagnostics=lsp.PublishDiagnosticsClientCapabilities(related_information=True)
            )
        ),
        root_uri=root.as_uri(),
        workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        initialization_options=options or None,
    )


def open_doc(client, path: Path, text: str | None = None, version: int = 1) -> str:
    uri = path.absolute().as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri=uri, language_id="netdsl", version=version, text=text or path.read_text())
        )
    )
    return uri


def replace_all(client, uri: str, text: str, version: int) -> None:
    """A full-text change (no range)."""
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


def record_diagnostics(client) -> list[lsp.PublishDiagnosticsParams]:
    """Every publishDiagnostics the client receives, in order (pytest-lsp keeps only the last per
    URI, without its version)."""
    log: list[lsp.PublishDiagnosticsParams] = []
    handle = client.protocol._handle_notification

    def spy(method, params):
        if method == lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS:
            log.append(params)
        return handle(method, params)

    client.protocol._handle_notification = spy
    client.published = log
    return log


async def diagnostics_for(client, uri: str, version: int | None, timeout: float = 30.0) -> list[lsp.Diagnostic]:
    """The diagnostics the server published for ``uri`` at ``version`` (waits for them)."""

    async def wait() -> list[lsp.Diagnostic]:
        while True:
            for params in reversed(client.published):
                if params.uri == uri and params.version == version:
                    return list(params.diagnostics)
            await asyncio.sleep(0.005)

    return await asyncio.wait_for(wait(), timeout)
