"""The language server: pygls wiring of the protocol to analysis, diagnostics, hover, completion,
navigation, formatting, semantic tokens and inlay hints.

Concurrency: the event loop answers requests; checking a document (parse, includes, lowering,
counts) runs in one worker thread, newest version first in spirit: a check that was queued for a
version the user has since changed is skipped when its turn comes, and a finished check whose
document changed meanwhile is not published. Heavy read-only requests (semantic tokens,
formatting, workspace symbols) run in a second small pool, so the loop never stalls on them.

Requests only ever read documents the client opened (never a file named by a URI the client
made up), included files through the frontend's confinement, and .net files under the workspace
folders for workspace symbols.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from .._version import __version__
from ..errors import NetdslError
from ..fmt import format_text
from ..frontend import Limits, ast
from ..frontend.parser import MAX_SOURCE_BYTES
from .analysis import Analysis, analyse
from .cancel import Interruptible
from .completion import completions
from .diagnostics import to_diagnostics
from .fixes import code_actions
from .hints import inlay_hints
from .hover import hover_markdown
from .navigation import definition, document_symbols, references, workspace_symbols
from .positions import lines_of
from .tokens import TOKEN_MODIFIERS, TOKEN_TYPES, semantic_tokens

log = logging.getLogger(__name__)
# Lowering recurses deeply on nested specs (netdsl/frontend/load.py raises the recursion limit to
# 8000 frames); a worker thread's default stack would overflow before that.
WORKER_STACK_BYTES = 256 << 20
UNTITLED_FOLDER = Path("/nonexistent-netdsl-untitled")  # an unsaved buffer: includes from the library only


class NetdslLanguageServer(LanguageServer):
    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__("netdsl", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.limits = limits or Limits()
        old = threading.stack_size()
        threading.stack_size(WORKER_STACK_BYTES)
        try:
            self.checker = ThreadPoolExecutor(1, thread_name_prefix="netdsl-check")
            self.checker.submit(lambda: None).result()  # start the thread with the large stack now
        finally:
            threading.stack_size(old)
        self.readers = ThreadPoolExecutor(2, thread_name_prefix="netdsl-read")
        self.running = Interruptible()  # the check in the worker, interrupted when its document changes
        self.generation: dict[str, int] = {}  # uri -> number of the newest check asked for
        self.analyses: dict[str, Analysis] = {}  # uri -> its newest finished analysis
        self.modules: dict[str, ast.Module] = {}  # uri -> its last text that parsed (completion while typing)
        self.inlay_hints_enabled = True
        self.tasks: set[asyncio.Task] = set()

    # ---- documents ----------------------------------------------------------------------------
    def opened(self, uri: str):
        """The open document at ``uri``, or None: a URI the client never opened is never read."""
        return self.workspace.text_documents.get(uri)

    def path_of(self, uri: str) -> Path:
        if uri.startswith("file:"):
            fs = to_fs_path(uri)
            if fs:
                return Path(fs).absolute()
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in uri.rsplit("/", 1)[-1])[:100] or "untitled"
        return UNTITLED_FOLDER / (name if name.endswith(".net") else name + ".net")

    def buffers(self) -> dict[Path, str]:
        out = {}
        for uri, doc in list(self.workspace.text_documents.items()):
            if uri.startswith("file:"):
                try:
                    out[self.path_of(uri).resolve()] = doc.source
                except (OSError, RuntimeError):
                    continue
        return out

    def schedule(self, uri: str, cascade: bool = True) -> None:
        self.generation[uri] = self.generation.get(uri, 0) + 1
        # a check of an older version of this document that is still running is stopped now
        self.running.interrupt(lambda key: key[0] == uri and key[1] != self.generation.get(uri))  # type: ignore[index]
        task = asyncio.get_running_loop().create_task(self.check(uri, self.generation[uri], cascade))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def check(self, uri: str, generation: int, cascade: bool) -> None:
        doc = self.opened(uri)
        if doc is None:
            return
        path, version, text, buffers = self.path_of(uri), doc.version, doc.source, self.buffers()

        def run() -> Analysis | None:
            if self.generation.get(uri) != generation:  # a newer change arrived while this one waited
                return None
            return self.running.run((uri, generation), lambda: analyse(uri, path, version, text, buffers, self.limits))

        try:
            result = await asyncio.get_running_loop().run_in_executor(self.checker, run)
        except Exception:  # analyse never raises; this keeps a netdsl bug from killing the task silently
            log.exception("checking %s failed", uri)
            return
        if result is None or self.generation.get(uri) != generation or self.opened(uri) is None:
            return
        self.analyses[uri] = result
        if result.module is not None:
            self.modules[uri] = result.module
        self.publish(uri, result)
        if cascade:  # the files that include this one see its new text
            me = path.resolve() if uri.startswith("file:") else None
            for other, a in list(self.analyses.items()):
                if other != uri and me is not None and me in a.reads:
                    self.schedule(other, cascade=False)

    def publish(self, uri: str, a: Analysis) -> None:
        lines = lines_of(a.text)
        diagnostics = to_diagnostics(a)
        codec = self.workspace.position_codec
        for d in diagnostics:
            d.range = codec.range_to_client_units(lines, d.range)
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=a.version)
        )

    # ---- helpers for requests -----------------------------------------------------------------
    def position(self, uri: str, pos: lsp.Position) -> tuple[Any, int, int] | None:
        doc = self.opened(uri)
        if doc is None:
            return None
        lines = lines_of(doc.source)
        if not 0 <= pos.line < len(lines) or pos.character < 0:  # a position outside the text: nothing there
            return None
        p = self.workspace.position_codec.position_from_client_units(lines, pos)
        return doc, p.line, p.character

    def current(self, uri: str) -> Analysis | None:
        """The newest analysis of ``uri`` if it is of the document's current text."""
        doc = self.opened(uri)
        a = self.analyses.get(uri)
        if doc is None or a is None or a.text != doc.source:
            return None
        return a

    def others(self, uri: str) -> list[Analysis]:
        """The other documents' analyses that hold an IR (a template file's lines get their counts
        from the specs that include it)."""
        me = self.path_of(uri).resolve()
        return [a for u, a in self.analyses.items() if u != uri and a.graph is not None and me in a.reads]

    def client_range(self, text: str, rng: lsp.Range) -> lsp.Range:
        return self.workspace.position_codec.range_to_client_units(lines_of(text), rng)


