"""Naming scopes: where a statement's nodes get their dotted names (``block1.unit3.conv1``)."""

from __future__ import annotations

from ...errors import Span, SpecNameError


class Scope:
    """A naming scope: one network body, template instance, unit or branch."""

    __slots__ = ("counters", "current", "input", "labels", "path", "streams", "used")

    def __init__(self, path: str, input: str | None):
        self.path = path
        self.counters: dict[str, int] = {}
        self.used: set[str] = set()
        self.labels: dict[str, str] = {}
        self.input = input
        self.current = input
        # Named streams carried beside the current tensor (netdsl.frontend.streams): name -> node.
        # Templates and residual/parallel bodies share their caller's dict; a block unit has its own.
        self.streams: dict[str, str | None] = {}

    @property
    def current_node(self) -> str:
        """``current`` where it cannot be None: a scope made with an input (a template, block, unit
        or branch) starts at a node, and every statement moves it to another node."""
        assert self.current is not None, self.path
        return self.current

    def fresh(self, base: str) -> str:
        n = self.counters.get(base, 0)
        while True:
            n += 1
            name = f"{base}{n}"
            if name not in self.used:
                self.counters[base] = n
                self.used.add(name)
                return name

    def claim(self, label: str, span: Span) -> str:
        if label in self.used:
            raise SpecNameError(
                f"the name '{label}' is already used in this scope", span, "labels must be unique within a body"
            )
        self.used.add(label)
        return label

    def id(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name


class NetworkScope(Scope):
    """The network body's scope. It remembers, in creation order, where each top-level name was
    claimed, so every node's ``stage`` (the top-level statement it comes from) is known from the
    lowering itself: a top-level statement claims its name before it creates its nodes."""

    __slots__ = ("created", "stages")

    def __init__(self, created: list[str]):
        super().__init__("", None)
        self.created = created  # the lowerer's node ids in creation order
        self.stages: list[tuple[int, str]] = [(0, "input")]  # (first node index, stage name)

    def fresh(self, base: str) -> str:
        name = super().fresh(base)
        self.stages.append((len(self.created), name))
        return name

    def claim(self, label: str, span: Span) -> str:
        name = super().claim(label, span)
        self.stages.append((len(self.created), name))
        return name
