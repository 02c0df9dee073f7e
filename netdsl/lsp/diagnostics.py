"""An analysis as LSP diagnostics: the error and warnings ``netdsl check`` prints, each with the
exact range of its span, its hint, related locations (the other place of an error that involves
two) and, in ``data``, the quick fix its hint names (fixes.py turns that into a code action)."""

from __future__ import annotations

import re
from pathlib import Path

from lsprotocol import types as lsp

from ..display import shown
from ..errors import NetdslError, Span
from ..frontend import ast
from .analysis import Analysis
from .positions import same_file, span_range
from .syntax import walk

SOURCE = "netdsl"
# "first defined at specs/x.net:3:5", "'k' is declared at x.net:1:12": a second place named in a message
_PLACE = re.compile(r"((?:[^\s'\"(),]+)\.net):(\d+):(\d+)")
_DID_YOU_MEAN = re.compile(r"did you mean (.+)\?")
_QUOTED = re.compile(r"'([^']*)'")
_ADD = re.compile(r"^add '(.)'$")
_DUPLICATE_LABEL = re.compile(r"the name '([^']+)' is (?:already used in this scope|used twice)")


def to_diagnostics(a: Analysis) -> list[lsp.Diagnostic]:
    out = []
    if a.error is not None:
        out.append(_diagnostic(a, a.error, lsp.DiagnosticSeverity.Error))
    for w in a.warnings:
        out.append(_diagnostic(a, w, lsp.DiagnosticSeverity.Warning))
    return out


def _diagnostic(a: Analysis, err: NetdslError, severity: lsp.DiagnosticSeverity) -> lsp.Diagnostic:
    span = err.span
    related: list[lsp.DiagnosticRelatedInformation] = []
    message = shown(err.message)  # control characters of a name in the spec shown as escapes
    if span is not None and not same_file(span.file, a.path) and span.file != str(a.path):
        # the mistake is in an included file: shown on this file's include, located there too
        where = _include_span(a, span) or Span(str(a.path), 1, 1)
        related.append(_related(span, "the error is here"))
        message = f"in {Path(span.file).name}:{span.line}:{span.column}: {message}"
        rng = span_range(where, a.text)
    else:
        rng = span_range(span, a.text)
    if err.hint:
        message += "\nhint: " + shown(err.hint)
    related += _places(a, err)
    data = _fix(err)
    return lsp.Diagnostic(
        range=rng,
        message=message,
        severity=severity,
        source=SOURCE,
        code=type(err).__name__,
        related_information=related or None,
        data=data,
    )


def _related(span: Span, message: str) -> lsp.DiagnosticRelatedInformation:
    if span.text is not None:
        rng = span_range(span, span.text)
    else:  # a place in a file whose text we do not hold: the span's own numbers, a point if no end
        start = lsp.Position(max(span.line - 1, 0), max(span.column - 1, 0))
        end = (
            lsp.Position(span.end_line - 1, span.end_column - 1)
            if span.end_line is not None and span.end_column is not None
            else lsp.Position(start.line, start.character + 1)
        )
        rng = lsp.Range(start, end)
    return lsp.DiagnosticRelatedInformation(
        location=lsp.Location(uri=Path(span.file).absolute().as_uri(), range=rng), message=message
    )


def _places(a: Analysis, err: NetdslError) -> list[lsp.DiagnosticRelatedInformation]:
    """The second place an error involves: a ``FILE:LINE:COL`` its message or hint names, or the
    first use of a label defined twice."""
    out = []
    for text in (err.message, err.hint or ""):
        for m in _PLACE.finditer(text):
            file, line, col = m.group(1), int(m.group(2)), int(m.group(3))
            path = Path(file) if Path(file).is_absolute() else a.path.parent / file
            source = a.text if same_file(path, a.path) else None
            span = Span(str(path), line, col, text=source)
            out.append(_related(span, "defined here" if "defined" in text or "declared" in text else "see here"))
    label = _DUPLICATE_LABEL.search(err.message)
    if label and a.module is not None and err.span is not None:
        first = _first_label(a.module, label.group(1), err.span)
        if first is not None:
            out.append(_related(first, f"'{label.group(1)}' is first used here"))
    return out


def _first_label(module: ast.Module, label: str, after: Span) -> Span | None:
    for node in walk(module):
        if (
            isinstance(node, ast.OpStmt)
            and node.label == label
            and (node.span.line, node.span.column)
            < (
                after.line,
                after.column,
            )
        ):
            s = node.span
            return Span(s.file, s.line, s.column, s.line, s.column + len(label), text=s.text)
    return None


def _include_span(a: Analysis, span: Span) -> Span | None:
    """The include statement of this file through which the file of ``span`` was read."""
    if a.module is None:
        return None
    for inc in a.module.includes:
        if Path(inc.path).name == Path(span.file).name or inc.path in span.file:
            return inc.span
    return a.module.includes[0].span if a.module.includes else None


def _fix(err: NetdslError) -> dict | None:
    """The quick fix a hint names, as plain data the code action reads back: replacements for
    'did you mean ...?', or text to add at the end for a bracket the file never closes."""
    hint = err.hint or ""
    m = _DID_YOU_MEAN.search(hint)
    if m and err.span is not None:
        return {"replace": _QUOTED.findall(m.group(1))}
    m = _ADD.match(hint)
    if m and "the file ends before" in err.message:
        return {"append": m.group(1)}
    return None
