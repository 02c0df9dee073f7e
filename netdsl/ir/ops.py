"""The IR contract: the closed set of op kinds, their attributes and their semantics.

A netdsl graph is a ``networkx.DiGraph``. Every node id is the op's dotted, readable name
(``block1.unit3.conv1``) and carries these attributes:

================  ======================================================================
``kind``          one of :data:`OP_KINDS`
``inputs``        tuple of producer node ids, **in order** (concat order is this order)
``attrs``         dict of the kind's attributes (table below); never mutated after lowering
``span``          :class:`netdsl.errors.Span` of the spec text that produced it, or None
``stage``         the top-level statement the node comes from: its scope name (``stem``, ``block1``,
                  ``transition1``, ``head1``; ``input`` for the input node)
``block``         the innermost block scope (:class:`BlockInfo` ``name``) the node lies in, or absent
``unit``          the 1-based index of the unit of that innermost block the node lies in, or absent
                  (a block's own ops outside its units: a split block's subsets and output concat,
                  a pattern block's output gather)
``layer``         the summary's layer key: the unit scope (``block1.unit3``) of the outermost unit
                  holding the node when that unit's block is the stage itself, else the stage
``role``          why lowering made the node: ``"aggregate"`` (a unit's input), ``"block_output"``,
                  ``"feature"`` (a window/split view of a block input), ``"stream"`` (a unit's
                  slice of a stream its block carries), ``"stream_output"`` (a block's collected
                  stream), or None
================  ======================================================================

Analyses add attributes; backends only read them:

- ``shape`` (``infer_shapes``): ``(C, H, W)`` for feature maps, ``(C,)`` after flatten;
  batch is implicit.
- ``params`` and ``flops`` (``count``): trainable parameters (BatchNorm running statistics are
  buffers, not parameters, as torchvision counts) and multiply-accumulates. **FLOPs convention:
  one multiply-accumulate counts as one FLOP**, the convention of the seed papers (ResNet's
  "3.8 billion FLOPs", SeqConv's GFLOPs column); only conv, upconv (per input position), linear and
  SE contribute.
- the concat plan (``plan_concat``, optimization level 1; the ops themselves are unchanged, so
  a backend may ignore it): ``stores`` on a producer, a tuple of ``(buffer, start, stop)``: its
  value is written into that channel range of the buffer; ``read`` on a concat/slice node that
  equals channel ranges of one buffer: ``{"buffer", "runs": ((start, stop), ...), "strategy":
  "view" | "gather" | "split", "copy_bytes"}`` (bytes per sample a gather materializes, 0 for a
  view or split); ``elided`` on a slice node whose only consumers are reads (executors skip it).
  ``graph.graph["buffers"]`` maps each buffer id to ``{"block", "shape": (C, H, W)}`` and
  ``graph.graph["planned"]`` is True. The per-channel chains that read a buffer view (run as one
  step: eval, one fused affine+activation pass; training, recomputed in backward): ``segment``
  on a chain's head, the tuple of the chain's node ids (head first), and ``in_segment`` = the
  head's id on every member (the head included).

An edge ``u -> v`` exists iff ``u`` is in ``v``'s ``inputs`` (its ``index`` attribute lists the
positions). ``graph.graph`` holds ``name``, ``input`` (node id), ``output`` (node id: the network's
output, or its first declared output), ``outputs`` (only when the spec declares them with
``output(a, b, ...)``: a tuple of ``(name, node id)`` pairs in declaration order, the order the torch
module's ``forward`` returns them and the ONNX graph lists them; read them with
:func:`netdsl.ir.graph.graph_outputs`, which gives ``(("output", output),)`` for an undeclared
one, and :func:`~netdsl.ir.graph.output_nodes`: every pass treats each output as observable, so no
output is folded away, overwritten in place or reused), ``blocks``
(a list of :class:`netdsl.ir.graph.BlockInfo`; a block's ``streams`` are the named streams it
carries, :class:`netdsl.ir.graph.StreamInfo`: per unit the slice it sees and the piece it hands
on, and their concat), ``block_parents`` (a block nested in a unit of
another block -> ``(enclosing block, unit index)``: Dense2Net's split blocks) and ``params`` (the
spec parameter values). Membership is read from these attributes (:func:`netdsl.ir.graph.enclosing`,
:func:`~netdsl.ir.graph.block_members`), never parsed out of node ids.

Op kinds and attributes (``out`` = output channels; spatial ops take ``kernel``, ``stride``,
``padding``) come from the op registry (:mod:`netdsl.ops`), one entry per kind; the table below
is generated from it.
"""

from __future__ import annotations

from ..ops import REGISTRY, fmt_shape, infer_shape
from ..ops.activations import ACTIVATIONS as _ACTIVATION_TABLE

# The closed set of op kinds: the registry's entries (each has ``min_inputs``, ``max_inputs``,
# ``attrs``, ``shape``, ``params`` and ``flops``).
OP_KINDS = REGISTRY
ACTIVATIONS = tuple(_ACTIVATION_TABLE)

Shape = tuple[int, ...]


def _kind_table() -> str:
    rows = [
        (k, f"{op.min_inputs}" if op.max_inputs == op.min_inputs else f">={op.min_inputs}", op.doc)
        for k, op in REGISTRY.items()
    ]
    w0, w1 = max(len(r[0]) for r in rows) + 2, 5
    w2 = max(len(r[2]) for r in rows)
    rule = f"{'=' * w0}  {'=' * w1}  {'=' * w2}"
    lines = [rule, f"{'kind':<{w0}}  {'arity':<{w1}}  attrs", rule]
    lines += [f"{k:<{w0}}  {a:<{w1}}  {d}" for k, a, d in rows]
    return "\n".join(lines + [rule])


__doc__ = (__doc__ or "") + "\n" + _kind_table() + "\n"

__all__ = ["ACTIVATIONS", "OP_KINDS", "Shape", "fmt_shape", "infer_shape"]
