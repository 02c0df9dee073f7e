"""The planned torch executor: runs a graph that :mod:`netdsl.passes.plan_concat` has planned.

Same submodules and parameter names as :class:`~netdsl.backends.torch_module.NetdslModule`
(their state_dicts are interchangeable); what differs is where tensors live.

- Every block's features live in one buffer per forward. A producer's value is stored once into
  its channel range; a unit's input is a view of the buffer (dense: a prefix, window: a range),
  so no per-unit concatenation is made. Multi-range reads (path, rule) are gathered or split
  as the plan says.
- **Inference** (``eval()`` under ``torch.no_grad()``): the BN(+activation) that follows a buffer
  view runs as one per-channel affine(+activation) pass -- BatchNorm on a strided channel slice
  takes a slow path -- writing a fresh channels_last tensor; a conv followed by BN folds the
  BN into its weights. Layout: **channels_last** by default, because the 1x1 bottleneck convs
  are GEMMs over ``(N*H*W, C)``, which oneDNN runs natively in NHWC (issue 4 and
  docs/performance.md for measurements); the buffer is NHWC too, so a channel range of it is a
  row-strided matrix the affine pass reads directly.
- **Training**: the buffer is written outside autograd. :class:`_Store` hands autograd a view of
  the buffer with its own version counter (writes into later ranges never touch a range already
  read, so autograd's in-place check would only raise false alarms); :class:`_Read` returns a
  view of the read ranges and splits the gradient back per producer. The per-channel chain after
  a view (BN, activation, and a following 1x1 conv) runs in :class:`_Recompute`, which saves only
  its input view and recomputes in backward (as the memory-efficient DenseNet report does), with
  BatchNorm's running statistics updated once. Saved activations therefore grow linearly with
  depth.

>>> import torch
>>> from netdsl.api import build_model
>>> planned = build_model("specs/densenet_bc.net", depth=10).eval()
>>> naive = build_model("specs/densenet_bc.net", depth=10, opt=0).eval()
>>> naive.load_state_dict(planned.state_dict())
<All keys matched successfully>
>>> x = torch.randn(2, 3, 32, 32)
>>> with torch.no_grad():
...     torch.allclose(planned(x), naive(x), atol=1e-5)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from ..passes.plan_concat import segments
from .torch_module import setup_module
from .torch_ops import stateless_fn

# Activations with an in-place form, used on fresh single-consumer tensors in inference.
_INPLACE_ACT: dict[str, Callable] = {
    "relu": torch.relu_, "sigmoid": torch.sigmoid_, "tanh": torch.tanh_,
    "relu6": lambda x: F.hardtanh_(x, 0.0, 6.0), "silu": lambda x: F.silu(x, inplace=True),
    "hardswish": lambda x: F.hardswish(x, inplace=True), "elu": lambda x: F.elu_(x),
}


def _act(attrs: dict) -> Callable:
    return stateless_fn("act", attrs)


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval BatchNorm as ``x * scale + shift``."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _versions(*tensors) -> tuple:
    """A cache key that changes when any tensor is updated in place or moved (.to, .double)."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)


# ---------------------------------------------------------------------------- autograd pieces


class _Store(torch.autograd.Function):
    """Copy a producer's value into its buffer range; autograd sees a view with its own version
    counter (see the module docstring for why that is sound)."""

    @staticmethod
    def forward(ctx, value, holder, start, stop):
        slot = holder[0][:, start:stop]
        slot.copy_(value)
        return slot.data

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None


class _Read(torch.autograd.Function):
    """A unit's input: a view of one buffer range (or a gather of several); the gradient is split
    back onto the producers whose ranges it covers."""

    @staticmethod
    def forward(ctx, read, holder, *producers):
        ctx.read = read
        buf = holder[0]
        if len(read.runs) == 1:
            a, b = read.runs[0]
            return buf[:, a:b].data
        return torch.cat([buf[:, a:b] for a, b in read.runs], 1)

    @staticmethod
    def backward(ctx, grad):
        read = ctx.read
        out = []
        for (s, e), pieces in zip(read.producer_ranges, read.pieces):
            if len(pieces) == 1 and pieces[0][0] == s and pieces[0][1] == e:
                g0 = pieces[0][2]
                out.append(grad[:, g0:g0 + e - s])
                continue
            g = grad.new_zeros((grad.shape[0], e - s) + tuple(grad.shape[2:]))
            for a, b, g0 in pieces:
                g[:, a - s:b - s] += grad[:, g0:g0 + b - a]
            out.append(g)
        return (None, None, *out)


