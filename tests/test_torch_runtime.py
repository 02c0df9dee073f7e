"""The runtime helpers the generated torch file embeds (netdsl/backends/torch/runtime.py) and the
file's namespace and embedding (file.py), tested as the real code they are."""

import pytest
import torch
from torch import nn

from netdsl.backends.torch import runtime
from netdsl.backends.torch.file import Namespace, Uses, embedded
from netdsl.errors import IRError


def test_buffer_keeps_the_layout_and_channels_are_views():
    x = torch.randn(2, 3, 4, 4).to(memory_format=torch.channels_last)
    buf = runtime._buffer(x, 8)
    assert buf.shape == (2, 8, 4, 4) and buf.is_contiguous(memory_format=torch.channels_last)
    view = runtime._read(buf, ((2, 5),))
    assert view.data_ptr() == buf[:, 2:5].data_ptr() and view.stride() == buf.stride()
    buf.copy_(torch.randn_like(buf))
    assert torch.equal(runtime._read(buf, ((0, 2), (5, 8))), torch.cat([buf[:, 0:2], buf[:, 5:8]], 1))


def test_statistics_update_running_ones_as_batchnorm_does():
    xs = [torch.randn(4, 3, 5, 5), torch.randn(4, 2, 5, 5)]
    ours, theirs = nn.BatchNorm2d(5), nn.BatchNorm2d(5)
    buf, feats = torch.empty(4, 5, 5, 5), []
    with torch.enable_grad():
        runtime._store(buf, 0, 3, xs[0], feats)
        runtime._store(buf, 3, 5, xs[1], feats)
        mean, var = runtime._statistics(ours, feats)
    assert torch.equal(buf, torch.cat(xs, 1)) and [f[4] for f in feats] == [0, 3]
    theirs(torch.cat(xs, 1))
    cat = torch.cat(xs, 1)
    assert torch.allclose(mean, cat.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(var, cat.var((0, 2, 3), unbiased=False), atol=1e-5)
    assert torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-6)
    assert torch.allclose(ours.running_var, theirs.running_var, atol=1e-5)
    assert ours.num_batches_tracked == theirs.num_batches_tracked == 1


def test_batch_norm_eval_and_folded_conv_equal_the_modules():
    bn, conv, bn2 = nn.BatchNorm2d(3).eval(), nn.Conv2d(3, 4, 1).eval(), nn.BatchNorm2d(4).eval()
    for m in (bn, bn2):
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(runtime._batch_norm_eval(x, bn), bn(x), atol=1e-5)
        assert torch.allclose(runtime._conv_bn_eval(x, conv, bn2), bn2(conv(x)), atol=1e-5)


def test_clamp_conv_bn_eval_equals_the_modules_for_any_sign_of_scale():
    """bn2(conv(relu(bn(x)))) as one clamp folded into an unpadded conv: BN weights positive,
    negative and zero (a constant channel), a biased strided conv, a strided view as input."""
    gen = torch.Generator().manual_seed(0)
    bn, conv, bn2 = nn.BatchNorm2d(6), nn.Conv2d(6, 4, 3, stride=2, bias=True), nn.BatchNorm2d(4)
    for m in (bn, conv, bn2):
        m.double().eval()
        for p in (*m.parameters(), *m.buffers()):
            if p.is_floating_point():
                p.data.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.abs_().add_(0.1)
    bn.weight.data[:3] = torch.tensor([2.0, -1.5, 0.0], dtype=torch.float64)
    buf = torch.randn(3, 9, 11, 11, generator=gen, dtype=torch.float64).to(memory_format=torch.channels_last)
    x = buf[:, 2:8]
    with torch.no_grad():
        want = bn2(conv(torch.relu(bn(x))))
        got = runtime._clamp_conv_bn_eval(x, bn, conv, bn2)
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_namespace_cleans_and_deduplicates():
    ns = Namespace({"x", "torch"})
    assert ns.create_name("x") == "x_2"
    assert ns.create_name("x") == "x_3"
    assert ns.create_name("not a name") == "v"
    assert ns.create_name("class") == "v_2"  # a keyword is no identifier
    child = Namespace(parent=ns)
    assert child.create_name("torch") == "torch_2"
    assert Namespace().create_name("Bottleneck", sep="") == "Bottleneck"


def test_embedded_brings_what_a_helper_reads():
    imports, sources = embedded(["_recompute"])
    names = [s.split("(")[0].split(":")[0].split()[-1] for s in sources]
    assert names == ["_KeepBatchNormStats", "_recompute", "_keep_convolutions"]
    assert "import contextlib" in imports
    assert "from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts" in imports
    imports, sources = embedded(["_conv_bn_eval"])
    assert imports == ["import torch", "import torch.nn.functional as F", "from torch import nn"]
    assert not any(">>>" in s for s in sources)  # netdsl's doctests stay out, a one-line summary one line
    assert [s.splitlines()[1].strip()[-3:] for s in sources[1:]] == ['"""', '"""']
    assert not any(line.lstrip().startswith("#") for s in sources[1:] for line in s.splitlines())


def test_only_helpers_are_registered():
    uses = Uses()
    assert uses.add_global(runtime._buffer) == "_buffer"
    with pytest.raises(IRError):
        uses.add_global(torch.cat)
