"""DSOD300, the whole detector (specs/dsod300.net), against its reference code, szq0214/DSOD:
DSOD300_pascal.py (the configuration) and model_libs.py (DSOD300_V3_Body, CreateMultiBoxHead).

The reference's layers are listed here by hand, line by line of those two functions, and counted
without netdsl; the preset's parameter count, its six scales and its two outputs must equal them."""

import math
import sys

import numpy as np
import onnx
import pytest
import torch

import netdsl
from netdsl.ir.graph import blocks, graph_outputs

from helpers import outputs

# DSOD300_pascal.py
NUM_CLASSES = 21
MIN_DIM = 300
ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]  # per source: First .. Sixth
FLIP = True  # and max_sizes given for every source
GROWTH, FIRST_OUTPUT, BLOCKS = 48, 128, (6, 8, 8, 8)  # DSOD300_V3_Body


def priors_per_location(aspect_ratio: list) -> int:
    """CreateMultiBoxHead: one min size, a max size, the aspect ratios and (flip) their inverses."""
    n = 2 + len(aspect_ratio)  # min size, sqrt(min * max), each ratio
    return n + len(aspect_ratio) if FLIP else n


def reference_layers():
    """Every layer with parameters, as ("conv", cin, cout, kernel), ("bn", c) (Caffe's BatchNorm
    plus Scale: a trainable scale and shift; BatchNorm's own blobs are statistics with lr_mult 0)
    or ("normalize", c) (a per-channel scale), in the reference's order; and the channels of the
    six prediction sources."""
    layers: list[tuple] = []

    def bn_relu_conv(cin, cout, kernel):
        layers.extend([("bn", cin), ("conv", cin, cout, kernel)])

    def add_bl_layer(cin):  # width 4: 1x1 to 4k, 3x3 to k
        bn_relu_conv(cin, 4 * GROWTH, 1)
        bn_relu_conv(4 * GROWTH, GROWTH, 3)

    for cin, cout in ((3, 64), (64, 64), (64, FIRST_OUTPUT)):  # the stem: Conv-BN-Scale-ReLU
        layers.extend([("conv", cin, cout, 3), ("bn", cout)])
    n = FIRST_OUTPUT
    for b, units in enumerate(BLOCKS):
        for _ in range(units):
            add_bl_layer(n)
            n += GROWTH
        if b < 3:  # transition (b = 0, with pooling) and transition_w_o_pooling: width kept
            bn_relu_conv(n, n, 1)
        if b == 1:
            first = n  # net.First
    bn_relu_conv(n, 256, 1)  # transition_w_o_pooling(model1, 256)
    bn_relu_conv(first, 256, 1)  # f_first: max pool of First, then bn_relu_conv to 256
    sources = [first, 256 + 256]  # Second = concat(model1, f_first)
    c = sources[-1]
    for out in (256, 128, 128, 128):  # add_bl_layer2(bottom, out, dropout, 1): Third .. Sixth
        bn_relu_conv(c, out, 1)  # learned half: 1x1 ...
        bn_relu_conv(out, out, 3)  # ... then 3x3 stride 2
        bn_relu_conv(c, out, 1)  # pooled half: max pool, then 1x1
        c = 2 * out
        sources.append(c)
    for c, ar in zip(sources, ASPECT_RATIOS, strict=True):  # CreateMultiBoxHead, use_batchnorm
        p = priors_per_location(ar)
        layers.append(("normalize", c))
        layers.extend([("conv", c, 4 * p, 3), ("bn", 4 * p)])  # mbox_loc
        layers.extend([("conv", c, NUM_CLASSES * p, 3), ("bn", NUM_CLASSES * p)])  # mbox_conf
    return layers, sources


def reference_params(layers) -> int:
    total = 0
    for layer in layers:
        if layer[0] == "conv":  # bias_term=False everywhere (BN follows or precedes every conv)
            _, cin, cout, k = layer
            total += cin * cout * k * k
        elif layer[0] == "bn":
            total += 2 * layer[1]
        else:
            total += layer[1]
    return total


def reference_sizes() -> list[int]:
    """The six sources' spatial sizes by Caffe's rules (convolution floors, pooling ceils)."""

    def conv(s, k, stride, pad):
        return (s + 2 * pad - k) // stride + 1

    def pool(s):
        return math.ceil((s - 2) / 2) + 1

    s = pool(conv(conv(conv(MIN_DIM, 3, 2, 1), 3, 1, 1), 3, 1, 1))  # stem: 75
    first = pool(s)  # the first transition's pool: 38
    sizes = [first, pool(first)]  # Second: 19
    for _ in range(4):
        learned, pooled = conv(sizes[-1], 3, 2, 1), pool(sizes[-1])
        assert learned == pooled
        sizes.append(learned)
    return sizes


