"""AST -> IR: evaluates a network's statements and builds the networkx graph.

Lowering walks the body like an interpreter: each statement transforms the *current* tensor.
Every node gets a deterministic dotted name from its scope (``block1.unit3.conv1``): labels
(``stem: conv(...)``) name it explicitly, otherwise the op's name plus a per-scope counter.

The package, by concern: :mod:`.limits` (the work budget), :mod:`.scope` (naming scopes),
:mod:`.builder` (the graph under construction), :mod:`.statements` (the interpreter,
:class:`Lowerer`), :mod:`.blocks` (block statements); named streams are
:mod:`netdsl.frontend.streams`, the naming rules :mod:`netdsl.naming`.
"""

from .builder import GraphBuilder
from .limits import LIMIT_FLAGS, Limits
from .scope import NetworkScope, Scope
from .statements import Lowerer

__all__ = ["LIMIT_FLAGS", "GraphBuilder", "Limits", "Lowerer", "NetworkScope", "Scope"]