# (method, options, handler): registered on each server build_server makes.
FEATURES: list[tuple[str, Any, Any]] = []


def feature(method: str, options: Any = None):
    def register(fn):
        FEATURES.append((method, options, fn))
        return fn

    return register


@feature(lsp.INITIALIZE)
def initialize(ls: NetdslLanguageServer, params: lsp.InitializeParams) -> None:
    options = params.initialization_options
    if isinstance(options, dict) and isinstance(options.get("inlayHints"), bool):
        ls.inlay_hints_enabled = options["inlayHints"]


@feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: NetdslLanguageServer, params: lsp.DidChangeConfigurationParams) -> None:
    settings = params.settings
    if isinstance(settings, dict):
        settings = settings.get("netdsl", settings)
        if isinstance(settings, dict) and isinstance(settings.get("inlayHints"), bool):
            ls.inlay_hints_enabled = settings["inlayHints"]


@feature(lsp.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: NetdslLanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri)


@feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: NetdslLanguageServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri)


@feature(lsp.TEXT_DOCUMENT_DID_SAVE)
async def did_save(ls: NetdslLanguageServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri)


@feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
async def did_close(ls: NetdslLanguageServer, params: lsp.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.generation[uri] = ls.generation.get(uri, 0) + 1  # a queued check of it is dropped, a running one stopped
    ls.running.interrupt(lambda key: key[0] == uri)  # type: ignore[index]
    closed = ls.analyses.pop(uri, None)
    ls.modules.pop(uri, None)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
    if closed is not None and uri.startswith("file:"):  # its includers now read the file on disk
        me = ls.path_of(uri).resolve()
        for other, a in list(ls.analyses.items()):
            if me in a.reads:
                ls.schedule(other, cascade=False)


@feature(lsp.TEXT_DOCUMENT_HOVER)
def hover(ls: NetdslLanguageServer, params: lsp.HoverParams) -> lsp.Hover | None:
    at = ls.position(params.text_document.uri, params.position)
    a = ls.current(params.text_document.uri)
    if at is None or a is None or a.module is None:
        return None
    _, line, char = at
    text = hover_markdown(a, a.module, ls.others(params.text_document.uri), line, char)
    if text is None:
        return None
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text))


@feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=['"', "(", ",", "/", "="]))
def completion(ls: NetdslLanguageServer, params: lsp.CompletionParams) -> lsp.CompletionList | None:
    uri = params.text_document.uri
    at = ls.position(uri, params.position)
    if at is None:
        return None
    doc, line, char = at
    a = ls.analyses.get(uri)
    items = completions(
        doc.source, ls.path_of(uri), ls.modules.get(uri), a.templates if a else {}, line, char, _snippets(ls)
    )
    return lsp.CompletionList(is_incomplete=False, items=items)


def _snippets(ls: NetdslLanguageServer) -> bool:
    """Whether the client takes snippets in completion items."""
    caps = ls.client_capabilities
    item = caps.text_document and caps.text_document.completion and caps.text_document.completion.completion_item
    return bool(item and item.snippet_support)


@feature(lsp.TEXT_DOCUMENT_DEFINITION)
def goto_definition(ls: NetdslLanguageServer, params: lsp.DefinitionParams) -> list[lsp.Location] | None:
    uri = params.text_document.uri
    at, a = ls.position(uri, params.position), ls.current(uri)
    if at is None or a is None or a.module is None:
        return None
    doc, line, char = at
    return definition(doc.source, ls.path_of(uri), a.module, a.templates, line, char) or None


@feature(lsp.TEXT_DOCUMENT_REFERENCES)
def find_references(ls: NetdslLanguageServer, params: lsp.ReferenceParams) -> list[lsp.Location] | None:
    uri = params.text_document.uri
    at, a = ls.position(uri, params.position), ls.current(uri)
    if at is None or a is None or a.module is None:
        return None
    doc, line, char = at
    return references(doc.source, ls.path_of(uri), a.module, line, char, params.context.include_declaration) or None


@feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def symbols(ls: NetdslLanguageServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol] | None:
    uri = params.text_document.uri
    a = ls.current(uri)
    if a is None or a.module is None:
        module, doc = ls.modules.get(uri), ls.opened(uri)
        if module is None or doc is None:
            return None
        return document_symbols(module, doc.source)
    return document_symbols(a.module, a.text)


@feature(lsp.WORKSPACE_SYMBOL)
async def workspace_symbol(ls: NetdslLanguageServer, params: lsp.WorkspaceSymbolParams) -> list[lsp.WorkspaceSymbol]:
    folders = [Path(to_fs_path(f.uri) or ".") for f in ls.workspace.folders.values() if f.uri.startswith("file:")]
    if not folders and ls.workspace.root_path:
        folders = [Path(ls.workspace.root_path)]
    opened = ls.buffers()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(ls.readers, workspace_symbols, folders, params.query, opened)


@feature(lsp.TEXT_DOCUMENT_CODE_ACTION)
def code_action(ls: NetdslLanguageServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction] | None:
    doc = ls.opened(params.text_document.uri)
    if doc is None:
        return None
    return code_actions(params.text_document.uri, doc.source, list(params.context.diagnostics)) or None


def _formatted(text: str, path: Path) -> str | None:
    try:
        return format_text(text, str(path))
    except NetdslError:  # a spec that does not parse is not formatted (its diagnostic says why)
        return None


