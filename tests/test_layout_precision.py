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
    net = netdsl.build_model("densenet_bc100_k12", depth=22, k=4, precision="autocast")  # bf16 on any CPU
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
    """The relative error of all the tensors together, as one vector. Per tensor, a parameter with a
    tiny gradient decides the maximum: on a CPU without bf16 kernels (AVX2) torch's emulated bf16
    convolutions put such errors at 30-170% for both models alike, and their ratio swings from 0.96
    to 1.73 with the seed, while this one stays at 0.99-1.14 (docs/performance.md)."""
    g, w = (torch.cat([t.flatten() for t in ts]) for ts in (got, want))
    return ((g - w).norm() / w.norm().clamp_min(1e-12)).item()


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
    net = netdsl.build_model("densenet_bc100_k12", depth=depth, k=4, precision="autocast")  # bf16 on any CPU
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


# -- precision: the compiler's choice under the caller's autocast -----------------------------------


class _ConvDtypes(TorchDispatchMode):
    """The dtypes the convolutions run in, forward and backward."""

    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default):
            self.dtypes.add(args[0].dtype)
        return func(*args, **(kwargs or {}))


def _device_is_fast(monkeypatch, net, fast: bool):
    """The generated file's answer to "has this device fast convolutions in the autocast dtype?"."""
    answer = torch.compiler.assume_constant_result(lambda device, dtype: fast)
    monkeypatch.setitem(type(net).forward.__globals__, "_fast_16bit", answer)


def _autocast_step(net, x, training):
    net.train(training)
    with _ConvDtypes() as convs, torch.autocast("cpu", dtype=torch.bfloat16), torch.set_grad_enabled(training):
        out = net(x)
        if training:
            out.float().sum().backward()
    return out, convs.dtypes


@pytest.mark.parametrize("fast", [False, True], ids=["slow-device", "fast-device"])
def test_under_autocast_the_module_runs_what_its_device_is_fast_in(monkeypatch, fast):
    """Where the device has no fast convolution in autocast's dtype (this project's AVX2 CPU: torch's
    reference bf16 kernel, 6-8x float32) the module runs float32 and hands back autocast's dtype;
    where it has one (AMX, tensor cores) it follows autocast. The printed forward says so."""
    net = netdsl.build_model("densenet_bc100_k12", **SMALL)
    _device_is_fast(monkeypatch, net, fast)
    for training in (False, True):
        out, dtypes = _autocast_step(net, _x(), training)
        assert out.dtype == torch.bfloat16 and dtypes == {torch.bfloat16 if fast else torch.float32}, training
    with _ConvDtypes() as convs:  # no autocast: float32, whatever the device
        assert net(_x()).dtype == torch.float32 and convs.dtypes == {torch.float32}
    source = netdsl.torch_source("densenet_bc100_k12", **SMALL)
    assert "if dtype := _slow_autocast(x):  # precision: the compiler's choice" in source


def test_pinned_autocast_follows_the_callers_autocast_on_any_device(monkeypatch):
    net = netdsl.build_model("densenet_bc100_k12", precision="autocast", **SMALL)
    assert "_fast_16bit" not in type(net).forward.__globals__
    for training in (False, True):
        assert _autocast_step(net, _x(), training)[1] == {torch.bfloat16}
    assert "_slow_autocast" not in netdsl.torch_source("densenet_bc100_k12", precision="autocast", **SMALL)
    with pytest.raises(netdsl.errors.NetdslError, match="precision='fp8' is not one of auto, autocast"):
        netdsl.build_model("densenet_bc100_k12", precision="fp8", **SMALL)


def test_float32_under_slow_autocast_is_the_float32_step_exactly(monkeypatch):
    """Run in float32, the module's outputs, gradients and running statistics are bit for bit
    those of its float32 step whose outputs are then cast to bf16: nothing else changes."""
    net = netdsl.build_model("densenet_bc100_k12", depth=22, k=4)
    plain = copy.deepcopy(net)
    _device_is_fast(monkeypatch, net, False)
    x, weights = _x(5), torch.linspace(-1, 1, 50).view(5, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net.train()(x)
    want = plain.train()(x).to(torch.bfloat16)
    assert torch.equal(out, want)
    (out.float() * weights).sum().backward()
    (want.float() * weights).sum().backward()
    for (name, got), wanted in zip(net.named_parameters(), plain.parameters(), strict=True):
        assert got.grad.dtype == torch.float32 and torch.equal(got.grad, wanted.grad), name
    for (name, got), wanted in zip(net.named_buffers(), plain.buffers(), strict=True):
        assert torch.equal(got, wanted), name


TWO_OUTPUTS = """
network two(k=4) {
    input(3, 16, 16)
    a: conv(k, 3); bn; relu
    b: block(2, dense) { bn; relu; conv(4, 3) }
    gap
    c: linear(5)
    output(c, a)
}
"""


def test_several_outputs_come_back_in_autocasts_dtype(monkeypatch, write_spec):
    net = netdsl.build_model(write_spec(TWO_OUTPUTS)).eval()
    _device_is_fast(monkeypatch, net, False)
    with torch.no_grad():
        want = net(_x(2, 16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = net(_x(2, 16))
    assert isinstance(got, tuple) and [g.dtype for g in got] == [torch.bfloat16] * 2
    assert all(torch.equal(g, w.to(torch.bfloat16)) for g, w in zip(got, want, strict=True))
    assert got[1].is_contiguous()  # an output with two spatial dims: the caller's layout, NCHW


def test_compiled_the_choice_is_a_constant(monkeypatch):
    """Under torch.compile the device's answer is a constant: one graph, its convolutions float32."""
    net = netdsl.build_model("densenet_bc100_k12", **SMALL).eval()
    _device_is_fast(monkeypatch, net, False)
    graphs = []

    def backend(gm, example_inputs):  # the dtypes of the traced graph's convolutions
        convs = [n for n in gm.graph.nodes if n.target in (torch.conv2d, torch.nn.functional.conv2d)]
        graphs.append({n.meta["example_value"].dtype for n in convs})
        return gm.forward

    torch._dynamo.reset()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = torch.compile(net, fullgraph=True, backend=backend)(_x())
    assert graphs == [{torch.float32}] and out.dtype == torch.bfloat16


def test_which_devices_are_fast_in_16_bits(monkeypatch):
    from netdsl.backends.torch.runtime import _fast_16bit

    mkldnn = torch.ops.mkldnn
    assert _fast_16bit("cpu", torch.bfloat16) == mkldnn._is_mkldnn_bf16_supported()  # else the reference kernel
    assert _fast_16bit("cpu", torch.float16) == mkldnn._is_mkldnn_fp16_supported()
    for capability, fp16, bf16 in (((7, 5), True, False), ((8, 0), True, True), ((6, 1), False, False)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, c=capability: c)
        assert (_fast_16bit("cuda", torch.float16), _fast_16bit("cuda", torch.bfloat16)) == (fp16, bf16)
    assert _fast_16bit("mps", torch.float16)  # another device: its autocast is its own choice
