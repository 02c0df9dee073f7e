"""The names a spec can call. The ops themselves -- arguments, defaults, valid ranges and the
IR attrs they lower to -- are the op registry's spec-level entries (:data:`netdsl.ops.SPEC_OPS`);
this module adds the structural statements. The names a label may not take are
:mod:`netdsl.naming`'s (``RESERVED_LABELS`` is re-exported here for older imports)."""

from __future__ import annotations

from ..naming import RESERVED_LABELS
from ..ops import REQUIRED, SPEC_OPS, Arg, SpecOp

OPS: dict[str, SpecOp] = SPEC_OPS

__all__ = ["OPS", "REQUIRED", "RESERVED_LABELS", "STRUCTURAL", "Arg", "SpecOp"]

# Calls the lowering handles itself (they take bodies or tensors, not plain values).
STRUCTURAL = (
    "block",
    "residual",
    "parallel",
    "branch",
    "repeat",
    "use",
    "add",
    "mul",
    "concat",
    "input",
    "expect",
    "output",
    "stream",
)
