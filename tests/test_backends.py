"""Every op kind has every backend in the registry; reserved names cover torch's attributes."""

import keyword

import torch
import torch.nn.functional as F
from torch import nn

from netdsl.backends.torch.layers import Affine, SqueezeExcite
from netdsl.frontend.builtins import OPS, RESERVED_LABELS
from netdsl.ir.ops import ACTIVATIONS, OP_KINDS
from netdsl.ops import REGISTRY


def test_the_ir_kinds_are_the_registry():
    assert OP_KINDS is REGISTRY
    assert set(ACTIVATIONS) == {s.name for s in OPS.values() if s.kind == "act"}


def test_every_spec_op_lowers_to_a_known_kind():
    assert {sig.kind for sig in OPS.values()} <= set(OP_KINDS)


CLASSES = {
    "nn.Conv2d": nn.Conv2d,
    "nn.BatchNorm2d": nn.BatchNorm2d,
    "nn.Linear": nn.Linear,
    "nn.Dropout": nn.Dropout,
    "Affine": Affine,
    "SqueezeExcite": SqueezeExcite,
}


def build_module(kind, attrs, in_shapes):
    ctor = REGISTRY[kind].torch.module(attrs, in_shapes)
    return None if ctor is None else CLASSES[ctor[0]](*ctor[1], **ctor[2])


def call(kind, attrs, *xs):
    """Evaluate the registry's call source, as the generated module runs it."""
    names = [f"x{k}" for k in range(len(xs))]
    src = REGISTRY[kind].torch.call(attrs, "", names)
    return eval(src, {"torch": torch, "F": F, **dict(zip(names, xs, strict=True))})


def test_stateful_ops_build_their_declared_classes():
    conv = build_module(
        "conv",
        {"out": 4, "kernel": 3, "stride": 2, "padding": 1, "dilation": 1, "groups": 2, "bias": True},
        [(2, 8, 8)],
    )
    assert isinstance(conv, nn.Conv2d)
    assert (conv.in_channels, conv.out_channels, conv.stride, conv.groups) == (2, 4, (2, 2), 2)
    assert conv.bias is not None
    assert build_module("act", {"fn": "relu"}, [(2, 8, 8)]) is None
    assert isinstance(build_module("se", {"hidden": 1, "bias": True}, [(3, 4, 4)]), SqueezeExcite)
    assert isinstance(build_module("affine", {}, [(3, 4, 4)]), Affine)


def test_call_sources_compute_their_torch_functions():
    x = torch.randn(2, 6, 5, 5)
    assert torch.equal(call("act", {"fn": "leaky_relu", "slope": 0.2}, x), F.leaky_relu(x, 0.2))
    assert torch.equal(call("add", {}, x, x, x), x + x + x)
    assert torch.equal(call("concat", {}, x, x), torch.cat([x, x], 1))
    assert torch.equal(call("slice", {"start": 1, "stop": 4}, x), x[:, 1:4])
    pool = {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}
    assert torch.equal(call("avgpool", pool, x), F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False))


def test_reserved_labels_cover_module_attributes_and_keywords():
    public = {n for n in dir(nn.Module) if not n.startswith("_")}
    assert public <= RESERVED_LABELS
    assert set(keyword.kwlist) <= RESERVED_LABELS


def test_affine_and_se_layers_compute_their_formulas():
    from netdsl.backends.torch.layers import Affine, SqueezeExcite

    a = Affine(3)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        a.bias.copy_(torch.tensor([0.5, 0.0, -1.0]))
    x = torch.ones(1, 3, 2, 2)
    assert a(x)[0, :, 0, 0].tolist() == [1.5, 2.0, 2.0]
    se = SqueezeExcite(4, 2)
    x = torch.randn(2, 4, 3, 3)
    gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3), keepdim=True)))))
    assert torch.allclose(se(x), x * gate)
