"""The ops a spec can call, their arguments, defaults and valid ranges.

Each entry maps a spec-level name (``conv``, ``relu``) to an IR kind with fixed attributes
plus the call's checked arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.ops import ACTIVATIONS

REQUIRED = object()


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    check: str  # "int>=1", "int>=0", "bool", "prob", "float>0", "float"
    default: object = REQUIRED


@dataclass(frozen=True, slots=True)
class OpSig:
    kind: str
    args: tuple[Arg, ...] = ()
    fixed: dict = field(default_factory=dict)
    doc: str = ""


_POOL = (Arg("kernel", "int>=1"), Arg("stride", "int>=1", None), Arg("pad", "int>=0", 0), Arg("ceil", "bool", False))

OPS: dict[str, OpSig] = {
    "conv": OpSig("conv", (
        Arg("out", "int>=1"), Arg("kernel", "int>=1", 3), Arg("stride", "int>=1", 1), Arg("pad", "int>=0", None),
        Arg("groups", "int>=1", 1), Arg("dilation", "int>=1", 1), Arg("bias", "bool", False),
    ), doc="2-D convolution; pad defaults to dilation*(kernel//2) ('same' at stride 1)"),
    "bn": OpSig("bn", (Arg("eps", "float>0", 1e-5), Arg("momentum", "prob", 0.1)), doc="batch normalization"),
    "maxpool": OpSig("maxpool", _POOL, doc="max pooling; stride defaults to the kernel"),
    "avgpool": OpSig("avgpool", _POOL + (Arg("count_pad", "bool", True),), doc="average pooling"),
    "gap": OpSig("gap", doc="global average pooling to C x 1 x 1"),
    "flatten": OpSig("flatten"),
    "linear": OpSig("linear", (Arg("out", "int>=1"), Arg("bias", "bool", True)), doc="fully connected; flattens first"),
    "dropout": OpSig("dropout", (Arg("p", "prob", 0.5),)),
    "identity": OpSig("identity"),
    "se": OpSig("se", (Arg("reduction", "int>=1", 16), Arg("hidden", "int>=1", None), Arg("bias", "bool", True)),
                doc="squeeze-and-excitation; hidden defaults to max(1, channels // reduction)"),
}
for _fn in ACTIVATIONS:
    OPS[_fn] = OpSig("act", (Arg("slope", "float", 0.01),) if _fn == "leaky_relu" else (), {"fn": _fn})

# Calls the lowering handles itself (they take bodies or tensors, not plain values).
STRUCTURAL = ("block", "residual", "parallel", "branch", "repeat", "use", "add", "mul", "concat", "input")

# Names a label may not take: they would shadow torch.nn.Module attributes or Python keywords in
# the emitted module (tests/test_names.py checks this list against torch itself).
RESERVED_LABELS = frozenset("""
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
""".split())
