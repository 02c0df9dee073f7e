"""Text shown in hovers and completion details: signatures from the op registry and the AST,
shapes and counts, and Markdown that keeps spec text literal (a name or string written in a spec
never becomes markup, a link or HTML in the editor)."""

from __future__ import annotations

import re

from ..errors import Span
from ..frontend import ast
from ..ops import REQUIRED, SpecOp

TIMES = "\u00d7"  # shapes as papers write them: C, H and W joined by the multiplication sign
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>&~])")


def escape(text: str) -> str:
    """Spec-controlled text as literal Markdown (every markup character escaped, no raw HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\r", " ").replace("\n", " "))


def code(text: str, lang: str = "netdsl") -> str:
    """A fenced code block holding ``text`` verbatim: the fence is longer than any run of
    backticks inside, so the text cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def inline(text: str) -> str:
    """``text`` as an inline code span, verbatim (a code span takes no escapes: its delimiter is a
    backtick run longer than any inside)."""
    text = text.replace("\r", " ").replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    tick = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{tick}{pad}{text}{pad}{tick}"


def source_of(span: Span | None) -> str:
    """The source text a span covers (from the text kept with it), or ''."""
    if span is None or span.text is None or span.end_line is None or span.end_column is None:
        return ""
    lines = span.text.split("\n")
    if not (1 <= span.line <= span.end_line <= len(lines)):
        return ""
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1 : span.end_column - 1]
    parts = [lines[span.line - 1][span.column - 1 :], *lines[span.line : span.end_line - 1]]
    parts.append(lines[span.end_line - 1][: span.end_column - 1])
    return "\n".join(parts)


def fmt_default(value: object) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def op_signature(spec: SpecOp) -> str:
    """``conv(out, kernel=3, stride=1, ...)``, from the registry entry."""
    args = [a.name if a.default is REQUIRED else f"{a.name}={fmt_default(a.default)}" for a in spec.args]
    return f"{spec.name}({', '.join(args)})" if args else spec.name


def op_arguments(spec: SpecOp) -> list[str]:
    """One line per argument: its name, check (domain) and default."""
    return [
        f"{a.name}: {a.check}" + ("" if a.default is REQUIRED else f" = {fmt_default(a.default)}") for a in spec.args
    ]


def template_signature(t: ast.Template) -> str:
    params = [p.name if p.default is None else f"{p.name}={source_of(p.default.span)}" for p in t.params]
    return f"def {t.name}({', '.join(params)})"


def shape(s) -> str:
    return TIMES.join(str(d) for d in s)


def count(n: int) -> str:
    return f"{n:,}"
