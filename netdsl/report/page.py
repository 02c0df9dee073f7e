"""The HTML around a report's sections: the page, its stylesheet and the escaping table helpers.

Everything that reaches the page from a spec, a file name, a ``--set`` value or a run folder goes
through :func:`esc` (or Pygments, which escapes the spec it highlights); drawings go through
:func:`netdsl.report.svg.inline_svg`. The page loads nothing and runs no script.

>>> print(table(["name", "params"], [["<b>", 1234]], numeric={1}).replace("<tbody>", "\\n<tbody>"))
<table><thead><tr><th>name</th><th class="num">params</th></tr></thead>
<tbody><tr><td>&lt;b&gt;</td><td class="num">1,234</td></tr></tbody></table>
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from ..display import shown

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --band: #f6f8fa; --accent: #3b6ea5; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: var(--ink); background: white; }
header { padding: 20px 32px 8px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 2px 0; color: var(--muted); }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
main { padding: 0 32px 32px; }
section { margin-top: 28px; }
h2 { font-size: 17px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card b { display: block; font-size: 18px; }
.card span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 3px 10px; text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; }
tfoot td { font-weight: 600; background: var(--band); }
.drawing { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
.drawing svg { display: block; height: auto; }
.fit svg { max-width: 100%; }
.note { color: var(--muted); font-style: italic; }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
.spec { border: 1px solid var(--line); border-radius: 6px; overflow-x: auto; font-size: 13px; }
.spec pre { margin: 0; padding: 10px 12px; line-height: 1.4; }
.spec td { border: none; padding: 0; }
.spec .linenos { color: #8c959f; background: var(--band); user-select: none; text-align: right; }
footer { padding: 12px 32px; color: var(--muted); border-top: 1px solid var(--line); font-size: 12px; }
"""


def esc(value: object) -> str:
    """``value`` as HTML text: control characters made visible (:func:`netdsl.display.shown`),
    then ``& < > " '`` escaped."""
    return html.escape(shown(value), quote=True)


def cell(value: object) -> str:
    """A table cell's text: integers with thousands separators, floats to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return esc("" if value is None else value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return esc(value)


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[object]],
    numeric: AbstractSet[int] = frozenset(),
    foot: Sequence[object] | None = None,
) -> str:
    """An HTML table; ``numeric``: column indexes aligned right; ``foot``: a last row (totals)."""

    def tr(values: Sequence[object], tag: str = "td") -> str:
        return "<tr>" + "".join(_td(tag, v, i in numeric) for i, v in enumerate(values)) + "</tr>"

    out = "<table><thead>" + tr(head, "th") + "</thead><tbody>" + "".join(tr(r) for r in rows) + "</tbody>"
    if foot is not None:
        out += "<tfoot>" + tr(foot) + "</tfoot>"
    return out + "</table>"


def _td(tag: str, value: object, num: bool) -> str:
    return f'<{tag} class="num">{cell(value)}</{tag}>' if num else f"<{tag}>{cell(value)}</{tag}>"


@dataclass(frozen=True)
class Section:
    id: str  # the anchor (a fixed word, never spec text)
    title: str
    body: str  # HTML, already escaped


def page(title: str, subtitle_lines: Sequence[str], sections: Sequence[Section], footer: str, css: str = "") -> str:
    """The whole document. ``title``, ``subtitle_lines`` and ``footer`` are plain text (escaped
    here); ``css``: more stylesheet (the highlighter's)."""
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    subtitle = "".join(f"<p>{esc(line)}</p>" for line in subtitle_lines)
    body = "".join(f'<section id="{s.id}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # the page needs nothing from anywhere, and may run nothing: say so to the browser too
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{esc(title)}</title><style>{CSS}{css}</style></head>\n"
        f"<body><header><h1>{esc(title)}</h1>{subtitle}<nav>{nav}</nav></header>\n"
        f"<main>{body}</main>\n<footer>{esc(footer)}</footer></body></html>\n"
    )