class _Recompute(torch.autograd.Function):
    """Run a per-channel chain (+1x1 conv) without saving its intermediates; recompute them in
    backward. BatchNorm updates its running statistics in forward only."""

    @staticmethod
    def forward(ctx, seg, x, *params):
        ctx.seg = seg
        ctx.save_for_backward(x, *params)
        with torch.no_grad():
            return seg.run(x, params, update_stats=True)

    @staticmethod
    def backward(ctx, grad):
        x, *params = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:]
        with torch.enable_grad():
            xd = x.detach().requires_grad_(needs[0])
            ps = [p.detach().requires_grad_(n) for p, n in zip(params, needs[1:])]
            out = ctx.seg.run(xd, ps, update_stats=False)
            wanted = [t for t, n in zip([xd] + ps, needs) if n]
            got = iter(torch.autograd.grad(out, wanted, grad))
        return (None, *[next(got) if n else None for n in needs])


# ---------------------------------------------------------------------------- plan pieces


@dataclass
class _ReadSpec:
    buffer: int  # value slot of the buffer holder
    runs: tuple[tuple[int, int], ...]
    strategy: str
    producers: tuple[int, ...] = ()  # value slots of the stored producers the runs cover
    producer_ranges: tuple[tuple[int, int], ...] = ()
    pieces: tuple = ()  # per producer: ((start, stop, offset in the read), ...)


@dataclass
class _Segment:
    """A per-channel chain after a buffer view, optionally ending in a 1x1 conv."""

    ops: list  # (kind, module or attrs)
    conv: nn.Conv2d | None
    split_runs: tuple[tuple[int, int], ...] | None = None  # read channel ranges, for "split"
    fold_bn: nn.BatchNorm2d | None = None  # eval: the BN after the conv, folded into it
    cache: dict = field(default_factory=dict)

    def params(self) -> list[torch.Tensor]:
        ps = []
        for kind, m in self.ops:
            if kind in ("bn", "affine"):
                ps += [m.weight, m.bias]
        if self.conv is not None:
            ps.append(self.conv.weight)
            if self.conv.bias is not None:
                ps.append(self.conv.bias)
        return ps

    def run(self, x, params, update_stats: bool):
        """Train/grad path: the chain with explicit parameters (for recomputation)."""
        it = iter(params)
        for kind, m in self.ops:
            if kind == "bn":
                w, b = next(it), next(it)
                if m.training:
                    rm, rv, momentum = None, None, 0.0
                    if update_stats and m.track_running_stats:  # what nn.BatchNorm2d.forward does
                        m.num_batches_tracked.add_(1)
                        rm, rv = m.running_mean, m.running_var
                        momentum = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
                    x = F.batch_norm(x, rm, rv, w, b, True, momentum, m.eps)
                else:
                    x = F.batch_norm(x, m.running_mean, m.running_var, w, b, False, 0.0, m.eps)
            elif kind == "affine":
                w, b = next(it), next(it)
                shape = (1, -1) + (1,) * (x.dim() - 2)
                x = x * w.view(shape) + b.view(shape)
            else:
                x = m(x)
        if self.conv is not None:
            c = self.conv
            w = next(it)
            b = next(it) if c.bias is not None else None
            x = F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)
        return x

    def _steps(self) -> list:
        """Eval: the chain as [(scale, shift) | activation], BNs/affines merged."""
        key = _versions(*self.params(), *[t for k, m in self.ops if k == "bn" for t in (m.running_mean, m.running_var)])
        if self.cache.get("key") != key:
            steps, scale, shift = [], None, None
            for kind, m in self.ops:
                if kind in ("bn", "affine"):
                    s, t = _bn_affine(m) if kind == "bn" else (m.weight, m.bias)
                    scale, shift = (s, t) if scale is None else (scale * s, shift * s + t)
                else:
                    if scale is not None:
                        steps.append((scale.detach(), shift.detach()))
                        scale = shift = None
                    steps.append(m)
            if scale is not None:
                steps.append((scale.detach(), shift.detach()))
            self.cache.update(key=key, steps=steps)
        return self.cache["steps"]

    def run_fast(self, x, memory_format, runs=None):
        """Eval, no grad: one pass per (affine, activation) over a view; ``runs`` splits the chain
        over several views of the same read (the "split" strategy)."""
        steps = self._steps()
        weight, bias = self._conv_params(memory_format)
        if runs is None:
            return self._apply(x, steps, memory_format, weight, bias)
        out, offset = None, 0
        for view in runs:
            c = view.shape[1]
            part = [(st[0][offset:offset + c], st[1][offset:offset + c]) if isinstance(st, tuple) else st
                    for st in steps]
            y = self._apply(view, part, memory_format, weight[:, offset:offset + c], bias if out is None else None)
            out = y if out is None else out.add_(y)
            offset += c
        return out

    def _conv_params(self, memory_format):
        """Eval: the conv's weight and bias, with a following BN folded in if there is one."""
        c, bn = self.conv, self.fold_bn
        if c is None:
            return None, None
        if bn is None:
            return c.weight, c.bias
        return fold_conv_bn(c, bn, self.cache, memory_format)

    def _apply(self, x, steps, memory_format, weight, bias):
        owned = False
        for st in steps:
            if isinstance(st, tuple):
                scale, shift = st
                shape = (1, -1, 1, 1)
                out = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=memory_format)
                x = torch.addcmul(shift.view(shape), x, scale.view(shape), out=out)
                owned = True
            else:
                fn = _INPLACE_ACT.get(st.fn_name) if owned else None
                x = fn(x) if fn is not None else st(x)
                owned = True
        if self.conv is not None:
            c = self.conv
            x = F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)
        return x


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, cache: dict, memory_format) -> tuple:
    """Eval: ``bn(conv(x)) == conv'(x)`` with ``W' = W * scale``, ``b' = shift + b * scale``;
    cached in ``cache`` until a parameter or running statistic changes."""
    key = _versions(conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                    *([conv.bias] if conv.bias is not None else []))
    if cache.get("fold_key") != key:
        with torch.no_grad():
            scale, shift = _bn_affine(bn)
            w = conv.weight * scale.view(-1, 1, 1, 1)
            b = shift + (conv.bias * scale if conv.bias is not None else 0)
        cache["fold_key"], cache["fold"] = key, (w.contiguous(memory_format=memory_format), b)
    return cache["fold"]


