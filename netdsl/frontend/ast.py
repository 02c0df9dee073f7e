"""The AST of a .net file: frozen dataclasses, each with the source span it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Span


@dataclass(frozen=True, slots=True)
class Node:
    span: Span = field(compare=False, repr=False)


# ---- expressions --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: object = None


@dataclass(frozen=True, slots=True)
class Var(Node):
    name: str = ""


@dataclass(frozen=True, slots=True)
class ListExpr(Node):
    items: tuple[Expr, ...] = ()


@dataclass(frozen=True, slots=True)
class BinOp(Node):
    op: str = ""
    left: Expr = None  # type: ignore[assignment]
    right: Expr = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class UnaryOp(Node):
    op: str = ""  # '-' or 'not'
    operand: Expr = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Index(Node):
    target: Expr = None  # type: ignore[assignment]
    index: Expr = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Kwarg(Node):
    name: str = ""
    value: Expr = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A call in an expression (``path(far=7, near=7)``, ``floor(x)``) or as a statement."""

    name: str = ""
    args: tuple[Expr, ...] = ()
    kwargs: tuple[Kwarg, ...] = ()
    name_span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Range(Node):
    """A search domain ``lo..hi [step s] [log]`` (netdsl search); only inside a parameter's domain."""

    lo: Expr = None  # type: ignore[assignment]
    hi: Expr = None  # type: ignore[assignment]
    step: Expr | None = None
    log: bool = False


@dataclass(frozen=True, slots=True)
class Choice(Node):
    """A search domain ``{a, b, path(far=1..8)}``: one of its options; only inside a parameter's domain."""

    options: tuple[Expr, ...] = ()


Expr = Literal | Var | ListExpr | BinOp | UnaryOp | Index | Call | Range | Choice
Domain = Range | Choice


# ---- statements ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Let(Node):
    name: str = ""
    value: Expr = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class For(Node):
    var: str = ""
    start: Expr = None  # type: ignore[assignment]
    stop: Expr | None = None  # ``for b in 1..3``: inclusive range; ``for x in list``: stop is None
    body: tuple[Stmt, ...] = ()


@dataclass(frozen=True, slots=True)
class If(Node):
    cond: Expr = None  # type: ignore[assignment]
    then: tuple[Stmt, ...] = ()
    orelse: tuple[Stmt, ...] = ()


@dataclass(frozen=True, slots=True)
class OpStmt(Node):
    """``[label:] name[(args)] [{ body }]``: an op, a template call or a structural call."""

    call: Call = None  # type: ignore[assignment]
    label: str | None = None
    body: tuple[Stmt, ...] | None = None


Stmt = Let | For | If | OpStmt


# ---- top level ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Param(Node):
    name: str = ""
    default: Expr | None = None
    domain: Domain | None = None  # ``k=12 in 8..32 step 4``: where netdsl search may move it


@dataclass(frozen=True, slots=True)
class Template(Node):
    name: str = ""
    params: tuple[Param, ...] = ()
    body: tuple[Stmt, ...] = ()


@dataclass(frozen=True, slots=True)
class Network(Node):
    name: str = ""
    params: tuple[Param, ...] = ()
    body: tuple[Stmt, ...] = ()


@dataclass(frozen=True, slots=True)
class Include(Node):
    path: str = ""


@dataclass(frozen=True, slots=True)
class Module(Node):
    """One parsed file."""

    file: str = ""
    includes: tuple[Include, ...] = ()
    templates: tuple[Template, ...] = ()
    networks: tuple[Network, ...] = ()
