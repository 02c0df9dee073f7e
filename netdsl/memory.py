"""Bytes moved by concatenations and activation memory, naive versus planned -- computed from
the IR alone (no torch), per block and in total, for one sample of float32 (multiply by the
batch size; every figure is linear in it).

- ``copy``: bytes written by materialized concatenations per forward. Naive: every concat node.
  Planned: only reads the plan gathers (dense and window blocks: zero). ``store`` is what the
  planned executor writes instead: each stored feature once into its buffer range.
- ``train``: bytes autograd keeps for backward, deduplicated by storage (what saved-tensor hooks
  measure). Ops save what PyTorch's derivatives need: conv/bn/affine/linear/pools/se their
  input (gap is a mean and saves nothing), relu/sigmoid/tanh/elu their output, mul both inputs,
  maxpool also int64 indices, dropout a one-byte mask (the registry's ``saves``). Planned (read
  off each block's :class:`~netdsl.ir.plan.BufferPlan`): the per-channel chain on a read (a plan
  segment) is recomputed in backward; a BN -> ReLU [-> conv] head keeps its block's whole buffer
  (one storage, counted once), a head of another form the stored features its read covers; a
  split read's lone 1x1 conv saves the concatenation as at opt 0.
- ``infer``: peak live bytes of an eval forward in schedule order (a value dies after its last
  use; views are free). Planned: buffers live from their first store to their last read, a
  stored value is a transient, a fused chain materializes one activation, folded BNs and
  in-place activations allocate nothing.

>>> from netdsl.api import compile_spec
>>> r = memory_report(compile_spec("densenet_bc100_k12"))
>>> r["total"]["copy_planned"], r["total"]["copy_naive"] > 0
(0, True)
"""

from __future__ import annotations

from math import prod

import networkx as nx

from .ir.channels import DTYPE_BYTES
from .ir.graph import blocks, output_nodes, topo_nodes
from .ir.plan import BufferPlan, Read, bn_relu_head, buffer_plans, segments
from .ops import ACTIVATIONS, get
from .passes.fold_bn import bn_fold_source

FIELDS = ("copy_naive", "copy_planned", "store_planned", "train_naive", "train_planned", "infer_naive", "infer_planned")


def nbytes(graph: nx.DiGraph, node: str) -> int:
    return prod(graph.nodes[node]["shape"]) * DTYPE_BYTES


def _block(graph: nx.DiGraph, node: str) -> str | None:
    """The innermost block the node lies in (its ``block`` attribute), None outside blocks."""
    return graph.nodes[node].get("block")


