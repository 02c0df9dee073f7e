"""Every bundled spec: compiles, passes the IR lint, runs forward and backward, and its emitted
standalone source (imported with only torch) gives the in-process module's output."""

import importlib.util
import inspect
import subprocess
import sys

import pytest
import torch

import netdsl
from netdsl.ir import lint

from helpers import fast_overrides, output_shapes, outputs, set_args, spec_params


@pytest.mark.parametrize("spec", spec_params())
def test_spec_lint_forward_backward(spec):
    over = fast_overrides(spec)
    g = netdsl.compile_spec(spec, check=True, **over)
    lint(g)
    model = netdsl.build_model(spec, seed=0, **over)
    c, h, w = g.nodes[g.graph["input"]]["shape"]
    x = torch.randn(2, c, h, w)
    ys = outputs(model(x))
    assert tuple(tuple(y.shape) for y in ys) == tuple((2, *s) for s in output_shapes(g))
    sum(y.sum() for y in ys).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None for gr in grads)
    assert sum(p.numel() for p in model.parameters()) == g.graph["total_params"]


def _calibrated(model, c, h, w):
    """BatchNorm running statistics as training would leave them: with the initial (0, 1)
    statistics a deep random network's eval output reaches ~1e6 and float32 rounding alone
    exceeds any absolute tolerance."""
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: exact statistics of the calibration batches
    with torch.no_grad():
        model.train()
        for _ in range(2):
            model(torch.randn(8, c, h, w))
    return model.eval()


def _emit(spec, tmp_path, over, opt=1):
    out = tmp_path / "m.py"
    from netdsl.cli import main

    assert main(["compile", str(spec), "--target", "torch", "--opt", str(opt), "-o", str(out), *set_args(over)]) == 0
    return out


def _import(path):
    modspec = importlib.util.spec_from_file_location("emitted", path)
    mod = importlib.util.module_from_spec(modspec)
    modspec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("spec", spec_params())
def test_emitted_source_is_the_running_module(spec, tmp_path):
    """The file ``compile --target torch`` writes holds the in-process class's source verbatim,
    loads the in-process state_dict strictly and gives its outputs."""
    over = fast_overrides(spec)
    out = _emit(spec, tmp_path, over)
    ref = netdsl.build_model(spec, seed=1, **over)
    assert inspect.getsource(type(ref)) in out.read_text()
    mod = _import(out)
    c, h, w = mod.Net.input_shape
    _calibrated(ref, c, h, w)
    emitted = mod.build().eval()
    emitted.load_state_dict(ref.state_dict())  # strict: the same parameter names
    x = torch.randn(3, c, h, w)
    with torch.no_grad():
        for got, want in zip(outputs(emitted(x)), outputs(ref(x)), strict=True):
            assert (got - want).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_emitted_file_needs_only_torch(tmp_path):
    """The emitted file imports in an isolated interpreter (no netdsl on the path)."""
    out = _emit("specs/dense2net.net", tmp_path, {"blocks": "[2,2,2]"})
    check = subprocess.run(
        [sys.executable, "-I", "-c", f"import runpy; runpy.run_path({str(out)!r})['build']()"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr


def test_build_model_overrides_and_channels_last():
    m = netdsl.build_model("densenet_bc100_k12", depth=40, k=4, classes=7)
    assert m.head1.fc.out_features == 7
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    with torch.no_grad():
        ref = m(x)
        m2 = m.to(memory_format=torch.channels_last)
        out = m2(x.to(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-5)


def test_float64_follows_module():
    m = netdsl.build_model("specs/sparsenet.net", blocks=[2, 2], k=4).double()
    y = m(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    assert y.dtype == torch.float64


# slow: the fast suite compares compiled eval with eager (fullgraph, aot_eager: dynamo's graph and
# AOT autograd's) in test_codegen's test_compiled_eval_reads_the_same_views
@pytest.mark.slow
def test_torch_compile_matches_eager():
    m = netdsl.build_model("specs/densenet_bc.net", depth=10, k=4).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(m, backend="eager")  # dynamo tracing; no C++ toolchain needed
    with torch.no_grad():
        assert torch.allclose(compiled(x), m(x), atol=1e-6)


def test_densenet_bc_published_count():
    g = netdsl.compile_spec("specs/densenet_bc.net")
    assert g.graph["total_params"] == 769_162


def test_submodule_names_are_readable():
    m = netdsl.build_model("specs/densenet_bc.net", depth=10, k=4)
    names = dict(m.named_modules())
    assert "block1.unit1.conv1" in names and "transition1.conv1" in names and "head1.fc" in names


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = netdsl.build_model("specs/densenet_bc.net", depth=16, k=4, seed=5)
    after = torch.rand(1)
    b = netdsl.build_model("specs/densenet_bc.net", depth=16, k=4, seed=5)
    c = netdsl.build_model("specs/densenet_bc.net", depth=16, k=4, seed=6)
    assert torch.equal(before, after)  # building did not consume the caller's random stream
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.head1.fc.weight, c.head1.fc.weight)
