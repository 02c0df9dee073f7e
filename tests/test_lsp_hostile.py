"""`netdsl lsp` under hostile input and load (slow: a server of its own per module, large texts):
malformed JSON-RPC, unknown methods, include cycles and escapes, binary and 10 MB documents,
specs over the work budget, bursts of changes, cancelled requests. The server must answer or
ignore each per the protocol and stay up."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest
import pytest_lsp
from lsp_helpers import (
    ROOT,
    SERVER_COMMAND,
    SERVER_ENV,
    diagnostics_for,
    initialize_params,
    open_doc,
    record_diagnostics,
    replace_all,
)
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcMethodNotFound
from pytest_lsp import ClientServerConfig, LanguageClient

pytestmark = pytest.mark.slow
in_module_loop = pytest.mark.asyncio(loop_scope="module")

SMALL = "network t(k=4) {\n    input(3, 8, 8)\n    a: conv(k, 3)\n    relu\n}\n"


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND, server_env=SERVER_ENV))
async def client(lsp_client: LanguageClient):
    record_diagnostics(lsp_client)
    await lsp_client.initialize_session(initialize_params())
    yield
    await lsp_client.shutdown_session()


async def alive(client: LanguageClient, tmp_path) -> None:
    """The server still answers: a fresh document gets its hover."""
    path = tmp_path / f"alive{time.monotonic_ns()}.net"
    path.write_text(SMALL)
    uri = open_doc(client, path)
    assert await diagnostics_for(client, uri, 1) == []
    hover = await client.text_document_hover_async(lsp.HoverParams(lsp.TextDocumentIdentifier(uri), lsp.Position(2, 8)))
    assert hover is not None


@in_module_loop
async def test_unknown_method_is_method_not_found(client: LanguageClient, tmp_path):
    with pytest.raises(JsonRpcMethodNotFound):
        await client.protocol.send_request_async("netdsl/noSuchMethod", {})
    await alive(client, tmp_path)


@in_module_loop
async def test_include_cycle_and_escape_are_diagnostics(client: LanguageClient, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside.net").write_text("def leak() { relu }\n")
    (work / "a.net").write_text('include "b.net"\ndef fa() { relu }\n')
    (work / "b.net").write_text('include "a.net"\ndef fb() { relu }\n')
    spec = work / "spec.net"
    spec.write_text('include "a.net"\nnetwork t() { input(3, 8, 8); fa }\n')
    uri = open_doc(client, spec)
    [diag] = await diagnostics_for(client, uri, 1)
    assert "recursive include" in diag.message

    replace_all(client, uri, 'include "../outside.net"\nnetwork t() { input(3, 8, 8); leak }\n', 2)
    [diag] = await diagnostics_for(client, uri, 2)
    assert "leaves the spec's folder" in diag.message
    assert diag.range == lsp.Range(lsp.Position(0, 0), lsp.Position(0, 24))
    # go to definition does not follow a refused include either
    assert (
        await client.text_document_definition_async(
            lsp.DefinitionParams(lsp.TextDocumentIdentifier(uri), lsp.Position(0, 12))
        )
        is None
    )


@in_module_loop
async def test_binary_and_oversized_documents(client: LanguageClient, tmp_path):
    path = tmp_path / "bin.net"
    path.write_bytes(b"")
    uri = open_doc(client, path, "\x00\x01\xff\ufffd network \x1b[31m { \ud7ff" * 50)
    [diag] = await diagnostics_for(client, uri, 1)
    assert diag.severity == lsp.DiagnosticSeverity.Error

    big = tmp_path / "big.net"
    big.write_bytes(b"")
    text = "# " + "x" * (10 * 1024 * 1024) + "\nnetwork t() { input(3, 8, 8) }\n"
    started = time.monotonic()
    uri = open_doc(client, big, text)
    [diag] = await diagnostics_for(client, uri, 1)
    assert "larger than the limit" in diag.message
    tokens = await client.text_document_semantic_tokens_full_async(
        lsp.SemanticTokensParams(lsp.TextDocumentIdentifier(uri))
    )
    assert tokens is not None and list(tokens.data) == []
    assert (
        await client.text_document_hover_async(lsp.HoverParams(lsp.TextDocumentIdentifier(uri), lsp.Position(1, 9)))
        is None
    )
    assert time.monotonic() - started < 20
    await alive(client, tmp_path)


@in_module_loop
async def test_a_spec_over_the_work_budget_is_a_diagnostic(client: LanguageClient, tmp_path):
    path = tmp_path / "huge.net"
    path.write_text("")
    uri = open_doc(client, path, "network t() {\n    input(3, 32, 32)\n    block(1000000, dense) { conv(12, 3) }\n}\n")
    [diag] = await diagnostics_for(client, uri, 1)
    assert diag.code == "LimitError" and diag.range.start.line == 2


@in_module_loop
async def test_a_burst_of_changes_checks_the_newest_and_skips_the_rest(client: LanguageClient, tmp_path):
    path = tmp_path / "burst.net"
    path.write_text("")
    lines = "\n".join(f"    l{i}: conv(8, 3)" for i in range(2000))
    text = "network t() {\n    input(3, 8, 8)\n" + lines + "\n}\n"
    uri = open_doc(client, path, text)
    for version in range(2, 22):
        replace_all(client, uri, text.replace("conv(8, 3)", f"conv({version}, 3)", 1), version)
    assert await diagnostics_for(client, uri, 21, timeout=60) == []
    published = [p for p in client.published if p.uri == uri]
    assert len(published) < 21  # queued checks of superseded versions were skipped
    assert published[-1].version == 21


@in_module_loop
async def test_a_5000_line_document_never_blocks_requests(client: LanguageClient, tmp_path):
    path = tmp_path / "long.net"
    path.write_text("")
    body = "\n".join(f"    l{i}: conv(8, 3)" for i in range(5000))
    text = "network t() {\n    input(3, 8, 8)\n" + body + "\n}\n"
    small = tmp_path / "small.net"
    small.write_text(SMALL)
    small_uri = open_doc(client, small)
    await diagnostics_for(client, small_uri, 1)
    uri = open_doc(client, path, text)  # its check runs in the worker while we ask for hovers
    worst = 0.0
    for _ in range(5):
        started = time.monotonic()
        hover = await client.text_document_hover_async(
            lsp.HoverParams(lsp.TextDocumentIdentifier(small_uri), lsp.Position(2, 8))
        )
        worst = max(worst, time.monotonic() - started)
        assert hover is not None
    assert worst < 2.0
    await diagnostics_for(client, uri, 1, timeout=120)


@in_module_loop
async def test_cancelled_requests_leave_the_server_up(client: LanguageClient, tmp_path):
    """$/cancelRequest right after each request: each is answered (a result or RequestCancelled),
    and the server goes on."""
    path = tmp_path / "c.net"
    path.write_text(SMALL)
    uri = open_doc(client, path)
    await diagnostics_for(client, uri, 1)
    params = lsp.SemanticTokensParams(lsp.TextDocumentIdentifier(uri))
    answers = []
    for k in range(10):
        msg_id = f"cancel-{k}"
        future = client.protocol.send_request_async(lsp.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL, params, msg_id=msg_id)
        client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=msg_id))
        try:
            answers.append(await asyncio.wait_for(future, 30))
        except JsonRpcException as exc:  # RequestCancelled
            answers.append(exc)
    assert len(answers) == 10
    await alive(client, tmp_path)


@in_module_loop
async def test_a_running_check_is_interrupted_by_a_newer_change(client: LanguageClient, tmp_path):
    """A check of a large dense block takes seconds; a change that arrives meanwhile stops it, so
    the new version's diagnostics come long before the old check would have finished."""
    slow_text = "network t() {\n    input(3, 8, 8)\n    block(450, dense) { conv(4, 3) }\n}\n"
    full = tmp_path / "full.net"
    full.write_text(slow_text)
    started = time.monotonic()
    uri = open_doc(client, full)
    assert await diagnostics_for(client, uri, 1, timeout=120) == []
    uninterrupted = time.monotonic() - started

    path = tmp_path / "interrupted.net"
    path.write_text(slow_text)
    uri = open_doc(client, path)
    await asyncio.sleep(0.3)  # its check is running now
    started = time.monotonic()
    replace_all(client, uri, SMALL, 2)
    assert await diagnostics_for(client, uri, 2, timeout=120) == []
    assert time.monotonic() - started < uninterrupted / 2
    assert not [p for p in client.published if p.uri == uri and p.version == 1]
    await alive(client, tmp_path)


