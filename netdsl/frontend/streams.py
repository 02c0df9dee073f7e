"""Named streams: tensors carried beside the current one (``stream(raw)``, ``block(..., stream=raw)``).

A body transforms its *current* tensor; a stream is a second, named tensor that travels with it.
``stream(raw)`` hands the current tensor on as the stream ``raw`` (the current tensor stays);
the name ``raw`` then reads it (``add(raw)``, ``use(raw)``). Streams are carried like the current
tensor: a template, ``residual``, ``repeat``, ``for`` or ``if`` body sees its caller's streams and
hands back what it sets. A block's units see only the streams the block carries
(``block(..., stream=raw)``): unit i sees ``raw`` as its own channel slice [(i-1)·w, i·w) of the
incoming stream (w = its width / units), hands on a piece (its slice unchanged, or what it set
with ``stream(raw)``), and after the block ``raw`` is the pieces concatenated in unit order.
The exact rules are in docs/language.md ("Streams"); the IR record is :class:`StreamInfo`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .. import naming
from ..errors import ShapeError, Span, SpecNameError, SpecTypeError, SpecValueError
from ..ir.graph import StreamInfo, output_nodes
from ..ops import fmt_shape
from . import ast

if TYPE_CHECKING:
    import networkx as nx

    from .evaluate import Env
    from .lower.builder import GraphBuilder
    from .lower.scope import Scope

# A unit scope's value for a stream of the enclosing body that its block does not carry.
HIDDEN = "<not carried>"

ROLE_SLICE = "stream"  # a unit's slice of a carried stream
ROLE_OUTPUT = "stream_output"  # a block's collected stream


def stream_value(scope: Scope, name: str) -> str | None:
    """The node the stream ``name`` holds in ``scope``; None when ``name`` is no stream there.
    A stream that is hidden in a unit or has no value yet is an error, with a hint."""
    if name not in scope.streams:
        return None
    node = scope.streams[name]
    if node == HIDDEN:
        raise _not_carried(name, None, f"add stream={name} to the block: its units then see their slice of '{name}'")
    if node is None:
        raise SpecValueError(
            f"the stream '{name}' has no value here yet",
            None,
            f"the block started '{name}' without a value: a unit reads it after handing on its piece with "
            f"stream({name})",
        )
    return node


def _not_carried(name: str, span: Span | None, hint: str) -> SpecNameError:
    """A stream of the enclosing body used in a unit of a block that does not carry it."""
    return SpecNameError(f"the stream '{name}' is not carried into this block's units", span, hint)


def check_label(scope: Scope, label: str, span: Span) -> None:
    """A label may not take a stream's name: ``raw: conv(...)`` would hide the stream."""
    if label in scope.streams:
        raise SpecNameError(
            f"'{label}' is a stream here, not a label",
            span,
            f"hand the current tensor on with stream({label}), or pick another label",
        )


