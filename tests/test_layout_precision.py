"""The layout the generated module runs in (the compiler's choice, or pinned) and mixed precision
planned through it: feature buffers, batch statistics and the recomputed heads under autocast."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import netdsl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_densenet import DenseNet, load_from  # the hand-written DenseNet

SMALL = dict(depth=10, k=4)  # DenseNet-BC: one unit per block
CL = torch.channels_last


def _x(n=3, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_the_module_runs_channels_last_whatever_its_caller_passes():
    chosen = netdsl.build_model("densenet_bc100_k12", **SMALL).eval()
    follows = netdsl.build_model("densenet_bc100_k12", memory_format="preserve", **SMALL).eval()
    source = netdsl.torch_source("densenet_bc100_k12", **SMALL)
    assert "x = x.contiguous(memory_format=torch.channels_last)  # layout: the compiler's choice" in source
    assert "x.contiguous(memory_format" not in netdsl.torch_source("densenet_bc100_k12", memory_format="preserve")
    convs = [m.weight for m in chosen.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=CL) for w in convs) and not convs[0].is_contiguous()
    seen = []
    hook = chosen.block1.unit1.conv2.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():  # the same weights (the seed's values do not depend on the layout)
        for x in (_x(), _x().contiguous(memory_format=CL)):
            torch.testing.assert_close(chosen(x), follows(x), rtol=1e-5, atol=1e-6)
    hook.remove()
    assert all(t.is_contiguous(memory_format=CL) for t in seen)  # inside: NHWC, NCHW input or not


def test_pinned_nchw_runs_nchw_and_is_stated():
    pinned = netdsl.build_model("densenet_bc100_k12", memory_format="contiguous", **SMALL).eval()
    source = netdsl.torch_source("densenet_bc100_k12", memory_format="contiguous", **SMALL)
    assert "x = x.contiguous(memory_format=torch.contiguous_format)  # layout: pinned" in source
    assert all(p.is_contiguous() for p in pinned.parameters())
    seen = []
    pinned.block1.unit1.conv2.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        pinned(_x().contiguous(memory_format=CL))
    assert seen[0].is_contiguous()
    with pytest.raises(netdsl.errors.NetdslError, match="memory_format='nhwc'"):
        netdsl.build_model("densenet_bc100_k12", memory_format="nhwc", **SMALL)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_dense_prediction_outputs_come_back_in_the_callers_layout(layout):
    small = dict(layers=[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], k=4, first=8, size=32)
    net = netdsl.build_model("fcdensenet56", **small).eval()
    with torch.no_grad():
        y = net(_x(2).contiguous(memory_format=layout))
    assert y.shape[-2:] == (32, 32) and y.is_contiguous(memory_format=layout)
    ref = netdsl.build_model("fcdensenet56", memory_format="preserve", **small).eval()
    with torch.no_grad():
        torch.testing.assert_close(y, ref(_x(2)), rtol=1e-5, atol=1e-5)


class _Casts(TorchDispatchMode):
    """Counts dtype conversions of activations (4-D tensors of the batch's size)."""

    def __init__(self, batch):
        super().__init__()
        self.batch, self.casts = batch, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        a = args[0] if args else None
        if func is torch.ops.aten._to_copy.default and a.dim() == 4 and a.shape[0] == self.batch != 0:
            self.casts += [(a.dtype, out.dtype, tuple(a.shape))] if out.dtype != a.dtype else []
        return out


def test_under_autocast_activations_are_cast_once_at_the_stem():
    """bf16 autocast: the buffers are bf16 and every reader gets them in bf16 -- no round trip to
    fp32 per head (eval) or per feature's statistics (training): the one cast is the input's."""
    net = netdsl.build_model("densenet_bc100_k12", depth=22, k=4)
    x = _x(7)
    for training in (False, True):
        net.train(training)
        with _Casts(7) as mode, torch.autocast("cpu", dtype=torch.bfloat16), torch.set_grad_enabled(training):
            out = net(x)
            if training:
                out.float().sum().backward()
        assert mode.casts == [(torch.float32, torch.bfloat16, (7, 3, 32, 32))], (training, mode.casts)


def _train_step(model, x, dtype):
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = model(x.to(torch.float64) if dtype == torch.float64 else x)
    (out.double() * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum().backward()
    grads = [p.grad.double() for p in model.parameters()]
    stats = [b.double() for n, b in model.named_buffers() if "running" in n]
    return grads, stats


def _error(got, want):
    return max(((g - w).norm() / w.norm().clamp_min(1e-12)).item() for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize(
    "compiled, depth",
    # compiling costs seconds per traced unit: compiled, the check runs in the slow suite
    [(False, 22), pytest.param(True, 10, marks=pytest.mark.slow), pytest.param(True, 22, marks=pytest.mark.slow)],
    ids=["eager", "compiled", "compiled-depth22"],
)
def test_bf16_training_is_as_close_to_float64_as_the_hand_written_models(compiled, depth):
    """Gradients and running statistics of one bf16-autocast step against the float64 step: the
    planned module's errors within those of the hand-written DenseNet (torch.cat per layer) under
    the same autocast, eager and compiled (aot_eager)."""
    net = netdsl.build_model("densenet_bc100_k12", depth=depth, k=4)
    ref = DenseNet([(depth - 4) // 6] * 3, 4, 10, imagenet=False)
    load_from(ref, net)
    exact = copy.deepcopy(net).double()
    x = _x(8)
    want_g, want_s = _train_step(exact, x, torch.float64)
    torch._dynamo.reset()
    run = torch.compile(net, fullgraph=True, backend="aot_eager") if compiled else net
    got_g, got_s = _train_step(run, x, torch.bfloat16)
    ref_g, ref_s = _train_step(ref, x, torch.bfloat16)
    assert all(p.grad.dtype == torch.float32 for p in net.parameters())
    assert _error(got_g, want_g) <= 1.25 * _error(ref_g, want_g), (_error(got_g, want_g), _error(ref_g, want_g))
    assert _error(got_s, want_s) <= 1.25 * _error(ref_s, want_s) + 1e-6, (_error(got_s, want_s), _error(ref_s, want_s))