@in_module_loop
async def test_workspace_symbols_cover_every_spec_under_the_folder(client: LanguageClient, tmp_path):
    """The networks and templates of every .net file under the workspace (the repository here:
    its specs, docs and the invalid-spec corpus, which must not upset the search)."""
    found = await client.workspace_symbol_async(lsp.WorkspaceSymbolParams(query=""))
    assert found is not None
    names = {(s.name, s.kind) for s in found}
    assert ("densenet_bc", lsp.SymbolKind.Class) in names and ("bottleneck", lsp.SymbolKind.Function) in names
    [bc] = [s for s in found if s.name == "densenet_bc"]
    assert isinstance(bc.location, lsp.Location)
    assert bc.location.uri == (ROOT / "specs" / "densenet_bc.net").as_uri()
    text = (ROOT / "specs" / "densenet_bc.net").read_text()
    line = text.split("\n").index(next(x for x in text.split("\n") if x.startswith("network densenet_bc(")))
    assert bc.location.range.start == lsp.Position(line, len("network "))


def _frame(payload: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(payload) + payload


def _message(obj) -> bytes:
    return _frame(json.dumps(obj).encode())


def test_malformed_json_rpc_then_a_valid_session(tmp_path):
    """Raw bytes on stdin: garbage frames and invalid messages are ignored or answered with an
    error; a valid initialize/shutdown/exit afterwards works and the exit code is 0."""
    garbage = [
        _frame(b"{not json"),
        _frame(b"[1, 2, 3]"),
        _frame(b'"a string"'),
        _message({"jsonrpc": "2.0", "id": 7, "method": "textDocument/hover", "params": {"bad": True}}),
        _message({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": None}),
        _frame('{"jsonrpc": "2.0", "id": 8, "method": "\u00e9"}'.encode()),
    ]
    session = [
        _message(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}, "processId": None}}
        ),
        _message({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        _message({"jsonrpc": "2.0", "id": 2, "method": "shutdown"}),
        _message({"jsonrpc": "2.0", "method": "exit"}),
    ]
    proc = subprocess.run(
        SERVER_COMMAND, input=b"".join(garbage + session), capture_output=True, env=SERVER_ENV, timeout=60, cwd=tmp_path
    )
    out = proc.stdout.decode("utf-8", errors="replace")
    assert '"id": 1' in out and '"capabilities"' in out  # initialize answered after the garbage
    assert '"id": 2' in out
    assert proc.returncode == 0


class RawClient:
    """A client written on the standard library only (no pygls): frames, ids, and the server's
    notifications kept aside, as an editor's own client would."""

    def __init__(self, cwd):
        self.proc = subprocess.Popen(
            SERVER_COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=SERVER_ENV,
            cwd=cwd,
        )
        self.next_id = 0
        self.notes: list[dict] = []

    def send(self, obj) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(_message(obj))
        self.proc.stdin.flush()

    def read(self) -> dict:
        assert self.proc.stdout is not None
        length = None
        while True:
            line = self.proc.stdout.readline()
            assert line, "the server closed its output"
            if line in (b"\r\n", b"\n"):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        assert length is not None
        return json.loads(self.proc.stdout.read(length))

    def request(self, method: str, params) -> dict:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            msg = self.read()
            if msg.get("id") == self.next_id and "method" not in msg:
                return msg
            self.notes.append(msg)

    def notification(self, method: str, where) -> dict:
        while True:
            for note in self.notes:
                if note.get("method") == method and where(note["params"]):
                    return note["params"]
            self.notes.append(self.read())


def test_a_standard_library_client_session(tmp_path):
    spec = tmp_path / "t.net"
    text = "network t(k=4) {\n    input(3, 8, 8)\n    stem: conv(k, 3)\n    rleu\n}\n"
    spec.write_text(text)
    client = RawClient(tmp_path)
    try:
        init = client.request("initialize", {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}})
        caps = init["result"]["capabilities"]
        assert caps["hoverProvider"] and caps["definitionProvider"] and caps["documentFormattingProvider"]
        assert "completionProvider" in caps and "semanticTokensProvider" in caps and caps["inlayHintProvider"]
        client.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        uri = spec.as_uri()
        doc = {"uri": uri, "languageId": "netdsl", "version": 1, "text": text}
        client.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}})
        params = client.notification("textDocument/publishDiagnostics", lambda p: p["uri"] == uri)
        [diag] = params["diagnostics"]
        assert diag["range"] == {"start": {"line": 3, "character": 4}, "end": {"line": 3, "character": 8}}
        assert diag["severity"] == 1 and diag["source"] == "netdsl"

        fixed = text.replace("rleu", "relu")
        change = {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": fixed}]}
        client.send({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": change})
        params = client.notification("textDocument/publishDiagnostics", lambda p: p.get("version") == 2)
        assert params["diagnostics"] == []
        at = {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 12}}
        hover = client.request("textDocument/hover", at)["result"]
        assert hover["contents"]["kind"] == "markdown" and "4\u00d78\u00d78" in hover["contents"]["value"]
        items = client.request("textDocument/completion", at)["result"]
        labels = {i["label"] for i in (items["items"] if isinstance(items, dict) else items)}
        assert {"conv", "relu", "k", "stem"} <= labels
        assert client.request("shutdown", None)["result"] is None
        client.send({"jsonrpc": "2.0", "method": "exit"})
        assert client.proc.wait(30) == 0
    finally:
        if client.proc.poll() is None:
            client.proc.kill()
