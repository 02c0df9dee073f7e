"""The report's spec section: the root spec and its included files, highlighted."""

from __future__ import annotations

import os
from pathlib import Path

from .page import esc


def spec_sources(path: Path, text: str) -> list[tuple[str, str]]:
    """The root spec and the files it includes that define its templates, each as (name, text):
    the name relative to the root spec's folder (``lib/densenet.net``) where it lies below it."""
    from ..frontend.load import collect_templates, load_module

    module, _ = load_module(path, text)
    found = {str(path): text}
    for t in collect_templates(module, path).values():
        if t.span is not None and t.span.text is not None:
            found.setdefault(t.span.file, t.span.text)
    out = []
    for file, source in found.items():
        rel = os.path.relpath(file, path.parent)
        out.append((path.name if file == str(path) else (Path(file).name if rel.startswith("..") else rel), source))
    return out


def highlighted(sources: list[tuple[str, str]]) -> tuple[str, str]:
    """The spec and its includes highlighted by :class:`netdsl.highlight.NetdslLexer`, with line
    numbers, and the stylesheet for its classes."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter

    from ..highlight import NetdslLexer

    fmt = HtmlFormatter(linenos="table", cssclass="spec", style="default", wrapcode=True)
    (_, root), *included = sources
    out = highlight(root, NetdslLexer(), fmt)
    for name, text in included:
        out += f"<details><summary>included: {esc(name)}</summary>{highlight(text, NetdslLexer(), fmt)}</details>"
    return out, fmt.get_style_defs(".spec")
