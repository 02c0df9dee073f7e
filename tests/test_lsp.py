"""`netdsl lsp` end to end over stdio with a real LSP client (pytest-lsp): one server for the
module; each test writes its specs to its own folder. The expected ranges, shapes and counts come
from the frontend and the IR directly, not from the server."""

from __future__ import annotations

import shutil
from pathlib import Path

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
from pytest_lsp import ClientServerConfig, LanguageClient

from netdsl import pipeline
from netdsl.errors import NetdslError
from netdsl.fmt import format_text
from netdsl.frontend import lower_spec
from netdsl.lsp.describe import TIMES
from netdsl.ops import SPEC_OPS

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND, server_env=SERVER_ENV))
async def client(lsp_client: LanguageClient):
    record_diagnostics(lsp_client)
    await lsp_client.initialize_session(initialize_params())
    yield
    await lsp_client.shutdown_session()


def densenet_folder(tmp: Path) -> Path:
    """specs/densenet_bc.net and its include, copied into ``tmp``."""
    (tmp / "lib").mkdir()
    shutil.copy(ROOT / "specs" / "lib" / "densenet.net", tmp / "lib" / "densenet.net")
    shutil.copy(ROOT / "specs" / "densenet_bc.net", tmp / "densenet_bc.net")
    return tmp / "densenet_bc.net"


def expected_error(path: Path, text: str) -> NetdslError:
    with pytest.raises(NetdslError) as info:
        lower_spec(path, text=text)
    return info.value


def position_of(text: str, needle: str, offset: int = 0) -> lsp.Position:
    index = text.index(needle) + offset
    line = text.count("\n", 0, index)
    return lsp.Position(line, index - (text.rfind("\n", 0, index) + 1))


async def test_diagnostic_range_hint_and_quick_fix_then_fixed_by_a_change(client: LanguageClient, tmp_path):
    path = densenet_folder(tmp_path)
    good = path.read_text()
    bad = good.replace("{ bottleneck(k) }", "{ botleneck(k) }")
    uri = open_doc(client, path, bad)
    [diag] = await diagnostics_for(client, uri, 1)
    err = expected_error(path, bad)
    assert err.span is not None and err.span.end_line is not None and err.span.end_column is not None
    assert diag.range == lsp.Range(
        lsp.Position(err.span.line - 1, err.span.column - 1),
        lsp.Position(err.span.end_line - 1, err.span.end_column - 1),
    )
    assert diag.range.start == position_of(bad, "botleneck")  # the name, start to end
    assert diag.range.end == position_of(bad, "botleneck", len("botleneck"))
    assert diag.severity == lsp.DiagnosticSeverity.Error
    assert diag.message == f"{err.message}\nhint: {err.hint}"

    actions = await client.text_document_code_action_async(
        lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri),
            range=diag.range,
            context=lsp.CodeActionContext(diagnostics=[diag]),
        )
    )
    assert actions is not None
    fix = next(a for a in actions if isinstance(a, lsp.CodeAction) and a.title == "Change to 'bottleneck'")
    assert fix.edit is not None and list(fix.edit.changes[uri]) == [lsp.TextEdit(diag.range, "bottleneck")]

    replace_all(client, uri, good, 2)
    assert await diagnostics_for(client, uri, 2) == []


async def test_unclosed_brace_quick_fix_and_label_defined_twice(client: LanguageClient, tmp_path):
    path = tmp_path / "t.net"
    path.write_text("")
    uri = open_doc(client, path, "network t(k=4) {\n    input(3, 8, 8)\n    conv(k, 3)\n")
    [diag] = await diagnostics_for(client, uri, 1)
    assert diag.range.start == lsp.Position(0, 15)  # the '{' never closed
    actions = await client.text_document_code_action_async(
        lsp.CodeActionParams(lsp.TextDocumentIdentifier(uri), diag.range, lsp.CodeActionContext([diag]))
    )
    assert actions and list(actions[0].edit.changes[uri]) == [  # type: ignore[union-attr]
        lsp.TextEdit(lsp.Range(lsp.Position(3, 0), lsp.Position(3, 0)), "}\n")
    ]

    twice = "network t() {\n    input(3, 8, 8)\n    a: conv(4, 3)\n    a: relu\n}\n"
    replace_all(client, uri, twice, 2)
    [diag] = await diagnostics_for(client, uri, 2)
    assert "already used" in diag.message
    [related] = diag.related_information or []
    assert related.location.uri == uri
    assert related.location.range == lsp.Range(lsp.Position(2, 4), lsp.Position(2, 5))  # the first 'a:'