def test_parameters_equal_the_reference_counted_by_hand():
    layers, _ = reference_layers()
    want = reference_params(layers)
    assert want == 14_715_804  # the paper's Table 4 prints 14.8M (docs/zoo.md says why)
    assert netdsl.compile_spec("dsod300").graph["total_params"] == want


def test_scales_and_outputs_are_the_references():
    g = netdsl.compile_spec("dsod300")
    _, channels = reference_layers()
    sizes = reference_sizes()
    assert sizes == [38, 19, 10, 5, 3, 2]
    # each head's L2 normalization reads one source
    sources = [g.nodes[f"norm{i}"]["inputs"][0] for i in range(1, 7)]
    assert [g.nodes[s]["shape"] for s in sources] == [(c, s, s) for c, s in zip(channels, sizes, strict=True)]
    priors = sum(s * s * priors_per_location(ar) for s, ar in zip(sizes, ASPECT_RATIOS, strict=True))
    assert priors == 8744
    assert [(name, g.nodes[node]["shape"]) for name, node in graph_outputs(g)] == [
        ("cls", (NUM_CLASSES * priors,)),
        ("box", (4 * priors,)),
    ]
    # the dense blocks keep DSOD's widths; the four of them are planned (views, no copies)
    assert [g.nodes[b.output]["shape"][0] for b in blocks(g)] == [416, 800, 1184, 1568]
    for b in blocks(g):
        assert all(g.nodes[u.aggregate]["read"]["strategy"] == "view" for u in b.units[1:]), b.name


def test_l2norm_and_flatten_hwc_compute_ssds_layers(write_spec):
    """The head's Normalize (per location, over channels, times a per-channel scale) and permute +
    flatten, written out in torch, against the generated module."""
    model = netdsl.build_model(write_spec(HEAD_OPS)).eval()
    assert torch.equal(model.n.weight.detach(), torch.full((3,), 20.0))
    x = torch.arange(2 * 3 * 2 * 2.0).view(2, 3, 2, 2) - 5
    with torch.no_grad():
        normed, flat = model(x)
    assert torch.allclose(normed, x / torch.sqrt((x * x).sum(1, keepdim=True) + 1e-10) * 20.0, atol=1e-5)
    assert flat[0].tolist() == [v - 5 for v in (0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11)]  # (h, w, c) order


HEAD_OPS = """
network heads() {
    input(3, 2, 2)
    n: l2norm(20.0)
    use(input)
    f: flatten_hwc
    output(n, f)
}
"""


def test_forward_returns_cls_and_box_named_in_order():
    model = netdsl.build_model("dsod300", blocks=[1, 1, 1, 1], k=4, widths=[8, 8, 4, 4, 4], size=64).eval()
    assert model.output_names == ("cls", "box")
    with torch.no_grad():
        cls, box = model(torch.randn(2, 3, 64, 64))
    sizes = [8, 4, 2, 1, 1, 1]  # 64: stride 8 at First, then halving (ceil) to 1
    priors = sum(s * s * priors_per_location(ar) for s, ar in zip(sizes, ASPECT_RATIOS, strict=True))
    assert cls.shape == (2, NUM_CLASSES * priors) and box.shape == (2, 4 * priors)


@pytest.mark.slow
def test_compile_onnx_cli_gives_cls_and_box_that_onnxruntime_and_torch_agree_on(tmp_path):
    """The issue's done-when: ``netdsl compile dsod300 --target onnx -o d.onnx``, full size."""
    from netdsl.cli import main
    from netdsl.onnx_runtime import session

    out = tmp_path / "d.onnx"
    assert main(["compile", "dsod300", "--target", "onnx", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert [o.name for o in model.graph.output] == ["cls", "box"]
    sess = session(str(out), device="cpu")
    torch_model = netdsl.build_model("dsod300", seed=0).eval()  # compile's untrained initialization
    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        refs = outputs(torch_model(x))
    gots = sess.run(None, {"input": x.numpy()})
    for got, ref in zip(gots, refs, strict=True):
        ref = ref.numpy()
        assert got.shape == ref.shape == (1, ref.shape[1])
        scale = float(np.abs(ref).max())
        assert float(np.abs(got - ref).max()) <= 1e-4 * max(scale, 1.0), scale


if __name__ == "__main__":  # print the reference's count
    layers, sources = reference_layers()
    print(reference_params(layers), sources, reference_sizes(), file=sys.stdout)