def s_stream(lw: GraphBuilder, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
    """``stream(name)``: the current tensor becomes the stream ``name``; the current tensor stays."""
    call = stmt.call
    if stmt.label or stmt.body is not None or call.kwargs or len(call.args) != 1:
        raise SpecTypeError("stream() takes one stream name", stmt.span, "for example: conv(k, 3); stream(raw); bn")
    arg = call.args[0]
    if not isinstance(arg, ast.Var):
        raise SpecTypeError("stream() takes a name, not an expression", arg.span, "for example stream(raw)")
    name = arg.name
    _check_name(scope, env, name, arg.span)
    if scope.streams.get(name) == HIDDEN:
        raise _not_carried(
            name, arg.span, f"add stream={name} to the block: each unit then hands on its piece of '{name}'"
        )
    scope.streams[name] = lw.need_current(scope, stmt.span)


def _check_name(scope: Scope, env: Env, name: str, span: Span) -> None:
    naming.check_label(name, span)  # a stream's name is part of node ids (block1.raw), as a label's is
    if name in scope.labels:
        raise SpecNameError(f"'{name}' is a label here, not a stream", span, "a stream and a label cannot share a name")
    if env.lookup(name)[0]:
        raise SpecNameError(f"the stream '{name}' would be hidden by the variable '{name}'", span)


def block_streams(
    lw: GraphBuilder, value: ast.Expr, scope: Scope, env: Env, span: Span
) -> list[tuple[str, str | None]]:
    """The streams a block carries (``stream=raw``, ``stream=[raw, aux]``; ``stream=none``: none),
    each with its value before the block (None: the stream starts in the block)."""
    if isinstance(value, ast.Literal) and value.value is None:
        return []  # stream=none: the default, no stream
    items = value.items if isinstance(value, ast.ListExpr) else (value,)
    out: list[tuple[str, str | None]] = []
    for item in items:
        if not isinstance(item, ast.Var):
            raise SpecTypeError(
                "block() stream= takes a stream name or a list of names", item.span, "for example stream=raw"
            )
        if any(item.name == n for n, _ in out):
            raise SpecValueError(f"the stream '{item.name}' is named twice", item.span)
        _check_name(scope, env, item.name, item.span)
        node = scope.streams.get(item.name)
        if node == HIDDEN:
            raise _not_carried(item.name, item.span, f"add stream={item.name} to the enclosing block too")
        out.append((item.name, node))
    if not out:
        raise SpecValueError("block() stream= names no stream", span)
    return out


def check_widths(lw: GraphBuilder, carried: list[tuple[str, str | None]], units: int, span: Span) -> None:
    for name, node in carried:
        if node is not None and lw.shape(node)[0] % units:
            c = lw.shape(node)[0]
            raise ShapeError(
                f"the stream '{name}' has {c} channels, which {units} units cannot share equally",
                span,
                f"each unit sees an equal channel slice of the stream: make it a multiple of {units} channels",
            )


def open_unit(
    lw: GraphBuilder,
    uscope: Scope,
    bscope: Scope,
    carried: list[tuple[str, str | None]],
    unit: int,
    units: int,
    span: Span,
) -> None:
    """Unit ``unit``'s view of the streams: its slice of each carried one; the enclosing body's
    others (``bscope`` shares them) hidden."""
    for name in bscope.streams:
        uscope.streams[name] = HIDDEN
    for name, node in carried:
        uscope.used.add(name)
        if node is None:
            uscope.streams[name] = None
            continue
        w = lw.shape(node)[0] // units
        if units == 1:
            uscope.streams[name] = node
        else:
            attrs = {"start": (unit - 1) * w, "stop": unit * w}
            uscope.streams[name] = lw.add(uscope.id(name), "slice", (node,), attrs, span, role=ROLE_SLICE)


def close_unit(uscope: Scope, carried: list[tuple[str, str | None]], unit: int, span: Span) -> list[str]:
    """The pieces unit ``unit`` hands on, one per carried stream."""
    pieces = []
    for name, _ in carried:
        piece = uscope.streams[name]
        if piece is None or piece == HIDDEN:
            raise SpecValueError(
                f"unit {unit} hands on no piece of the stream '{name}'",
                span,
                f"'{name}' had no value before the block: every unit sets its piece with stream({name})",
            )
        pieces.append(piece)
    return pieces


def close_block(
    lw: GraphBuilder, bscope: Scope, carried: list[tuple[str, str | None]], pieces: list[list[str]], span: Span
) -> tuple[StreamInfo, ...]:
    """Concatenate each stream's pieces in unit order, bind the result in the enclosing body (whose
    streams ``bscope`` shares) and return the block's :class:`StreamInfo` records."""
    infos = []
    for k, (name, node) in enumerate(carried):
        own = [p[k] for p in pieces]
        shapes = {lw.shape(p)[1:] for p in own}
        if len(shapes) > 1:
            raise ShapeError(
                f"the pieces of the stream '{name}' differ in size: "
                + ", ".join(f"unit {i + 1} {fmt_shape(lw.shape(p))}" for i, p in enumerate(own)),
                span,
                "the block concatenates its units' pieces along the channels: they must share height and width",
            )
        bscope.used.add(name)
        out = own[0] if len(own) == 1 else lw.add(bscope.id(name), "concat", tuple(own), {}, span, role=ROLE_OUTPUT)
        bscope.streams[name] = out
        slices = tuple(
            None if node is None else (node if len(own) == 1 else f"{bscope.path}.unit{i + 1}.{name}")
            for i in range(len(own))
        )
        infos.append(StreamInfo(name=name, input=node, slices=slices, pieces=tuple(own), output=out))
    return tuple(infos)


def drop_unread(graph: nx.DiGraph) -> None:
    """Remove what streams made and nothing reads (a block's collected stream that no later
    statement uses, a slice a unit neither reads nor hands on), and record it in the blocks'
    :class:`StreamInfo` (None for a removed node)."""
    made = {ROLE_SLICE, ROLE_OUTPUT}
    outputs = output_nodes(graph)  # a declared output is read, by the caller
    removed: set[str] = set()
    while True:
        dead = [
            n
            for n, d in graph.nodes(data=True)
            if d.get("role") in made and n not in outputs and graph.out_degree(n) == 0
        ]
        if not dead:
            break
        graph.remove_nodes_from(dead)
        removed.update(dead)
    if not removed:
        return
    blocks = graph.graph["blocks"]
    for k, b in enumerate(blocks):
        if b.streams:
            streams = tuple(
                replace(
                    s,
                    slices=tuple(None if x in removed else x for x in s.slices),
                    output=None if s.output in removed else s.output,
                )
                for s in b.streams
            )
            blocks[k] = replace(b, streams=streams)