class _Act(nn.Module):
    """A stateless activation as a module (so a segment's ops are uniform)."""

    def __init__(self, attrs: dict):
        super().__init__()
        self.fn_name = attrs["fn"]
        self._fn = _act(attrs)

    def forward(self, x):
        return self._fn(x)


@dataclass
class _Step:
    out: int
    ins: tuple[int, ...]
    kind: str  # "op", "read", "segment", "skip"
    fn: Callable | None = None
    node: str = ""
    read: _ReadSpec | None = None
    segment: _Segment | None = None
    fold_bn: nn.BatchNorm2d | None = None  # eval: this conv absorbs the following BN
    passthrough: bool = False  # eval: a BN already folded into the conv before it
    inplace_act: Callable | None = None
    stores: tuple[tuple[int, int, int], ...] = ()  # (buffer slot, start, stop)
    new_buffers: tuple[tuple[int, tuple], ...] = ()  # (buffer slot, (C, H, W)) allocated before this step
    free: tuple[int, ...] = ()
    fold_cache: dict = field(default_factory=dict)


class PlannedModule(nn.Module):
    """The network of a planned graph (``compile_spec(..., opt=1)``). ``forward(x)`` takes ``(N, C, H, W)``.

    ``memory_format`` is the inference layout (``torch.channels_last`` by default, see the module
    docstring); training keeps NCHW buffers, the layout the naive module trains in, so the two
    differ only in where tensors live."""

    def __init__(self, graph: nx.DiGraph, memory_format: torch.memory_format = torch.channels_last):
        super().__init__()
        if not graph.graph.get("planned"):
            raise ValueError("PlannedModule needs a graph planned by plan_concat (compile_spec(..., opt=1))")
        self.memory_format = memory_format
        order, last_use, mods = setup_module(self, graph)
        self._mods = mods
        self._build(graph, order, last_use)

    # -- construction ---------------------------------------------------------------------

    def _build(self, graph, order, last_use) -> None:
        nodes = graph.nodes
        out_node = graph.graph["output"]
        slot = {n: k for k, n in enumerate(order)}
        buffers = graph.graph["buffers"]
        buf_slot = {b: len(order) + k for k, b in enumerate(buffers)}
        self._buffer_shapes = {buf_slot[b]: tuple(info["shape"]) for b, info in buffers.items()}
        stored_in: dict[str, list] = {}
        for n in order:
            for b, s, e in nodes[n].get("stores", ()):
                stored_in.setdefault(b, []).append((n, s, e))

        seg_head = segments(graph)  # per-channel chains after a buffer view
        alias: dict[str, str] = {}  # covered node -> the segment head whose step computes it
        for head, chain in seg_head.items():
            for c in chain[1:]:
                alias[c] = head

        # conv -> bn pairs that fold in eval (the conv's single consumer is the bn); a conv that
        # ends a segment folds too.
        fold: dict[str, str] = {}
        for n in order:
            d = nodes[n]
            if d["kind"] == "bn":
                src = d["inputs"][0]
                conv_ok = src not in alias or seg_head[alias[src]][-1] == src
                if (nodes[src]["kind"] == "conv" and list(graph.successors(src)) == [n] and conv_ok
                        and src != out_node and not nodes[src].get("stores") and n not in alias
                        and n not in seg_head):
                    fold[src] = n

        # Liveness. A step runs at its node's position, or at its segment head's; a read keeps
        # the producers it covers alive (autograd's _Read takes them as inputs); a buffer lives
        # from its first store to its last store or read.
        pos = {n: k for k, n in enumerate(order)}
        eff_pos = {n: pos[alias.get(n, n)] for n in order}
        reads = {n: self._read_spec(nodes[n]["read"], buf_slot, stored_in, slot)
                 for n in order if nodes[n].get("read")}
        eff_last: dict[int, int] = {}
        for n in order:
            if n in alias or nodes[n].get("elided"):
                continue
            srcs = reads[n].producers if n in reads else [slot[i] for i in nodes[n]["inputs"]]
            for src in srcs:
                eff_last[src] = max(eff_last.get(src, -1), eff_pos[n])
        buf_first: dict[int, int] = {}
        buf_last: dict[int, int] = {}
        for b, entries in stored_in.items():
            ks = [eff_pos[n] for n, _, _ in entries]
            buf_first[buf_slot[b]] = min(ks)
            buf_last[buf_slot[b]] = max(ks)
        for n, r in reads.items():
            buf_last[r.buffer] = max(buf_last[r.buffer], eff_pos[n])

        steps: list[_Step] = []
        self._n = len(order) + len(buffers)
        for k, n in enumerate(order):
            d = nodes[n]
            if (d["kind"] == "input" and not d.get("stores")) or n in alias or d.get("elided"):
                continue
            # A block that starts at the network input stores the input itself into its buffer.
            ins = (slot[n],) if d["kind"] == "input" else tuple(slot[i] for i in d["inputs"])
            out = k
            step = _Step(out=out, ins=ins, kind="op", node=n)
            if n in seg_head:
                chain = seg_head[n]
                ops = []
                for c in chain:
                    cd = nodes[c]
                    if cd["kind"] == "conv":
                        continue
                    ops.append((cd["kind"], self._mods[c] if c in self._mods else _Act(cd["attrs"])))
                conv = self._mods[chain[-1]] if nodes[chain[-1]]["kind"] == "conv" else None
                step.kind = "segment"
                step.segment = _Segment(ops, conv)
                step.out = slot[chain[-1]]
                src_read = nodes[d["inputs"][0]].get("read")
                if src_read and src_read["strategy"] == "split":
                    step.segment.split_runs = src_read["runs"]
                if chain[-1] in fold:
                    step.segment.fold_bn = self._mods[fold[chain[-1]]]
            elif d.get("read"):
                r = d["read"]
                step.kind = "read"
                step.read = reads[n]
                step.ins = step.read.producers
            elif d["kind"] == "conv" and n in fold:
                step.fn = self._mods[n]
                step.fold_bn = self._mods[fold[n]]
            elif d["kind"] == "bn" and d["inputs"][0] in fold:
                step.fn = self._mods[n]
                step.passthrough = True
            else:
                step.fn = self._mods.get(n) or stateless_fn("identity" if d["kind"] == "input" else d["kind"], d["attrs"])
                if d["kind"] == "act":
                    src = d["inputs"][0]
                    sd = nodes[src]
                    if (sd["kind"] in ("conv", "bn", "affine", "add", "linear") and len(list(graph.successors(src))) == 1
                            and not sd.get("stores") and src != out_node
                            and (src not in alias or seg_head[alias[src]][-1] == src)):
                        step.inplace_act = _INPLACE_ACT.get(d["attrs"]["fn"])
            value_node = order[step.out]
            step.stores = tuple((buf_slot[b], s, e) for b, s, e in nodes[value_node].get("stores", ()))
            here = eff_pos[value_node]
            step.new_buffers = tuple((bs, self._buffer_shapes[bs]) for bs, first in buf_first.items() if first == here)
            dead = [s for s, last in eff_last.items() if last == here and s != slot[out_node]]
            dead += [bs for bs, last in buf_last.items() if last == here]
            step.free = tuple(dead)
            steps.append(step)
        self._steps = steps
        self._input = slot[graph.graph["input"]]
        self._output = slot[out_node]

    @staticmethod
    def _read_spec(r: dict, buf_slot, stored_in, slot) -> _ReadSpec:
        runs = tuple(tuple(x) for x in r["runs"])
        producers, ranges, pieces = [], [], []
        for n, s, e in stored_in[r["buffer"]]:
            mine, offset = [], 0
            for a, b in runs:
                lo, hi = max(a, s), min(b, e)
                if lo < hi:
                    mine.append((lo, hi, offset + lo - a))
                offset += b - a
            if mine and (s, e) not in ranges:
                producers.append(slot[n])
                ranges.append((s, e))
                pieces.append(tuple(mine))
        return _ReadSpec(buf_slot[r["buffer"]], runs, r["strategy"], tuple(producers), tuple(ranges), tuple(pieces))

    # -- execution ------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = not self.training and not torch.is_grad_enabled()
        vals: list = [None] * self._n
        if fast:
            x = x.contiguous(memory_format=self.memory_format)
        vals[self._input] = x
        n_batch = x.shape[0]
        layout = self.memory_format if fast else torch.contiguous_format
        for st in self._steps:
            for bs, shape in st.new_buffers:
                vals[bs] = [torch.empty((n_batch,) + shape, dtype=x.dtype, device=x.device, memory_format=layout)]
            if st.kind == "read":
                v = self._do_read(st.read, vals, fast)
            elif st.kind == "segment":
                v = self._do_segment(st, vals, fast)
            elif fast and st.passthrough:
                v = vals[st.ins[0]]
            elif fast and st.fold_bn is not None:
                v = self._folded_conv(st, vals[st.ins[0]])
            elif fast and st.inplace_act is not None:
                v = st.inplace_act(vals[st.ins[0]])
            else:
                v = st.fn(*[vals[i] for i in st.ins])
            for bs, s, e in st.stores:
                if fast:
                    vals[bs][0][:, s:e].copy_(v)
                    v = vals[bs][0][:, s:e]
                else:
                    v = _Store.apply(v, vals[bs], s, e)
            vals[st.out] = v
            for f in st.free:
                vals[f] = None
        return vals[self._output]

    def _do_read(self, r: _ReadSpec, vals, fast: bool):
        holder = vals[r.buffer]
        if not fast:
            return _Read.apply(r, holder, *[vals[p] for p in r.producers])
        buf = holder[0]
        if r.strategy == "split":
            return [buf[:, a:b] for a, b in r.runs]
        if len(r.runs) == 1:
            a, b = r.runs[0]
            return buf[:, a:b]
        return torch.cat([buf[:, a:b] for a, b in r.runs], 1)

    def _do_segment(self, st: _Step, vals, fast: bool):
        seg = st.segment
        x = vals[st.ins[0]]
        if fast:
            if isinstance(x, list):
                return seg.run_fast(None, self.memory_format, runs=x)
            return seg.run_fast(x, self.memory_format)
        if isinstance(x, list):  # a split read is gathered when autograd is on
            x = torch.cat(x, 1)
        return _Recompute.apply(seg, x, *seg.params())

    def _folded_conv(self, st: _Step, x):
        conv, bn = st.fn, st.fold_bn
        key = _versions(conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                        *([conv.bias] if conv.bias is not None else []))
        if st.fold_cache.get("key") != key:
            with torch.no_grad():
                scale, shift = _bn_affine(bn)
                w = conv.weight * scale.view(-1, 1, 1, 1)
                b = shift + (conv.bias * scale if conv.bias is not None else 0)
            st.fold_cache = {"key": key, "w": w.contiguous(memory_format=self.memory_format), "b": b}
        return F.conv2d(x, st.fold_cache["w"], st.fold_cache["b"], conv.stride, conv.padding, conv.dilation, conv.groups)

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}, input={self.input_shape}, planned"