async def test_hover_shows_the_node_unit_and_block_counts_of_the_ir(client: LanguageClient, tmp_path):
    path = densenet_folder(tmp_path)
    text = path.read_text()
    uri = open_doc(client, path)
    assert await diagnostics_for(client, uri, 1) == []
    graph = pipeline.compile_target(path, opt=0).graph

    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), position_of(text, "stem:"))
    )
    assert hover is not None and isinstance(hover.contents, lsp.MarkupContent)
    stem = graph.nodes["stem"]
    c, h, w = stem["shape"]
    assert (
        f"`stem`: {c}{TIMES}{h}{TIMES}{w} · {stem['params']:,} parameters · {stem['flops']:,} FLOPs"
        in hover.contents.value
    )

    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), position_of(text, "block(n"))
    )
    assert hover is not None and isinstance(hover.contents, lsp.MarkupContent)
    block1 = graph.graph["blocks"][0]
    params = sum(d["params"] for n, d in graph.nodes(data=True) if n.startswith("block1."))
    shape = TIMES.join(map(str, graph.nodes[block1.output]["shape"]))
    assert f"block `block1` (dense, {len(block1.units)} units): {shape} · {params:,} parameters" in hover.contents.value

    # on the op name: its registry entry
    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), position_of(text, "conv(2"))
    )
    assert hover is not None and isinstance(hover.contents, lsp.MarkupContent)
    assert "conv(out, kernel=3, stride=1" in hover.contents.value
    assert SPEC_OPS["conv"].doc.split(";")[0].replace("-", "\\-") in hover.contents.value

    # a parameter: its default, its domain, the presets that override it
    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), position_of(text, "(depth=100", 1))
    )
    assert hover is not None and isinstance(hover.contents, lsp.MarkupContent)
    assert "default: `100`" in hover.contents.value and "`densenet_bc250_k24`: `depth=250`" in hover.contents.value


async def test_completion_definition_and_formatting(client: LanguageClient, tmp_path):
    path = densenet_folder(tmp_path)
    text = path.read_text()
    uri = open_doc(client, path)
    await diagnostics_for(client, uri, 1)

    result = await client.text_document_completion_async(
        lsp.CompletionParams(lsp.TextDocumentIdentifier(uri), position_of(text, "head(classes)"))
    )
    items = {i.label: i for i in (result.items if isinstance(result, lsp.CompletionList) else result or [])}
    assert set(SPEC_OPS) <= set(items)
    assert items["conv"].detail == "conv(out, kernel=3, stride=1, pad=none, groups=1, dilation=1, bias=false)"
    assert {"bottleneck", "transition", "head", "depth", "k", "n", "stem", "block", "path", "network"} <= set(items)

    locations = await client.text_document_definition_async(
        lsp.DefinitionParams(lsp.TextDocumentIdentifier(uri), position_of(text, "ottleneck(k)"))
    )
    assert isinstance(locations, list)
    lib = (tmp_path / "lib" / "densenet.net").read_text()
    assert locations == [
        lsp.Location(
            (tmp_path / "lib" / "densenet.net").as_uri(),
            lsp.Range(position_of(lib, "bottleneck(k, width"), position_of(lib, "bottleneck(k, width", 10)),
        )
    ]

    messy = text.replace("stem: conv(2 * k, 3)", "stem:conv( 2*k,3 )")
    replace_all(client, uri, messy, 2)
    edits = await client.text_document_formatting_async(
        lsp.DocumentFormattingParams(lsp.TextDocumentIdentifier(uri), lsp.FormattingOptions(4, True))
    )
    assert edits is not None and len(edits) == 1 and edits[0].new_text == format_text(messy, str(path))


async def test_an_include_resolves_to_its_open_buffer_and_its_change_rechecks_the_includer(
    client: LanguageClient, tmp_path
):
    path = densenet_folder(tmp_path)
    lib = tmp_path / "lib" / "densenet.net"
    root_uri = open_doc(client, path)
    assert await diagnostics_for(client, root_uri, 1) == []
    lib_uri = open_doc(client, lib)
    broken = lib.read_text().replace("def bottleneck(", "def bottleneck2(")  # unsaved: the disk keeps the old name
    replace_all(client, lib_uri, broken, 2)
    await _until(lambda: any(p.uri == root_uri and p.diagnostics for p in client.published))
    published = [p for p in client.published if p.uri == root_uri][-1]
    [diag] = published.diagnostics
    assert "unknown op or template 'bottleneck'" in diag.message and "bottleneck2" in diag.message


