"""``netdsl lsp``: a Language Server Protocol server for ``.net`` specs (pygls over stdio).

server.py wires the protocol to the pieces: analysis.py (what ``netdsl check`` finds, run in a
worker), diagnostics.py and fixes.py (errors as located diagnostics, quick fixes), hover.py,
completion.py, navigation.py (definition, references, symbols), tokens.py (semantic tokens from
the Pygments lexer), hints.py (inlay hints), syntax.py (finding the AST node under the cursor).
"""
