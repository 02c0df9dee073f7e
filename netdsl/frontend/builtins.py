"""The names a spec can call. The ops themselves -- arguments, defaults, valid ranges and the
IR attrs they lower to -- are the op registry's spec-level entries (:data:`netdsl.ops.SPEC_OPS`);
this module adds the structural statements and the names a label may not take."""

from __future__ import annotations

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

# Names a label may not take: they would shadow torch.nn.Module attributes or Python keywords in
# the emitted module (tests/test_names.py checks this list against torch itself).
RESERVED_LABELS = frozenset(
    """
False None True and as assert async await break class continue def del elif else except finally for from
global if import in is lambda nonlocal not or pass raise return try while with yield
T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half
ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters
register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory smart_apply
state_dict to to_empty train training type xpu zero_grad self torch nn F
""".split()  # noqa: SIM905 -- a word list reads better than a list literal
)
