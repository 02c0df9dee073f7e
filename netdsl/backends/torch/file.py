"""The generated file's names and globals, as torch.fx's CodeGen keeps them: one
:class:`Namespace` per scope cleans and de-duplicates every name the generator makes, and the
generator registers each runtime helper or layer class where it emits a use of it
(:meth:`Uses.add_global`), so the file embeds exactly what its code calls, with the imports that
code needs -- found from netdsl's own source of each helper, never by searching the emitted text.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ...errors import IRError
from ...naming import is_identifier
from ...ops import norm
from . import layers, runtime, windows


class Namespace:
    """The names taken in one scope of the generated file (its parent's too): :meth:`create_name`
    returns ``candidate`` if free, else ``candidate_2``, ``candidate_3``...; a candidate that is no
    identifier becomes ``fallback`` first (fx's ``_Namespace``, with the suffixes netdsl's
    generated code has always used)."""

    def __init__(self, reserved: Iterable[str] = (), parent: Namespace | None = None):
        self._taken: set[str] = set(reserved)
        self._parent = parent

    def taken(self, name: str) -> bool:
        return name in self._taken or (self._parent is not None and self._parent.taken(name))

    def reserve(self, name: str) -> None:
        self._taken.add(name)

    def create_name(self, candidate: str, fallback: str = "v", sep: str = "_") -> str:
        base = candidate if is_identifier(candidate) else fallback
        name, k = base, 1
        while self.taken(name):
            k += 1
            name = f"{base}{sep}{k}"
        self._taken.add(name)
        return name


# Each global name the embedded code reads that is not itself embedded -> (isort section, the
# module it comes from, the name there, the alias): the generated imports are built from these.
_IMPORTS: dict[str, tuple[int, str, str | None, str | None]] = {
    "contextlib": (0, "contextlib", None, None),
    "torch": (1, "torch", None, None),
    "F": (1, "torch.nn.functional", None, "F"),
    "nn": (1, "torch", "nn", None),
    "checkpoint": (1, "torch.utils.checkpoint", "checkpoint", None),
    "create_selective_checkpoint_contexts": (1, "torch.utils.checkpoint", "create_selective_checkpoint_contexts", None),
}

# The network and unit classes always read these (nn.Module; the op registry's code calls torch
# and F).
_ALWAYS = ("torch", "F", "nn")

# What the generated file may embed, in the order it lists them: the runtime helpers (and the
# buffer windows' reads), the layers
# the op registry's constructors name, and the BatchNorm arithmetic of netdsl.ops.norm.
_EMBEDDABLE: dict[str, object] = {
    name: obj
    for module in (runtime, windows, layers)
    for name, obj in vars(module).items()
    if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__
}
_EMBEDDABLE |= {f.__name__: f for f in (norm.bn_scale_shift, norm.fold_into_conv)}

# Every name the file may define: no spec name may shadow one.
EMBEDDABLE_NAMES = frozenset(_EMBEDDABLE)

# The layer classes by name, as the op registry's constructors name them.
LAYERS = {name: obj for name, obj in _EMBEDDABLE.items() if getattr(obj, "__module__", "") == layers.__name__}


@dataclass
class Uses:
    """What one generated class calls: the embeddable globals and the other generated classes."""

    globals: set[str] = field(default_factory=set)
    classes: set[str] = field(default_factory=set)

    def add_global(self, obj: Callable | type) -> str:
        """Register a runtime helper or layer at the place it is emitted; its name in the file."""
        name = obj.__name__
        if _EMBEDDABLE.get(name) is not obj:
            raise IRError(f"{name} is not one of the generated file's helpers")
        self.globals.add(name)
        return name

    def merge(self, other: Uses) -> None:
        """Add what ``other`` (code now emitted into this class) uses."""
        self.globals |= other.globals
        self.classes |= other.classes


@functools.cache  # the library's source does not change within a process; every generate reads it
def _source(obj: object) -> str:
    """The source of an embedded helper: netdsl's own, without its docstring's examples (they are
    netdsl's doctests) and, outside the runtime module, without comment lines (they speak of the
    library, not of the generated file)."""
    lines = inspect.getsource(obj).splitlines()  # type: ignore[arg-type]
    first = next((i for i, line in enumerate(lines) if line.lstrip().startswith(">>>")), None)
    if first is not None:
        end = next(i for i in range(first, len(lines)) if lines[i].strip() == '"""')
        lines = lines[: first - 1] + lines[end:]  # first - 1: the blank line before them
        if lines[first - 2].lstrip().startswith('"""'):  # a one-line summary left: one line
            lines[first - 2 : first] = [lines[first - 2] + '"""']
    if getattr(obj, "__module__", None) not in (runtime.__name__, windows.__name__, layers.__name__):
        lines = [line for line in lines if not line.lstrip().startswith("#")]
    return textwrap.dedent("\n".join(lines))


@functools.cache
def _globals_read(source: str) -> frozenset[str]:
    """The names ``source`` (netdsl's own code) reads, its annotations' included."""
    return frozenset(n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name))


def embedded(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """(import lines, helper sources) of a file whose code calls the helpers ``names``: with the
    helpers they call in turn, in the order of :data:`_EMBEDDABLE`."""
    wanted: set[str] = set()
    reads: set[str] = set(_ALWAYS)
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        read = _globals_read(_source(_EMBEDDABLE[name]))
        reads |= read
        todo += [n for n in read if n in _EMBEDDABLE and n != name]
    sources = [_source(obj) for name, obj in _EMBEDDABLE.items() if name in wanted]
    return _import_lines(n for n in reads if n in _IMPORTS and n not in wanted), sources


def _import_lines(names: Iterable[str]) -> list[str]:
    """The import block isort (ruff's ``I``) accepts: stdlib, then torch; per section the plain
    imports first, then the ``from`` imports, each sorted, names merged per module."""
    plain: dict[int, set[str]] = {}
    froms: dict[int, dict[str, set[str]]] = {}
    for n in names:
        section, module, name, alias = _IMPORTS[n]
        if name is None:
            plain.setdefault(section, set()).add(module + (f" as {alias}" if alias else ""))
        else:
            froms.setdefault(section, {}).setdefault(module, set()).add(name)
    out: list[str] = []  # no __future__ import: the embedded code's annotations are Python 3.10's own
    for section in sorted(set(plain) | set(froms)):
        out += [""] if out else []
        out += [f"import {m}" for m in sorted(plain.get(section, ()))]
        for module, got in sorted(froms.get(section, {}).items()):
            out.append(f"from {module} import {', '.join(sorted(got, key=_isort_key))}")
    return out


def _isort_key(name: str) -> tuple[int, str]:
    """isort's order of imported names: constants, classes, then the rest (case-sensitive)."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)