def _keep_ends(text: str) -> list[str]:
    """The lines with their '\\n' (the parser's and LSP's line ends; not str.splitlines')."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _edits(old: str, new: str, first: int = 0, last: int | None = None) -> list[lsp.TextEdit]:
    """Line edits turning ``old`` into ``new``; with ``last``, only those touching lines
    [first, last] (0-based) of ``old``."""
    a, b = _keep_ends(old), _keep_ends(new)
    end = lsp.Position(len(a), 0) if old.endswith("\n") or not a else lsp.Position(len(a) - 1, len(a[-1]))
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if last is not None and (max(i1, i2 - 1) < first or i1 > last):
            continue
        start = lsp.Position(i1, 0) if i1 < len(a) else end
        stop = lsp.Position(i2, 0) if i2 < len(a) else end
        out.append(lsp.TextEdit(lsp.Range(start, stop), "".join(b[j1:j2])))
    return out


@feature(lsp.TEXT_DOCUMENT_FORMATTING)
async def formatting(ls: NetdslLanguageServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
    doc = ls.opened(params.text_document.uri)
    if doc is None:
        return None
    text, path = doc.source, ls.path_of(params.text_document.uri)
    new = await asyncio.get_running_loop().run_in_executor(ls.readers, _formatted, text, path)
    if new is None or new == text:
        return [] if new is not None else None
    lines = lines_of(text)
    end = lsp.Position(len(lines) - 1, len(lines[-1]))
    return [lsp.TextEdit(ls.client_range(text, lsp.Range(lsp.Position(0, 0), end)), new)]


@feature(lsp.TEXT_DOCUMENT_RANGE_FORMATTING)
async def range_formatting(
    ls: NetdslLanguageServer, params: lsp.DocumentRangeFormattingParams
) -> list[lsp.TextEdit] | None:
    doc = ls.opened(params.text_document.uri)
    if doc is None:
        return None
    text, path = doc.source, ls.path_of(params.text_document.uri)
    new = await asyncio.get_running_loop().run_in_executor(ls.readers, _formatted, text, path)
    if new is None:
        return None
    edits = _edits(text, new, params.range.start.line, params.range.end.line)
    for e in edits:
        e.range = ls.client_range(text, e.range)
    return edits


@feature(
    lsp.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL,
    lsp.SemanticTokensLegend(token_types=TOKEN_TYPES, token_modifiers=TOKEN_MODIFIERS),
)
async def tokens_full(ls: NetdslLanguageServer, params: lsp.SemanticTokensParams) -> lsp.SemanticTokens | None:
    doc = ls.opened(params.text_document.uri)
    if doc is None:
        return None
    text = doc.source
    if len(text) > MAX_SOURCE_BYTES:  # a document over the spec size limit is not a spec: not lexed
        return lsp.SemanticTokens(data=[])
    data = await asyncio.get_running_loop().run_in_executor(ls.readers, semantic_tokens, text)
    return lsp.SemanticTokens(data=_to_client_units(ls, text, data))


def _to_client_units(ls: NetdslLanguageServer, text: str, data: list[int]) -> list[int]:
    """Token columns and lengths from characters to the client's units (UTF-16 by default);
    untouched on ASCII text."""
    if text.isascii():
        return data
    lines = lines_of(text)
    units = ls.workspace.position_codec.client_num_units
    out = list(data)
    line = col = 0
    prev_client = 0
    for i in range(0, len(data), 5):
        if data[i]:
            line, col, prev_client = line + data[i], data[i + 1], 0
        else:
            col += data[i + 1]
        length = data[i + 2]
        start = units(lines[line][:col]) if line < len(lines) else col
        out[i + 1] = start - prev_client
        out[i + 2] = units(lines[line][col : col + length]) if line < len(lines) else length
        prev_client = start
    return out


@feature(lsp.TEXT_DOCUMENT_INLAY_HINT)
def inlay_hint(ls: NetdslLanguageServer, params: lsp.InlayHintParams) -> list[lsp.InlayHint] | None:
    uri = params.text_document.uri
    a = ls.current(uri)
    if not ls.inlay_hints_enabled or a is None:
        return None
    hints = inlay_hints(a, ls.others(uri), params.range.start.line, params.range.end.line)
    lines = lines_of(a.text)
    for h in hints:
        h.position = ls.workspace.position_codec.position_to_client_units(lines, h.position)
    return hints


def build_server(limits: Limits | None = None) -> NetdslLanguageServer:
    """A server with every feature registered (made on demand: importing this module starts no
    threads)."""
    ls = NetdslLanguageServer(limits)
    for method, options, fn in FEATURES:
        ls.feature(method, options)(fn)
    return ls


def main() -> None:
    build_server().start_io()
