"""One document's analysis: what ``netdsl check`` finds in it (the error, the warnings of
lowering and ``expect``), and the AST and IR graph that hover, completion, navigation and inlay
hints read. Runs in the server's worker thread; never raises."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from ..errors import IRError, NetdslError, Span
from ..frontend import Limits, ast
from ..frontend.load import collect_templates, lower_spec
from ..frontend.parser import parse
from ..frontend.source import OPEN_BUFFERS
from ..ir import lint
from ..ir.graph import BlockInfo, blocks
from ..passes import default_passes, run_pipeline
from ..pipeline import DEFAULT_OPT, opt_passes
from .positions import same_file


class _RecordingBuffers(dict):
    """The open buffers, remembering every file the frontend asked for: the included files this
    analysis read, so a change to one of them re-checks this document."""

    def __init__(self, texts: Mapping[Path, str]):
        super().__init__(texts)
        self.asked: set[Path] = set()

    def __bool__(self) -> bool:  # consulted even when no buffer is open, so every read is recorded
        return True

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


@dataclass
class Analysis:
    uri: str
    path: Path
    version: int | None
    text: str
    module: ast.Module | None = None  # None when the text does not parse
    templates: dict[str, ast.Template] = field(default_factory=dict)  # this file's and its includes'
    graph: nx.DiGraph | None = None  # the lowered, counted graph of a spec that checks
    error: NetdslError | None = None
    warnings: list[NetdslError] = field(default_factory=list)
    reads: set[Path] = field(default_factory=set)  # the included files read (resolved paths)
    _nodes_at: dict | None = field(default=None, repr=False)

    def nodes_at(self, span: Span) -> list[str]:
        """The graph's nodes made by the statement whose call starts at ``span`` (in any file:
        a line of an included template made nodes for every unit that calls it), in creation order."""
        if self.graph is None:
            return []
        if self._nodes_at is None:
            index: dict[tuple[str, int, int], list[str]] = {}
            for n, d in self.graph.nodes(data=True):
                s = d.get("span")
                if s is not None:
                    index.setdefault((_real(s.file), s.line, s.column), []).append(n)
            self._nodes_at = index
        return self._nodes_at.get((_real(span.file), span.line, span.column), [])

    def blocks_at(self, span: Span) -> list[BlockInfo]:
        """The blocks the ``block(...)`` statement at ``span`` made (one per loop iteration)."""
        if self.graph is None:
            return []
        return [
            b
            for b in blocks(self.graph)
            if b.span is not None
            and (b.span.line, b.span.column) == (span.line, span.column)
            and same_file(b.span.file, span.file)
        ]


_REAL: dict[str, str] = {}


def _real(file: str) -> str:
    if file not in _REAL:
        import os

        _REAL[file] = os.path.realpath(file)
    return _REAL[file]


def analyse(
    uri: str,
    path: Path,
    version: int | None,
    text: str,
    buffers: Mapping[Path, str],
    limits: Limits | None = None,
) -> Analysis:
    """Parse, resolve includes (open buffers first) and lower ``text`` as the spec at ``path``,
    under the work budget ``limits`` (check's defaults), and run check's passes (shapes, counts,
    concat placement); the IR lint runs once at the end (``check`` runs it after every pass,
    which costs more than the rest together and only finds netdsl's own bugs)."""
    a = Analysis(uri, path, version, text)
    recorder = _RecordingBuffers(buffers)
    token = OPEN_BUFFERS.set(recorder)
    try:
        a.module = parse(text, str(path))
        a.templates = collect_templates(a.module, path)
        if a.module.networks or not a.module.templates:
            # a file of templates only (an include library) is not a spec on its own: it is checked
            # through the files that include it; anything else is lowered as `check` lowers it
            graph = lower_spec(path, None, limits or Limits(), text=text)
            a.warnings = list(graph.graph.get("warnings", ()))
            # the passes `check` runs (the default optimization level's too), the lint once after them
            graph = run_pipeline(graph, default_passes() + opt_passes(DEFAULT_OPT), None)
            lint(graph)
            a.graph = graph
    except NetdslError as err:
        a.error = err
    except RecursionError:
        a.error = NetdslError("the spec nests too deeply to analyse", Span(str(path), 1, 1))
    except Exception as exc:  # a bug in netdsl must not take the editor's server down
        a.error = IRError(f"netdsl failed on this spec: {type(exc).__name__}: {exc}", Span(str(path), 1, 1))
    finally:
        OPEN_BUFFERS.reset(token)
        a.reads = set(recorder.asked)
    return a
