"""SVG drawings (graphviz, matplotlib) made safe and unique to inline in one HTML page.

A drawing goes into the page as an ``<svg>`` element, so it must neither run anything nor clash
with its neighbours:

- no script: ``<script>`` and ``<foreignObject>`` elements and ``on*`` attributes are dropped, and a
  link may only point inside the drawing (``#id``) or at an inline image (``data:image/...``);
- nothing fetched: no external link survives, and the XML prolog, DOCTYPE and metadata are dropped;
- ids unique in the page: every ``id`` gets the drawing's prefix, and so does every reference to
  it (``href="#x"``, ``url(#x)``), so two matplotlib figures' clip paths never cross; an id that
  repeats inside one drawing gets a numbered suffix;
- a drawing's own stylesheet (matplotlib writes ``*{stroke-linejoin: round}``) applies to that
  drawing only.

Text is escaped again when the tree is written, whatever the renderer did.

>>> print(inline_svg(b'<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script><g id="a" onclick="x()">'
...                  b'<use href="#a"/><a href="https://e.x"><text>&lt;b&gt;</text></a></g></svg>', "d1"))
<svg xmlns="http://www.w3.org/2000/svg" id="d1"><g id="d1-a"><use href="#d1-a" /><a><text>&lt;b&gt;</text></a></g></svg>
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

_DROPPED = {f"{{{SVG_NS}}}{tag}" for tag in ("script", "foreignObject", "metadata")}
_HREFS = ("href", f"{{{XLINK_NS}}}href")
_URL_REF = re.compile(r"url\(\s*#([^)\s]+)\s*\)")
_CSS_RULE = re.compile(r"([^{}]+)\{")


def inline_svg(data: bytes | str, prefix: str) -> str:
    """The ``<svg>`` element of ``data``, sanitized and with ids prefixed (see the module doc)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    # ElementTree never fetches the DOCTYPE's external DTD; the prolog is dropped on writing.
    root = ET.fromstring(text)
    if root.tag != f"{{{SVG_NS}}}svg":
        raise ValueError(f"not an SVG drawing: <{root.tag}>")
    _clean(root, prefix, set())
    root.set("id", prefix)
    for style in root.iter(f"{{{SVG_NS}}}style"):
        style.text = _CSS_RULE.sub(lambda m: _scoped(m.group(1), prefix) + "{", style.text or "")
    return ET.tostring(root, encoding="unicode")


def _clean(el: ET.Element, prefix: str, seen: set[str]) -> None:
    """Sanitize ``el`` and its subtree in document order (an element's id before its children's)."""
    for name in list(el.attrib):
        value = el.attrib[name]
        local = name.rsplit("}", 1)[-1]
        if local.lower().startswith("on"):
            del el.attrib[name]
        elif name in _HREFS:
            if value.startswith("#"):
                el.set(name, f"#{prefix}-{value[1:]}")
            elif not value.startswith("data:image/"):
                del el.attrib[name]
        elif name == "id":
            # matplotlib names an embedded image by a hash of its content: two identical panels
            # share one id. References resolve to the first element either way; later ones get a suffix.
            new, n = f"{prefix}-{value}", 1
            while new in seen:
                n += 1
                new = f"{prefix}-{value}-{n}"
            seen.add(new)
            el.set(name, new)
        elif "url(" in value:
            el.set(name, _URL_REF.sub(lambda m: f"url(#{prefix}-{m.group(1)})", value))
    for child in list(el):
        if child.tag in _DROPPED or not isinstance(child.tag, str):
            el.remove(child)
        else:
            _clean(child, prefix, seen)


def _scoped(selectors: str, prefix: str) -> str:
    return ", ".join(f"#{prefix} {s.strip()}" for s in selectors.split(",") if s.strip())
