"""Backend tables cover the closed set of op kinds; reserved names cover torch's attributes."""

import keyword

import torch
from torch import nn

from netdsl.backends.torch_ops import ACT_FUNCS, TORCH_OPS
from netdsl.frontend.builtins import OPS, RESERVED_LABELS
from netdsl.ir.ops import ACTIVATIONS, OP_KINDS


def test_every_op_kind_has_a_torch_entry():
    assert set(TORCH_OPS) == set(OP_KINDS)


def test_every_activation_has_a_torch_function():
    assert set(ACT_FUNCS) == set(ACTIVATIONS)


def test_every_spec_op_lowers_to_a_known_kind():
    assert {sig.kind for sig in OPS.values()} <= set(OP_KINDS)


def test_reserved_labels_cover_module_attributes_and_keywords():
    public = {n for n in dir(nn.Module) if not n.startswith("_")}
    assert public <= RESERVED_LABELS
    assert set(keyword.kwlist) <= RESERVED_LABELS


def test_affine_and_se_layers_compute_their_formulas():
    from netdsl.backends.torch_layers import Affine, SqueezeExcite

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
