"""Blocks: ``block(units, pattern) { unit body }`` lowered to its units, their gathers and the
block's output, with the :class:`netdsl.ir.graph.BlockInfo` the passes and backends read.

Functions of the :class:`~.statements.Lowerer` that runs the block (``lw``): they build with its
:class:`~.builder.GraphBuilder` API and run unit bodies with its statement interpreter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...errors import NetdslError, ShapeError, Span, SpecTypeError, SpecValueError, SpecWarning, did_you_mean
from ...ir import generators as G
from ...ir import patterns as P
from ...ir.channels import merge_runs
from ...ir.graph import BlockInfo, Feature, UnitInfo, add_op
from ...ir.ops import fmt_shape
from .. import ast, streams
from ..builtins import Arg
from ..evaluate import Env, OpValue, TensorRef, fmt_value, type_name
from .limits import over_limit
from .scope import Scope

if TYPE_CHECKING:
    from .statements import Lowerer


def lower_block(lw: Lowerer, stmt: ast.OpStmt, scope: Scope, env: Env) -> None:
    call = stmt.call
    pos = [(lw.eval(a, env), a.span) for a in call.args]
    opts: dict[str, tuple[object, Span]] = {}
    for v, sp in pos:
        key = "connect" if isinstance(v, P.PATTERN_TYPES) else "units"
        if key in opts:
            raise SpecTypeError("block() takes a unit count and a pattern; pass other options by name", sp)
        opts[key] = (v, sp)
    names = ("units", "connect", "output", "aggregate", "width", "order", "stage", "bypass", "stream")
    for kw in call.kwargs:
        if kw.name not in names:
            raise SpecTypeError(
                f"block() has no argument '{kw.name}'",
                kw.span,
                did_you_mean(kw.name, names) or "its arguments are: " + ", ".join(names),
            )
        if kw.name in opts:
            raise SpecTypeError(f"block() got '{kw.name}' twice", kw.span)
        if kw.name == "stream":  # stream names, not values: a stream may start in the block
            carried = streams.block_streams(lw, kw.value, scope, env, kw.span)
            if carried:  # stream=none carries none
                opts[kw.name] = (carried, kw.span)
            continue
        opts[kw.name] = (lw.eval(kw.value, env), kw.span)
    pattern, psp = opts.get("connect", (P.Dense(), call.span))
    if not isinstance(pattern, P.PATTERN_TYPES):
        raise SpecTypeError(
            f"block() 'connect' must be a pattern, got {type_name(pattern)}",
            psp,
            "patterns: dense, path(far=a, near=b), window(g), split(scale=s), rule(expr), graph(ws(n, k, p), seed=s)",
        )
    cur = lw.need_current(scope, stmt.span)
    name = scope.claim(stmt.label, stmt.span) if stmt.label else scope.fresh("block")
    bscope = Scope(scope.id(name), cur)
    bscope.streams = scope.streams  # a block hands on the streams it carries
    start = len(lw.created)
    if isinstance(pattern, P.Split):
        if "stream" in opts:
            raise SpecTypeError(
                "a split block carries no stream",
                opts["stream"][1],
                "stream= is for dense, path, window and rule blocks",
            )
        for bad in ("units", "output", "aggregate", "width", "order"):
            if bad in opts:
                raise SpecTypeError(f"a split block has no '{bad}': its units are its scale", opts[bad][1])
        info = split_block(lw, stmt, bscope, env, pattern, opts)
    else:
        for bad in ("stage", "bypass"):
            if bad in opts:
                raise SpecTypeError(f"'{bad}' belongs to split blocks", opts[bad][1])
        info = pattern_block(lw, stmt, bscope, env, pattern, psp, opts)
    lw.tag_block(start, bscope.path)
    lw.graph.graph["blocks"].append(info)
    scope.current = info.output
    if stmt.label:
        scope.labels[stmt.label] = info.output


def unit_body(lw: Lowerer, body, uscope: Scope, env: Env) -> str | None:
    """Lower one unit's body; returns the template it instantiates when the body is one
    template call (the generated class is named after it), else None."""
    # A unit that is one template call names its ops directly under the unit
    # (block1.unit3.conv1, not block1.unit3.bottleneck1.conv1).
    if (
        len(body) == 1
        and isinstance(body[0], ast.OpStmt)
        and body[0].label is None
        and body[0].body is None
        and body[0].call.name in lw.templates
        and env.lookup(body[0].call.name)[0] is False
    ):
        prev, lw.scope = lw.scope, uscope
        try:
            lw.template(body[0].call, env, uscope, None, inline=uscope)
        except NetdslError as err:
            err.with_span(body[0].span)
            raise
        finally:
            lw.scope = prev
        return str(body[0].call.name)
    lw.body(body, uscope, env)
    return None


def gather(
    lw: Lowerer, feats: list[tuple[str, int | None, int | None]], prefix: str, kind: str, span, role: str
) -> str:
    """One tensor holding ``feats`` in order: the feature itself, a slice, or a concat/add node."""
    shape = lw.shape
    pieces = []
    # a whole feature (start None) is never merged: it has a node of its own
    for k, (node, start, stop) in enumerate(merge_runs(feats)):
        if start is None or (start == 0 and stop == shape(node)[0]):
            pieces.append(node)
        else:
            sid = f"{prefix}.slice{k + 1}"
            pieces.append(lw.add(sid, "slice", (node,), {"start": start, "stop": stop}, span, role="feature"))
    if len(pieces) == 1:
        return pieces[0]
    name = {"concat": "cat", "wsum": "wsum", "mean": "mean"}.get(kind, "sum")
    return lw.add(f"{prefix}.{name}", kind, tuple(pieces), {}, span, role=role)


def probe_width(lw: Lowerer, body, env: Env, in_node: str) -> int:
    key, keep = probe_key(body, lw.shape(in_node), env)
    if key in lw.probe_cache:
        return lw.probe_cache[key][0]
    width = probe(lw, body, env, in_node)
    lw.probe_cache[key] = (width, keep)  # keep: the objects whose ids are in the key stay alive
    return width


def probe(lw: Lowerer, body, env: Env, in_node: str) -> int:
    """The output width of a unit body on ``in_node``, found by lowering it once on a graph of its own."""
    probe = lw.fork()  # the probe continues this lowering's nesting (template stack, depth)
    add_op(probe.graph, "probe", "input", (), {"shape": lw.shape(in_node)}, shape=lw.shape(in_node))
    pscope = Scope("probe_unit", "probe")
    # unit 1 stands for every unit: window blocks take one group width (reads: a window of one)
    unit_body(probe, body, pscope, env.child({"unit": 1, "reads": 1, "source": True}))
    return probe.shape(pscope.current_node)[0]


def pattern_block(lw: Lowerer, stmt, bscope: Scope, env, pattern, psp, opts: dict[str, tuple[Any, Span]]) -> BlockInfo:
    if isinstance(pattern, P.Graph):
        graph_options(pattern, psp, opts)
    if "units" not in opts:
        raise SpecTypeError("block() needs the number of units", stmt.call.span, "for example block(16, dense) { ... }")
    units = lw.check(Arg("units", "int>=1"), *opts["units"], "block()")
    lw.charge_layers(units, opts["units"][1])
    output, osp = opts.get("output", ("all", stmt.span))
    if not isinstance(output, P.Rule) and output not in ("all", "new", "last", "next", "sinks", "mean"):
        raise SpecValueError(
            f"block() output must be all, new, last, next, sinks, mean or rule(expr), got {fmt_value(output)}",
            osp,
            "output=rule(j % 2 == 1 or j == i - 1) keeps the features a further unit i = L + 1 would read",
        )
    kind, asp = opts.get("aggregate", ("concat", stmt.span))
    if kind not in ("concat", "add", "wsum"):
        raise SpecValueError(
            f"block() aggregate must be concat, add or wsum, got {fmt_value(kind)}",
            asp,
            "wsum: a sum weighted by learnable sigmoid(w) per input (RandWire)",
        )
    order, orsp = opts.get("order", ("ascending", stmt.span))
    if order not in ("ascending", "descending"):
        raise SpecValueError(
            f"block() order must be ascending or descending, got {fmt_value(order)}",
            orsp,
            "ascending concatenates x_0 first (the default); descending the nearest feature first",
        )
    x0 = bscope.input
    assert x0 is not None  # lower_block opens the block's scope at its input
    c0 = lw.shape(x0)[0]
    feats: dict[int, tuple] = {}
    first = 0
    # A window block, or any block given width=, sees its input as groups of the unit width
    # (SparseNet's reference code drops k-channel groups of the block input as it drops features).
    if isinstance(pattern, P.Window) or "width" in opts:
        if "width" in opts:
            width = lw.check(Arg("width", "int>=1"), *opts["width"], "block()")
        elif "stream" in opts:
            raise SpecTypeError(
                "a window block that carries a stream needs width=",
                opts["stream"][1],
                "pass the unit width: block(L, window(g), width=w, stream=...)",
            )
        else:
            width = probe_width(lw, stmt.body, env, x0)
        if c0 % width:
            raise SpecValueError(
                f"window blocks and blocks given width= split their input into groups of {width} channels, "
                f"but the input has {c0} channels",
                psp,
                f"make the input a multiple of {width} channels, or pass width= to block()",
            )
        groups = c0 // width
        first = 1 - groups
        for g in range(groups):
            feats[first + g] = (x0, g * width, (g + 1) * width)
    else:
        feats[0] = (x0, None, None)
    check_path(lw, pattern, units - first, psp)
    all_reads = block_reads(lw, pattern, units, first, psp)
    carried, ssp = opts.get("stream", ([], stmt.span))
    streams.check_widths(lw, carried, units, ssp)
    pieces: list[list[str]] = []
    unit_infos = []
    for i in range(1, units + 1):
        reads = all_reads[i - 1]
        if not reads:
            raise SpecValueError(
                f"unit {i} of the block reads no feature",
                psp,
                "a rule must select at least one j in 0..i-1 for every unit i",
            )
        prefix = bscope.id(f"unit{i}")
        start = len(lw.created)
        in_order = reads[::-1] if order == "descending" else reads
        agg = gather(lw, [feats[j] for j in in_order], prefix, kind, stmt.span, "aggregate")
        uscope = Scope(prefix, agg)
        bscope.used.add(f"unit{i}")
        streams.open_unit(lw, uscope, bscope, carried, i, units, ssp)
        template = unit_body(
            lw, stmt.body, uscope, env.child({"unit": i, "reads": len(reads), "source": reads[0] <= 0})
        )
        pieces.append(streams.close_unit(uscope, carried, i, stmt.span))
        out = uscope.current_node
        if kind == "add" and lw.shape(out) != lw.shape(agg):
            raise ShapeError(
                f"in an add block every unit must keep the shape: unit {i} maps "
                f"{fmt_shape(lw.shape(agg))} to {fmt_shape(lw.shape(out))}",
                stmt.span,
            )
        feats[i] = (out, None, None)
        lw.tag_unit(start, prefix, bscope.path, i)
        unit_infos.append(
            UnitInfo(
                index=i,
                scope=prefix,
                reads=reads,
                aggregate=agg,
                output=out,
                template=template,
                nodes=tuple(lw.created[start:]),
            )
        )
    # "next": the features a further unit would read -- a sparse block's output (SparseNet, Zhu et al.);
    # a rule: the features it selects for that further unit i = L + 1 (HarDNet: the odd units and the last).
    sel: Sequence[int]
    if isinstance(output, P.Rule):
        sel = P.connections(output, units + 1, first)
        if not sel:
            raise SpecValueError(
                f"output={output} selects no feature of the block",
                osp,
                f"the rule is tested with i = {units + 1} (the units plus one) and j = {first}..{units}",
            )
    elif output in ("sinks", "mean"):  # the units no unit reads (RandWire's output nodes)
        read = {j for r in all_reads for j in r}
        sel = [j for j in range(1, units + 1) if j not in read]
    else:
        sel = {
            "all": range(first, units + 1),
            "new": range(1, units + 1),
            "last": range(units, units + 1),
            "next": P.connections(pattern, units + 1, first),
        }[output]
    out_kind = "mean" if output == "mean" else kind
    out_node = gather(lw, [feats[j] for j in sel], bscope.path, out_kind, stmt.span, "block_output")
    stream_infos = streams.close_block(lw, bscope, carried, pieces, ssp) if carried else ()
    features = tuple(Feature(index=j, node=n, start=s, stop=e) for j, (n, s, e) in sorted(feats.items()))
    mode = str(output)  # all, new, last, next or the rule's text
    return BlockInfo(
        name=bscope.path,
        pattern=str(pattern),
        kind=kind,
        output_mode=mode,
        input=x0,
        features=features,
        units=tuple(unit_infos),
        output=out_node,
        span=stmt.span,
        outputs=tuple(sel),
        order=str(order),
        streams=stream_infos,
    )


def graph_options(pattern: P.Graph, psp: Span, opts: dict[str, tuple[Any, Span]]) -> None:
    """A graph block's units are its generator's nodes: ``units`` may be left out, and must equal
    n when given; its block input is read whole (no ``width=``), and no further unit exists to
    say what ``output=next`` would read."""
    n = pattern.nodes
    if "units" not in opts:
        opts["units"] = (n, psp)
    elif opts["units"][0] != n:
        raise SpecValueError(
            f"block() has {fmt_value(opts['units'][0])} units but {pattern} has {n} nodes",
            opts["units"][1],
            "a graph block has one unit per node: leave the unit count out, block(graph(...)) { ... }",
        )
    if "width" in opts:
        raise SpecTypeError(
            "a graph block reads its input whole: it takes no 'width='",
            opts["width"][1],
            "width= splits the block input into groups for window and path blocks; leave it out here",
        )
    if opts.get("output", ("all",))[0] == "next":
        raise SpecValueError(
            "output=next is what a further unit would read, and a graph has no further node",
            opts["output"][1],
            "output=mean averages the units no unit reads (RandWire); output=sinks joins them",
        )


def block_reads(lw: Lowerer, pattern, units: int, first: int, span: Span) -> list[tuple[int, ...]]:
    """What every unit of a block reads, computed and charged to the edge budget before any
    unit is built: a dense block's edges grow as units**2, so the budget must see them first."""
    budget = lw.limits.max_edges - lw.state.edges
    if isinstance(pattern, P.Rule):  # the rule is tested on every (i, j) pair: bound that work too
        pairs = units * (units + 1) // 2 - units * first
        if pairs > budget:
            raise over_limit(
                lw.limits,
                "max_edges",
                f"{pattern} tests {pairs:,} candidate connections in a "
                f"block of {units:,} units, more than the {budget:,} edges left",
                span,
            )
    elif isinstance(pattern, P.Graph):  # the generator's own work, charged before networkx runs
        pairs = G.work(pattern.generator, pattern.args)
        if pairs > budget:
            raise over_limit(
                lw.limits,
                "max_edges",
                f"{pattern} visits up to {pairs:,} node pairs, more than the {budget:,} edges left",
                span,
            )
    elif isinstance(pattern, P.Dense):
        edges = units * (units + 1) // 2 - units * first  # upper bound of the gathers' inputs
        if edges > budget:
            raise over_limit(
                lw.limits,
                "max_edges",
                f"a dense block of {units:,} units has about {edges:,} "
                f"connections, more than the {budget:,} edges left",
                span,
            )
    reads = [P.connections(pattern, i, first) for i in range(1, units + 1)]
    edges = sum(len(r) for r in reads if len(r) > 1)
    if edges > budget:
        raise over_limit(
            lw.limits,
            "max_edges",
            f"the block of {units:,} units has about {edges:,} connections, more than the {budget:,} edges left",
            span,
        )
    return reads