async def test_requests_for_a_document_never_opened_are_answered_empty(client: LanguageClient, tmp_path):
    secret = tmp_path / "never_opened.net"
    secret.write_text("network t() { input(3, 8, 8); conv(4, 3) }\n")
    ident = lsp.TextDocumentIdentifier(secret.as_uri())
    assert await client.text_document_hover_async(lsp.HoverParams(ident, lsp.Position(0, 32))) is None
    assert await client.text_document_completion_async(lsp.CompletionParams(ident, lsp.Position(0, 32))) is None
    assert (
        await client.text_document_formatting_async(lsp.DocumentFormattingParams(ident, lsp.FormattingOptions(4, True)))
        is None
    )


async def _until(condition, timeout: float = 30.0) -> None:
    import asyncio

    async def wait():
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), timeout)


async def test_outline_references_inlay_hints_and_range_formatting(client: LanguageClient, tmp_path):
    path = densenet_folder(tmp_path)
    text = path.read_text()
    uri = open_doc(client, path)
    await diagnostics_for(client, uri, 1)
    ident = lsp.TextDocumentIdentifier(uri)
    graph = pipeline.compile_target(path, opt=0).graph

    outline = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(ident))
    assert outline is not None
    [net] = [s for s in outline if isinstance(s, lsp.DocumentSymbol) and s.kind == lsp.SymbolKind.Class]
    assert net.name == "densenet_bc"
    assert [c.name for c in net.children or []] == [
        "depth",
        "k",
        "classes",
        "theta",
        "connect",
        "size",
        "n",
        "stem",
        "block",
    ]

    refs = await client.text_document_references_async(
        lsp.ReferenceParams(
            context=lsp.ReferenceContext(include_declaration=True),
            text_document=ident,
            position=position_of(text, "theta * "),
        )
    )
    assert refs is not None
    assert [r.range.start for r in refs] == [position_of(text, "theta=0.5"), position_of(text, "theta * ")]

    hints = await client.text_document_inlay_hint_async(
        lsp.InlayHintParams(ident, lsp.Range(lsp.Position(0, 0), lsp.Position(len(text.splitlines()), 0)))
    )
    assert hints is not None
    by_line = {h.position.line: h.label for h in hints}
    stem_line = position_of(text, "stem:").line
    assert by_line[stem_line] == " → " + TIMES.join(map(str, graph.nodes["stem"]["shape"]))
    assert by_line[position_of(text, "head(").line] == " → " + TIMES.join(
        map(str, graph.nodes[graph.graph["output"]]["shape"])
    )

    messy = text.replace("stem: conv(2 * k, 3)", "stem:conv( 2*k,3 )").replace("head(classes)", "head( classes )")
    replace_all(client, uri, messy, 2)
    edits = await client.text_document_range_formatting_async(
        lsp.DocumentRangeFormattingParams(
            ident, lsp.Range(lsp.Position(stem_line, 0), lsp.Position(stem_line, 5)), lsp.FormattingOptions(4, True)
        )
    )
    assert edits is not None and [(e.range.start.line, e.new_text) for e in edits] == [
        (stem_line, "    stem: conv(2 * k, 3)\n")
    ]  # the head line, outside the range, is left alone


async def test_ranges_are_in_utf16_units_after_a_character_outside_the_bmp(client: LanguageClient, tmp_path):
    path = tmp_path / "emoji.net"
    path.write_text("")
    text = 'network t() {\n    input(3, 8, 8)\n    expect(true, "\U0001f600"); rleu\n}\n'
    uri = open_doc(client, path, text)
    [diag] = await diagnostics_for(client, uri, 1)
    column = text.split("\n")[2].index("rleu")  # in code points; the emoji is two UTF-16 units
    assert diag.range == lsp.Range(lsp.Position(2, column + 1), lsp.Position(2, column + 5))


async def test_inlay_hints_follow_the_client_setting(client: LanguageClient, tmp_path):
    path = tmp_path / "t.net"
    path.write_text("network t() {\n    input(3, 8, 8)\n    conv(4, 3)\n}\n")
    uri = open_doc(client, path)
    await diagnostics_for(client, uri, 1)
    params = lsp.InlayHintParams(lsp.TextDocumentIdentifier(uri), lsp.Range(lsp.Position(0, 0), lsp.Position(4, 0)))

    def configure(on: bool) -> None:
        client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"netdsl": {"inlayHints": on}})
        )

    configure(False)
    assert await client.text_document_inlay_hint_async(params) is None
    configure(True)
    hints = await client.text_document_inlay_hint_async(params)
    assert hints is not None and [(h.position.line, h.label) for h in hints] == [
        (1, f" → 3{TIMES}8{TIMES}8"),
        (2, f" → 4{TIMES}8{TIMES}8"),
    ]
