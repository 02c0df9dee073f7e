"""``netdsl lsp``: the language server for editors, over stdin/stdout (docs/editors.md)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "lsp",
        help="run the language server (LSP over stdio) for editors",
        description="Speak the Language Server Protocol on stdin/stdout: diagnostics, hover, completion, "
        "navigation, formatting, semantic tokens and inlay hints for .net specs (docs/editors.md).",
    )
    p.add_argument("--stdio", action="store_true", help="use stdin/stdout (the default and only transport)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..lsp.server import main

    main()
    return 0
