"""The SeqConv presets compute the authors' forward: raw residual stream included.

netdsl's weights are copied by position into :mod:`tests.seqconv_reference` (a hand-written,
torch-only reading of GroupOfAlchemists/SeqConv) and the two modules must give the same logits,
in eval and in train mode, and the same gradients (in float64). The BatchNorm statistics and affine
parameters are randomized first, so that eval mode is not a near-identity.
"""

from __future__ import annotations

import pytest
import torch

from netdsl.api import build_model
from tests.seqconv_reference import SeqResNetCIFAR, SeqResNetImageNet, copy_weights

IMAGENET = {"classes": 10, "size": 32}


def _randomize_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)


def _check(target: str, reference: torch.nn.Module, opt: int = 1, **overrides) -> None:
    size = overrides.get("size", 32)
    torch.manual_seed(0)
    ours = build_model(target, opt=opt, **overrides).double()  # float64: no rounding noise in the comparison
    reference.double()
    _randomize_bn(ours)
    copy_weights(ours, reference)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    ours.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    ours.train()
    reference.train()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), reference(xb)
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    w = torch.randn_like(ya)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
    mine, theirs = list(ours.named_parameters()), list(reference.named_parameters())
    assert len(mine) == len(theirs)
    for (name, p), (_, q) in zip(mine, theirs, strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    # train mode updated both modules' running statistics alike
    for (name, a), (_, b) in zip(ours.state_dict().items(), reference.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_seqresnet_cifar_reduced():  # (opt 0 equals opt 1: tests/test_plan_equivalence.py)
    _check("seqresnet_k8_r4_n1", SeqResNetCIFAR(4, 2, 1, False), k=4, r=2, size=16)


def test_seqresnet_b_cifar_reduced():
    _check("seqresnet_b_k16_r7_n1", SeqResNetCIFAR(4, 1, 2, True), k=4, r=1, n=2, size=16)


@pytest.mark.slow  # the ImageNet stem runs fast in SeqResNeXt's test, the bottleneck in SeqResNet-B CIFAR's
def test_seqresnet_b_imagenet_reduced():
    ref = SeqResNetImageNet([1, 2, 1, 1], 1, [16, 16, 32, 32], [1, 1, 1, 1], classes=10)
    _check("seqresnet_b22", ref, blocks=[1, 2, 1, 1], widen=1, ks=[16, 16, 32, 32], **IMAGENET)


def test_seqresnext_reduced():
    ref = SeqResNetImageNet([1, 1, 2, 1], 1, [16, 16, 32, 32], [2, 2, 4, 4], classes=10, twice=True)
    _check("seqresnext24", ref, blocks=[1, 1, 2, 1], widen=1, ks=[16, 16, 32, 32], cards=[2, 2, 4, 4], **IMAGENET)


def test_the_raw_stream_matters():
    """The check can fail: the reference with the extension kept in front ([input, extension],
    the CIFAR code's down-sampling input) is another function than SeqResNeXt's preset."""
    ref = SeqResNetImageNet([1, 1, 2, 1], 1, [16, 16, 32, 32], [2, 2, 4, 4], classes=10, twice=False)
    with pytest.raises(AssertionError):
        _check("seqresnext24", ref, blocks=[1, 1, 2, 1], widen=1, ks=[16, 16, 32, 32], cards=[2, 2, 4, 4], **IMAGENET)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, make, size",
    [
        ("seqresnet_k8_r4_n1", lambda: SeqResNetCIFAR(8, 4, 1, False), 32),
        ("seqresnet_b_k32_r12_n3", lambda: SeqResNetCIFAR(32, 12, 3, True), 32),
        ("seqresnet_b22", lambda: SeqResNetImageNet([1, 1, 2, 1], 2, [32, 64, 64, 128], [1, 1, 1, 1]), 64),
        (
            "seqresnext24",
            lambda: SeqResNetImageNet([1, 1, 3, 1], 4, [32, 64, 64, 128], [8, 8, 4, 4], twice=True),
            64,
        ),
    ],
)
def test_full_presets(name, make, size):
    _check(name, make(), **({"size": size} if size != 32 else {}))
