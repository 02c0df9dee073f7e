"""User text made safe to show: in a terminal, through rich, and in matplotlib drawings.

Spec text, file names and parameter values come from strangers. Shown raw, a control character
(an ANSI or OSC-8 escape sequence) reaches the terminal, ``[bold]`` or ``[link=...]`` becomes
rich markup, and ``$...$`` becomes matplotlib mathtext. Everything netdsl shows of such text goes
through one of these functions.

>>> shown("a\\x1b]8;;http://x\\x1b\\\\b")
'a\\\\x1b]8;;http://x\\\\x1b\\\\b'
>>> for_rich("[bold]x[/bold]").plain
'[bold]x[/bold]'
>>> for_matplotlib("cost $5")
'cost \\\\$5'
"""

from __future__ import annotations


def shown(text: object) -> str:
    """``text`` with every non-printable character (controls, escapes, zero-width and bidi marks)
    written as a Python escape (``\\x1b``, ``\\u200b``); printable text, non-ASCII included, is kept."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)


def for_rich(text: object):
    """``text`` for rich, as a ``rich.text.Text``: control characters escaped (:func:`shown`) and
    never parsed as markup (a Text is not; an escaped string would still lose a backslash before
    ``[``). Use it for table cells, titles and printed lines."""
    from rich.text import Text

    return Text(shown(text))


def for_matplotlib(text: object) -> str:
    """``text`` for a matplotlib label: control characters escaped and ``$`` kept literal (no mathtext)."""
    return shown(text).replace("$", r"\$")


# Wide enough that no table or line of netdsl's is ever wrapped or truncated.
UNBOUNDED_WIDTH = 100_000


def console(*, stderr: bool = False, min_width: int = 0, file=None):
    """The ``rich.console.Console`` netdsl prints through. On a terminal: colours and the
    terminal's width (at least ``min_width``, for tables that would be unreadable squeezed).
    Anywhere else (a pipe, a file, a test's capture) no colour or escape code and no width
    limit, so each table row stays one line and ``grep`` finds whole names."""
    from rich.console import Console

    tty = Console(stderr=stderr, file=file)
    if tty.is_terminal:
        return tty if tty.width >= min_width else Console(stderr=stderr, file=file, width=min_width)
    return Console(stderr=stderr, file=file, width=UNBOUNDED_WIDTH, color_system=None, soft_wrap=True)


def fmt_bytes(n: int) -> str:
    """>>> fmt_bytes(224), fmt_bytes(3 * 2**20)
    ('224 B', '3.0 MiB')"""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