def _saved(graph: nx.DiGraph, n: str) -> list[tuple[str, int]]:
    """(node whose value is saved, extra bytes) for op ``n`` in the naive module, from the registry's
    ``saves`` (extra: bytes that are not a node's value, e.g. max-pool indices, dropout masks)."""
    d = graph.nodes[n]
    ins = d["inputs"]
    saves = get(d["kind"]).saves
    if saves == "act":
        saves = "output" if ACTIVATIONS[d["attrs"]["fn"]].saves_output else "input"
    if saves == "input":
        return [(ins[0], 0)]
    if saves == "input+indices":
        return [(ins[0], 0), (n + "#indices", 2 * nbytes(graph, n))]
    if saves == "output":
        return [(n, 0)]
    if saves == "inputs":
        return [(i, 0) for i in ins]
    if saves == "mask":
        return [(n + "#mask", nbytes(graph, n) // DTYPE_BYTES)]
    return []


class _Plans:
    """The blocks' :class:`BufferPlan` objects, looked up by node: the plan is read, never re-derived."""

    def __init__(self, graph: nx.DiGraph):
        self.plans = list(buffer_plans(graph).values())
        self.stored: dict[str, BufferPlan] = {}  # node -> the first buffer it is stored in
        self.read: dict[str, tuple[BufferPlan, Read]] = {}
        for plan in self.plans:
            for st in plan.stores:
                self.stored.setdefault(st.node, plan)
            for r in plan.reads:
                self.read[r.node] = (plan, r)


def _roots(graph: nx.DiGraph, planned: bool) -> tuple[dict[str, str], dict[str, int]]:
    """Node -> storage key, and storage key -> bytes."""
    root: dict[str, str] = {}
    size: dict[str, int] = {}
    plans = _Plans(graph) if planned else None
    for n in topo_nodes(graph):
        d = graph.nodes[n]
        read = plans.read.get(n) if plans else None
        if plans and n in plans.stored:
            plan = plans.stored[n]
            root[n] = plan.buffer
            size[plan.buffer] = prod(plan.shape) * DTYPE_BYTES
        elif read and read[1].strategy == "view":
            root[n] = read[0].buffer
        elif get(d["kind"]).view:
            root[n] = root[d["inputs"][0]]
        else:
            root[n] = n
            size[n] = nbytes(graph, n)
    return root, size


def train_saved(graph: nx.DiGraph, planned: bool) -> dict[str | None, int]:
    """Bytes saved for backward per block (None: outside blocks), deduplicated by storage and
    attributed to the block of the op that first saves it. ``planned=False`` is the opt 0 module
    (every op saves what its derivative needs, the registry's ``saves``); ``planned=True`` reads
    the blocks' :class:`BufferPlan` objects for what changes."""
    # What the plan changes in training is the per-channel chain on each unit's read (its
    # ``segments``): the torch module recomputes it in backward (torch_codegen's heads) and saves
    # only what it recomputes it from. A fused BN -> ReLU [-> conv] head reads the block's buffer
    # and saves an alias of it: the whole buffer's storage, once however many heads read it
    # (runtime._BatchNormReluConv); a head of another form is checkpointed over the stored
    # features its read covers (autograd forbids writing into a buffer whose views it saved), so
    # those, each its own tensor, are what it keeps.
    root, size = _roots(graph, False)
    recomputed = _recomputed_chains(graph) if planned else {}
    in_chain = {c for _, chain, _ in recomputed.values() for c in chain}
    seen: set[str] = set()
    out: dict[str | None, int] = {}
    for n in topo_nodes(graph):
        if n in recomputed:
            feats, chain, plan = recomputed[n]
            if bn_relu_head(graph, chain):
                items = [(plan.buffer, prod(plan.shape) * DTYPE_BYTES)]
            else:
                items = [(root[f], size[root[f]]) for f in feats]
        elif n in in_chain:
            items = []
        else:
            items = [(value if extra else root[value], extra or size[root[value]]) for value, extra in _saved(graph, n)]
        for key, nbytes_ in items:
            if key in seen:
                continue
            seen.add(key)
            block = _block(graph, n)
            out[block] = out.get(block, 0) + nbytes_
    return out


def _recomputed_chains(graph: nx.DiGraph) -> dict[str, tuple[tuple[str, ...], tuple[str, ...], BufferPlan]]:
    """Head -> (the stored features its read covers, the chain, the plan) for each plan segment the
    torch module recomputes in backward: the chain on a unit's aggregate, or on a block output whose
    only consumer it is, whose members each feed only the next."""
    sources = {u.aggregate for b in blocks(graph) for u in b.units}
    sources |= {
        b.output for b in blocks(graph) if graph.out_degree(b.output) == 1 and b.output not in output_nodes(graph)
    }
    out = {}
    for plan in buffer_plans(graph).values():
        for chain in plan.segments:
            src = graph.nodes[chain[0]]["inputs"][0]
            if src not in sources or any(graph.out_degree(n) != 1 for n in chain[:-1]):
                continue
            if not get(graph.nodes[chain[0]]["kind"]).per_channel:
                # a split read's chain that is its 1x1 conv alone: no head to recompute, the
                # module concatenates the runs and the conv saves that (HarDNet's units)
                continue
            read = plan.read_of(src)
            if read is not None:  # a read of the buffer: the stored values its runs cover
                feats = tuple(dict.fromkeys(st.node for st, _, _ in plan.stored_in(read.runs)))
            else:  # a stored value read whole; a concatenation is recomputed from its inputs
                d = graph.nodes[src]
                feats = tuple(d["inputs"]) if d["kind"] == "concat" else (src,)
            out[chain[0]] = (feats, chain, plan)
    return out


def concat_copies(graph: nx.DiGraph) -> tuple[dict, dict, dict]:
    """Per block: naive concat bytes, planned concat bytes, planned store bytes."""
    naive: dict = {}
    planned: dict = {}
    stored: dict = {}
    plans = _Plans(graph)
    for n, d in graph.nodes(data=True):
        b = _block(graph, n)
        if d["kind"] == "concat":
            naive[b] = naive.get(b, 0) + nbytes(graph, n)
            read = plans.read.get(n)
            cost = nbytes(graph, n) if read is None else read[1].copy_bytes
            planned[b] = planned.get(b, 0) + cost
    for plan in plans.plans:
        hw = prod(plan.shape[1:])
        stored[plan.block] = stored.get(plan.block, 0) + sum(s.stop - s.start for s in plan.stores) * hw * DTYPE_BYTES
    return naive, planned, stored


def infer_peak(graph: nx.DiGraph, planned: bool) -> dict[str | None, int]:
    """Peak live bytes per block (the peak while that block's ops run) and overall under ``"*"``."""
    order = topo_nodes(graph)
    root, size = _roots(graph, planned)
    plans = _Plans(graph)
    heads = segments(graph) if planned else {}
    alias = {c: h for h, chain in heads.items() for c in chain[1:]}
    pos = {n: (order.index(alias[n]) if n in alias else k) for k, n in enumerate(order)}
    last: dict[str, int] = {}
    for n in order:
        if planned and graph.nodes[n].get("elided"):
            continue
        for i in graph.nodes[n]["inputs"]:
            if planned and graph.nodes[i].get("elided"):
                i = graph.nodes[i]["inputs"][0]
            last[root[i]] = max(last.get(root[i], -1), pos[n])
    for out in output_nodes(graph):  # every output lives to the end
        last[root[out]] = len(order)
    live: dict[str, int] = {}
    peaks: dict[str | None, int] = {}
    for n in order:
        d = graph.nodes[n]
        if planned and (n in alias or d.get("elided")):
            continue
        value = heads[n][-1] if n in heads else n
        transient = 0
        if planned:
            if n in heads and graph.nodes[value]["kind"] == "conv":
                transient = nbytes(graph, n)  # the fused affine+activation output feeding the conv
            if n in plans.stored or value in plans.stored:
                transient += nbytes(graph, value)  # the producer's own tensor, copied into its range
        key = root[value]
        if key not in live and not (planned and _folded_or_inplace(graph, value, alias, heads)):
            live[key] = size.get(key, 0)
        now = sum(live.values()) + transient
        b = _block(graph, n)
        peaks[b] = max(peaks.get(b, 0), now)
        peaks["*"] = max(peaks.get("*", 0), now)
        for key2 in [r for r, at in last.items() if at == pos[n]]:
            live.pop(key2, None)
    return peaks


def _folded_or_inplace(graph, n, alias, heads) -> bool:
    """Planned eval: a BN folded into the conv before it (the registry's fold decision), or an
    activation with an in-place form run on a fresh single-consumer value, allocates nothing
    (its value takes the input's storage)."""
    d = graph.nodes[n]
    if d["kind"] not in ("bn", "act") or n in heads or n in alias:
        return False
    if d["kind"] == "bn":
        return bn_fold_source(graph, n) is not None
    src = d["inputs"][0]
    sd = graph.nodes[src]
    single = list(graph.successors(src)) == [n] and not sd.get("stores") and src not in output_nodes(graph)
    inplace = get("act").torch.inplace
    has_inplace = inplace is not None and inplace(d["attrs"], "x") is not None
    return get(sd["kind"]).fresh_output and single and has_inplace


def memory_report(graph: nx.DiGraph, batch: int = 1) -> dict:
    """``{"blocks": {name: {field: bytes}}, "total": {field: bytes}}`` for ``batch`` samples
    (fields: :data:`FIELDS`). Needs a planned graph (``compile_spec(..., opt=1)``)."""
    if not graph.graph.get("planned"):
        raise ValueError("memory_report needs a planned graph (compile_spec(..., opt=1))")
    cn, cp, st = concat_copies(graph)
    tn, tp = train_saved(graph, False), train_saved(graph, True)
    inn, inp = infer_peak(graph, False), infer_peak(graph, True)
    names = [b.name for b in blocks(graph)]
    per = {}
    for b in names:
        vals = (cn.get(b, 0), cp.get(b, 0), st.get(b, 0), tn.get(b, 0), tp.get(b, 0), inn.get(b, 0), inp.get(b, 0))
        per[b] = {f: v * batch for f, v in zip(FIELDS, vals, strict=True)}
    total = (
        sum(cn.values()),
        sum(cp.values()),
        sum(st.values()),
        sum(tn.values()),
        sum(tp.values()),
        inn.get("*", 0),
        inp.get("*", 0),
    )
    return {
        "batch": batch,
        "dtype_bytes": DTYPE_BYTES,
        "blocks": per,
        "total": {f: v * batch for f, v in zip(FIELDS, total, strict=True)},
    }
