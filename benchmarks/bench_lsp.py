"""Latency of `netdsl lsp` over stdio on specs/densenet_bc.net, as an editor sees it: from a
change to its diagnostics (parse, includes, lowering, counts), and hover and completion round
trips; medians of repeated runs. Figures and command in docs/editors.md.

    python benchmarks/bench_lsp.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient


async def main(repeat: int) -> None:
    spec = ROOT / "specs" / "densenet_bc.net"
    text = spec.read_text()
    uri = spec.as_uri()
    client = LanguageClient("bench-lsp", "1")
    published: dict[int, float] = {}

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: lsp.PublishDiagnosticsParams) -> None:
        if params.uri == uri and params.version is not None:
            published[params.version] = time.perf_counter()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    await client.start_io(sys.executable, "-m", "netdsl", "lsp", env=env, cwd=str(ROOT))
    await client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities(), root_uri=ROOT.as_uri()))
    client.initialized(lsp.InitializedParams())
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri=uri, language_id="netdsl", version=1, text=text))
    )
    while 1 not in published:
        await asyncio.sleep(0.001)

    diag = []
    for version in range(2, repeat + 2):
        # a real edit each time: k alternates, so every check lowers a different network
        changed = text.replace("k=12", f"k={12 + version % 2}", 1)
        start = time.perf_counter()
        client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
                [lsp.TextDocumentContentChangeWholeDocument(text=changed)],
            )
        )
        while version not in published:
            await asyncio.sleep(0.0005)
        diag.append(published[version] - start)

    ident = lsp.TextDocumentIdentifier(uri)
    line = text.splitlines().index("    stem: conv(2 * k, 3)")
    hover, completion = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        result = await client.text_document_hover_async(lsp.HoverParams(ident, lsp.Position(line, 8)))
        hover.append(time.perf_counter() - start)
        assert result is not None
        start = time.perf_counter()
        await client.text_document_completion_async(lsp.CompletionParams(ident, lsp.Position(line + 6, 4)))
        completion.append(time.perf_counter() - start)

    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()

    def ms(xs: list[float]) -> str:
        return f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"

    print(f"specs/densenet_bc.net, {repeat} runs each, over stdio")
    print(f"diagnostics after a change: {ms(diag)}")
    print(f"hover:                      {ms(hover)}")
    print(f"completion:                 {ms(completion)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    asyncio.run(main(ap.parse_args().repeat))