def check_path(lw: Lowerer, pattern, features: int, span: Span) -> None:
    """A path longer than the block is legal -- SparseNet V1 uses path 14 in blocks of 8 units,
    whose units then read all their predecessors, and one far/near pair is shared by blocks of
    different sizes -- but far or near ALONE exceeding every feature the block will ever hold
    (``features``: the block input's groups plus its units) asks for something that does not
    exist: warn, naming the block."""
    if isinstance(pattern, P.Path) and max(pattern.far, pattern.near) > features:
        lw.graph.graph["warnings"].append(
            SpecWarning(
                f"{pattern} is longer than the block: its units have at most {features} features to "
                "read, so every unit reads all its predecessors (the block is dense)",
                span,
                f"far and near are each at most {features} here; write 'dense' if dense is meant",
            )
        )


def split_block(
    lw: Lowerer, stmt, bscope: Scope, env, pattern: P.Split, opts: dict[str, tuple[Any, Span]]
) -> BlockInfo:
    s = pattern.scale
    lw.charge_layers(s - 1, opts["connect"][1])
    x0 = bscope.input
    assert x0 is not None  # lower_block opens the block's scope at its input
    shape = lw.shape(x0)
    c = shape[0]
    if c % s:
        divisors = [d for d in range(2, min(c, 64) + 1) if c % d == 0]
        raise SpecValueError(
            f"split scale {s} does not divide the width {c}",
            opts["connect"][1],
            f"scales that divide {c}: {', '.join(map(str, divisors)) or 'none'}",
        )
    stage = opts.get("stage", (False, None))
    if not isinstance(stage[0], bool):
        raise SpecTypeError("block() 'stage' must be true or false", stage[1])
    hierarchical = not stage[0]
    w = c // s
    xs = {}
    for i in range(1, s + 1):
        xs[i] = lw.add(
            bscope.id(f"x{i}"),
            "slice",
            (x0,),
            {"start": (i - 1) * w, "stop": i * w},
            stmt.span,
            role="feature",
            block=bscope.path,
        )
        bscope.used.add(f"x{i}")
    y1 = xs[1]
    if "bypass" in opts:
        bv, bsp = opts["bypass"]
        if not isinstance(bv, OpValue):
            raise SpecTypeError(
                f"block() 'bypass' must be an op such as avgpool(3, 2, pad=1), got {type_name(bv)}", bsp
            )
        byscope = Scope(bscope.id("bypass"), xs[1])
        bscope.used.add("bypass")
        prev, lw.scope = lw.scope, byscope
        try:
            lw.apply_call(bv.call, bv.env, byscope, None)
        finally:
            lw.scope = prev
        y1 = byscope.current_node
    ys = {1: y1}
    units = []
    for i in range(2, s + 1):
        prefix = bscope.id(f"unit{i}")
        bscope.used.add(f"unit{i}")
        start = len(lw.created)
        reads: tuple[int, ...]
        if hierarchical and i > 2:
            agg = lw.add(f"{prefix}.sum", "add", (xs[i], ys[i - 1]), {}, stmt.span, role="aggregate")
            reads = (i - s, i - 1)
        else:
            agg, reads = xs[i], (i - s,)
        uscope = Scope(prefix, agg)
        template = unit_body(lw, stmt.body, uscope, env.child({"unit": i, "reads": len(reads)}))
        ys[i] = uscope.current_node
        lw.tag_unit(start, prefix, bscope.path, i)
        units.append(
            UnitInfo(
                index=i,
                scope=prefix,
                reads=reads,
                aggregate=agg,
                output=ys[i],
                template=template,
                nodes=tuple(lw.created[start:]),
            )
        )
    y1_shape, unit_shape = lw.shape(ys[1]), lw.shape(ys[2])
    if "bypass" not in opts and y1_shape[1:] != unit_shape[1:]:
        raise ShapeError(
            f"split block: y1 = x1 stays {fmt_shape(y1_shape)} but the units make {fmt_shape(unit_shape)}",
            opts["connect"][1],
            "y1 skips the units: give the block a bypass that resizes it like them, e.g. "
            "bypass=avgpool(3, 2, pad=1) for stride-2 units (Res2Net's stage blocks)",
        )
    out = lw.add(bscope.id("cat"), "concat", tuple(ys[i] for i in range(1, s + 1)), {}, stmt.span, role="block_output")
    features = tuple(
        [Feature(index=i - s, node=xs[i]) for i in range(1, s + 1)]
        + [Feature(index=i, node=ys[i]) for i in range(1, s + 1)]
    )
    return BlockInfo(
        name=bscope.path,
        pattern=str(pattern),
        kind="split",
        output_mode="all",
        input=x0,
        features=features,
        units=tuple(units),
        output=out,
        span=stmt.span,
    )


def probe_key(body, shape: tuple, env: Env) -> tuple[tuple, list]:
    """What a unit body's output width can depend on: the body, its input shape and every
    variable it can see. Values without a stable equality (ops, rules) are keyed by identity,
    and returned in ``keep`` so that identity stays theirs while the cache lives."""
    keep: list = [body]
    seen: dict[str, object] = {}
    e: Env | None = env
    while e is not None:
        for name, value in e.vars.items():
            if name not in seen:
                seen[name] = freeze(value, keep)
        e = e.parent
    return (id(body), shape, tuple(sorted(seen.items()))), keep


def freeze(value, keep: list):
    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if isinstance(value, list):
        return ("list", tuple(freeze(v, keep) for v in value))
    if isinstance(value, (P.Dense, P.Path, P.Window, P.Split, TensorRef)):
        return value
    keep.append(value)
    return ("id", id(value))
