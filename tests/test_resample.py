"""Resampling (issue 17, item 3): the ops upconv, upsample and crop -- shapes and counts by hand,
torch against hand-written modules, ONNX against onnxruntime, misuse refused at the statement --
and FC-DenseNet (Jegou et al. 2017) against the authors' Lasagne code (SimJeg/FC-DenseNet), whose
layer list is rewritten here by hand: parameters, FLOPs, shapes and the function itself."""

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import netdsl
from netdsl.backends.onnx.export import export
from netdsl.backends.torch.codegen import build
from netdsl.cli import main
from netdsl.errors import NetdslError, ShapeError, SpecTypeError, SpecValueError
from netdsl.ir.graph import blocks
from netdsl.onnx_runtime import run, session
from netdsl.pipeline import compile_target
from netdsl.presets import get
from netdsl.train.model import check_classifier

ROOT = Path(__file__).resolve().parents[1]


def _net(write_spec, body: str, inp=(6, 7, 8)):
    lines = "".join(f"    {line}\n" for line in body.splitlines())
    text = f"network t() {{\n    input({inp[0]}, {inp[1]}, {inp[2]})\n{lines}}}\n"
    return netdsl.compile_spec(str(write_spec(text)), opt=0)


def _last(g):
    d = g.nodes[g.graph["output"]]
    return d["shape"], d.get("params", 0), d.get("flops", 0)


# ---- shapes and counts by hand


# (kernel, stride, pad, output_pad, bias, output H x W for a 7x8 input)
UPCONVS = [
    (3, 2, 0, 0, True, (15, 17)),  # FC-DenseNet's transition up: 2h + 1
    (3, 2, 1, 1, False, (14, 16)),  # exactly 2h
    (2, 2, 0, 0, False, (14, 16)),
    (4, 2, 1, 0, True, (14, 16)),
    (3, 1, 1, 0, False, (7, 8)),
    (3, 3, 2, 2, True, (19, 22)),
]


@pytest.mark.parametrize(("k", "s", "pad", "opad", "bias", "hw"), UPCONVS)
def test_upconv_shape_params_and_flops_by_hand(write_spec, k, s, pad, opad, bias, hw):
    g = _net(write_spec, f"upconv(5, {k}, stride={s}, pad={pad}, output_pad={opad}, bias={str(bias).lower()})")
    shape, params, flops = _last(g)
    assert shape == (5, *hw)
    assert params == 6 * 5 * k * k + (5 if bias else 0)
    # one multiply-accumulate per (input value, weight): 6 input channels over 7x8 positions
    assert flops == 7 * 8 * 6 * 5 * k * k
    ref = nn.ConvTranspose2d(6, 5, k, stride=s, padding=pad, output_padding=opad, bias=bias)
    with FlopCounterMode(display=False) as counter:  # torch's counter: 2 FLOPs per multiply-accumulate
        assert tuple(ref(torch.zeros(1, 6, 7, 8)).shape[1:]) == shape
    assert counter.get_total_flops() == 2 * flops
    assert sum(p.numel() for p in ref.parameters()) == params


@pytest.mark.parametrize(("scale", "mode"), [(2, "nearest"), (3, "nearest"), (2, "bilinear"), (3, "bilinear")])
def test_upsample_scales_height_and_width_without_parameters(write_spec, scale, mode):
    shape, params, flops = _last(_net(write_spec, f"upsample({scale}, mode={mode})"))
    assert shape == (6, 7 * scale, 8 * scale) and params == flops == 0


def test_crop_takes_the_labelled_tensors_size_and_reads_it(write_spec):
    g = _net(write_spec, "x: conv(6, 3)\nsmall: maxpool(3, stride=2)\nuse(x)\ncrop(small)")
    out = g.graph["output"]
    assert g.nodes[out]["kind"] == "crop" and g.nodes[out]["shape"] == (6, 3, 3)
    assert g.nodes[out]["inputs"] == ("x", "small")  # the window follows small's shape


# ---- torch against hand-written modules, ONNX against onnxruntime

OPS = """
skip: conv(6, 3, bias=true)
maxpool(3, stride=1)
upconv(5, 3, stride=1, pad=2, bias=true)
big: upconv(5, 4, stride=2, pad=1)
use(skip)
avgpool(2)
small: conv(3, 1)
use(big)
crop(small)
concat(small)
upsample(3, mode=bilinear)
upsample(2, mode=bilinear, align_corners=true)
upsample(2)
"""


class OpsReference(nn.Module):
    """OPS by hand: 9x8 -> skip 9x8 -> pool 7x6 -> upconv 5x4 -> big 10x8; small 4x4; big's centred
    4x4 window starts at row (10 - 4) // 2 = 3 and column (8 - 4) // 2 = 2."""

    def __init__(self):
        super().__init__()
        self.skip = nn.Conv2d(4, 6, 3, padding=1)
        self.upconv1 = nn.ConvTranspose2d(6, 5, 3, padding=2)
        self.big = nn.ConvTranspose2d(5, 5, 4, stride=2, padding=1, bias=False)
        self.small = nn.Conv2d(6, 3, 1, bias=False)

    def forward(self, x):
        skip = self.skip(x)
        big = self.big(self.upconv1(F.max_pool2d(skip, 3, 1)))
        small = self.small(F.avg_pool2d(skip, 2))
        y = torch.cat([big[:, :, 3:7, 2:6], small], 1)
        y = F.interpolate(y, scale_factor=3, mode="bilinear", align_corners=False)
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
        return F.interpolate(y, scale_factor=2, mode="nearest")


def test_resampling_ops_in_torch_equal_a_hand_written_module(write_spec):
    g = _net(write_spec, OPS, (4, 9, 8))
    g.graph["memory_format"] = "contiguous"  # bit for bit against an NCHW module: the same kernels
    model = build(g, 0).eval()
    ref = OpsReference().eval()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, 9, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    assert g.graph["total_params"] == sum(p.numel() for p in ref.parameters())


def test_resampling_ops_in_onnxruntime_equal_torch(write_spec):
    g = _net(write_spec, OPS, (4, 9, 8))
    module = build(g, 0).eval()
    model, _ = export(g, module)
    onnx.checker.check_model(model, full_check=True)
    nodes = {n.name: n for n in model.graph.node}
    assert nodes["crop1"].op_type == "CenterCropPad" and nodes["big"].op_type == "ConvTranspose"
    modes = [
        {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        for n in model.graph.node
        if n.op_type == "Resize"
    ]
    assert [(m["mode"], m["coordinate_transformation_mode"]) for m in modes] == [
        (b"linear", b"pytorch_half_pixel"),
        (b"linear", b"align_corners"),
        (b"nearest", b"asymmetric"),
    ]
    sess = session(model.SerializeToString(), device="cpu", threads=1)
    for batch in (1, 3):
        x = torch.randn(batch, 4, 9, 8, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = module(x).numpy()
        got = run(sess, x.numpy())
        assert got.shape == want.shape == (batch, 8, 48, 48)
        assert np.abs(got - want).max() <= 1e-5


# ---- misuse: one located message each


def _error(write_spec, body, inp=(6, 7, 8)):
    with pytest.raises(NetdslError) as err:
        _net(write_spec, body, inp)
    return err.value


@pytest.mark.parametrize("up", ["upsample(2)", "upsample(2, mode=bilinear)", "upconv(4, 2, stride=2)"])
def test_an_upsampled_map_concatenates_with_its_skip_of_the_same_size(write_spec, up):
    g = _net(write_spec, f"skip: conv(6, 3)\nmaxpool(2)\nconv(4, 1)\n{up}\nconcat(skip)", (3, 8, 10))
    out = g.graph["output"]
    assert g.nodes[out]["kind"] == "concat" and g.nodes[out]["shape"] == (10, 8, 10)
    assert g.nodes[out]["inputs"][1] == "skip"


def test_concat_across_scales_is_refused_at_the_concat_with_a_hint(write_spec):
    e = _error(write_spec, "skip: conv(6, 3)\nmaxpool(2)\nupconv(4, 3, stride=2)\nconcat(skip)")
    assert isinstance(e, ShapeError)
    assert "concat needs equal spatial sizes, got 4x7x9 and 6x7x8" in e.message
    assert (e.span.line, e.span.column) == (6, 5) and "crop(x)" in e.hint


def test_misused_resampling_arguments_are_located(write_spec):
    e = _error(write_spec, "upsample(2, mode=nearest, align_corners=true)")
    assert isinstance(e, SpecValueError) and e.span.line == 3 and "needs mode=bilinear" in e.message
    e = _error(write_spec, 'upsample(mode="bicubic")')
    assert isinstance(e, SpecValueError) and "must be one of nearest, bilinear" in e.message
    assert e.span.column == 14  # at the argument
    e = _error(write_spec, "upsample(mode=bicubic)")
    assert "unknown name 'bicubic'" in e.message
    e = _error(write_spec, "crop(3)")
    assert isinstance(e, SpecTypeError) and "'to' must be a labelled tensor" in e.message
    e = _error(write_spec, "big: upconv(6, 3)\nuse(input)\nmaxpool(2)\ncrop(big)")
    assert isinstance(e, ShapeError) and "crop to 15x17 needs a map at least that large, got 3x4" in e.message
    e = _error(write_spec, "upconv(4, 3, stride=2, output_pad=2)")
    assert isinstance(e, ShapeError) and "must be smaller than the stride" in e.message


# ---- the language reference's example


def test_language_reference_example_compiles_and_crops_at_an_even_size(write_spec):
    doc = (ROOT / "docs" / "language.md").read_text()
    text = re.search(r"(network unet_step.*?\n})\n```", doc, re.S).group(1)
    g = netdsl.compile_spec(str(write_spec(text)))
    ((crop, cd),) = [(n, d) for n, d in g.nodes(data=True) if d["kind"] == "crop"]
    up = cd["inputs"][0]
    assert g.nodes[up]["shape"] == cd["shape"] == (24, 33, 33)
    assert g.nodes[g.graph["output"]]["shape"] == (5, 33, 33)
    even = netdsl.compile_spec(str(write_spec(text.replace("input(3, 33, 33)", "input(3, 32, 32)"))))
    assert even.nodes[up]["shape"] == (24, 33, 33) and even.nodes[crop]["shape"] == (24, 32, 32)
    assert even.nodes[even.graph["output"]]["shape"] == (5, 32, 32)


# ---- FC-DenseNet against the authors' Lasagne code


def lasagne_layers(layers, k, first=48, classes=11, n_pool=5):
    """FC-DenseNet.py's layer list, as (kind, in channels, out channels, kernel, scale), where scale
    is the layer's input size relative to the network's input (1, 1/2, ...): the first 3x3 conv;
    per down block BN + 3x3 conv per layer, then TransitionDown (BN + 1x1 conv keeping the width,
    a max pool); the bottleneck block; per up step TransitionUp (a 3x3/2 Deconv2DLayer of the last
    block's new features, n_filters_keep = k * its layers) and a block; the 1x1 classifier conv."""
    out = [("conv", 3, first, 3, 1)]
    c, skips, scale = first, [], 1
    for i in range(n_pool):
        for _ in range(layers[i]):
            out += [("bn", c, c, 0, scale), ("conv", c, k, 3, scale)]
            c += k
        skips.append(c)
        out += [("bn", c, c, 0, scale), ("conv", c, c, 1, scale)]
        scale /= 2
    new = 0
    for _ in range(layers[n_pool]):
        out += [("bn", c, c, 0, scale), ("conv", c, k, 3, scale)]
        c, new = c + k, new + k
    for i in range(n_pool):
        keep = k * layers[n_pool + i]
        out.append(("deconv", new, keep, 3, scale))
        scale *= 2
        c, new = keep + skips[-1 - i], 0
        for _ in range(layers[n_pool + i + 1]):
            out += [("bn", c, c, 0, scale), ("conv", c, k, 3, scale)]
            c, new = c + k, new + k
    return out + [("conv", c, classes, 1, 1)]


def lasagne_counts(layers, k, size=224, bn_per_channel=2):
    """Parameters (every conv and deconv has a bias, Lasagne's default; BN: beta and gamma, or 4
    with the running mean and inv_std that Lasagne's get_all_param_values also lists) and MACs."""
    params = flops = 0
    for kind, cin, cout, ks, scale in lasagne_layers(layers, k):
        if kind == "bn":
            params += bn_per_channel * cin
            continue
        params += cin * cout * ks * ks + cout
        hw = int(size * scale) ** 2  # a power-of-two fraction of 224: exact
        flops += hw * cin * cout * ks * ks  # conv: per output position; deconv: per input position
    return params, flops


FCDENSENETS = {"fcdensenet56": ([4] * 11, 12), "fcdensenet67": ([5] * 11, 16)}
FCDENSENETS["fcdensenet103"] = ([4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4], 16)


@pytest.mark.parametrize("name", sorted(FCDENSENETS))
def test_fcdensenet_counts_equal_the_lasagne_layer_list(name):
    layers, k = FCDENSENETS[name]
    g = netdsl.compile_spec(name)
    assert (g.graph["total_params"], g.graph["total_flops"]) == lasagne_counts(layers, k)
    assert g.nodes[g.graph["output"]]["shape"] == (11, 224, 224)
    # the paper's name counts the convs and transposed convs: 56, 67, 103
    assert sum(kind != "bn" for kind, *_ in lasagne_layers(layers, k)) == int(name[len("fcdensenet") :])


def test_table_2_counts_batchnorm_statistics_as_lasagne_lists_them():
    """Table 2 prints 1.5M, 3.5M, 9.4M. Lasagne's parameter list (what FC-DenseNet.py's summary
    sums) holds BN's running mean and inv_std beside beta and gamma; counted so, 67 and 103 round
    to the paper's figures, while the trainable count (ours, torchvision's convention) does not.
    FC-DenseNet56 gives 1.40M either way: the printed 1.5M is not what its configuration builds."""
    lasagne = {n: lasagne_counts(*FCDENSENETS[n], bn_per_channel=4)[0] for n in FCDENSENETS}
    for name in ("fcdensenet67", "fcdensenet103"):
        assert round(lasagne[name] / 1e5) / 10 == get(name).paper_params / 1e6
    assert round(netdsl.compile_spec("fcdensenet103").graph["total_params"] / 1e5) / 10 == 9.3
    assert round(lasagne["fcdensenet56"] / 1e4) / 100 == 1.40 != get("fcdensenet56").paper_params / 1e6


def test_fcdensenet_skips_widths_and_crops():
    """Skip widths from the layer list; at an odd size (45 -> 22 -> 11 -> 5 -> 2 -> 1) the
    transposed conv's 2h + 1 rows are cut to the skip's only where the pool rounded down."""
    g = netdsl.compile_spec("fcdensenet103", size=45)
    out = {b.name: g.nodes[b.output]["shape"] for b in g.graph["blocks"]}
    widths = [48 + 16 * sum([4, 5, 7, 10, 12][:i]) for i in range(1, 6)]
    assert [out[f"down{i}"] for i in range(1, 6)] == [
        (w, s, s) for w, s in zip(widths, [45, 22, 11, 5, 2], strict=True)
    ]
    ups = {i: (g.nodes[f"tu{i}.upconv1"]["shape"][1], g.nodes[f"tu{i}.crop1"]["shape"][1]) for i in range(1, 6)}
    assert ups == {1: (3, 2), 2: (5, 5), 3: (11, 11), 4: (23, 22), 5: (45, 45)}
    assert out["bottleneck"] == (15 * 16, 1, 1)  # only the new features go up
    assert g.nodes["classifier"]["shape"] == (11, 45, 45)
    # CamVid's 360x480 test images: 360 -> ... -> 22 -> 11 and 480 -> ... -> 30 -> 15; a class map of the image's size
    spec = ROOT / "specs" / "fcdensenet.net"
    text = spec.read_text().replace("input(3, size, size)", "input(3, 360, 480)")
    camvid = netdsl.compile_spec(spec, text=text, **get("fcdensenet103").values)
    assert camvid.nodes["tu1.upconv1"]["shape"][1:] == (23, 31) and camvid.nodes["tu1.crop1"]["shape"][1:] == (22, 30)
    assert camvid.nodes["classifier"]["shape"] == (11, 360, 480)


class Tiramisu(nn.Module):
    """FC-DenseNet from the Lasagne code's layer list, written out in torch: BN (epsilon 1e-4,
    Lasagne's default) - ReLU - conv with bias - dropout per layer, TransitionDown, the
    transposed conv over the new features cropped at offset (size - skip) // 2 and concatenated
    before the skip (ConcatLayer(cropping=[None, None, 'center', 'center']))."""

    def __init__(self, layers, k, first, classes, p):
        super().__init__()
        self.layers, self.p, self.mods = layers, p, nn.ModuleList()
        self.mods.append(nn.Conv2d(3, first, 3, padding=1))
        for kind, cin, cout, ks, _ in lasagne_layers(layers, k, first, classes)[1:]:
            if kind == "bn":
                self.mods.append(nn.BatchNorm2d(cin, eps=1e-4))
            elif kind == "conv":
                self.mods.append(nn.Conv2d(cin, cout, ks, padding=ks // 2))
            else:
                self.mods.append(nn.ConvTranspose2d(cin, cout, 3, stride=2))

    def forward(self, x):
        mods = iter(self.mods)

        def layer(x):
            bn, conv = next(mods), next(mods)
            return F.dropout(conv(F.relu(bn(x))), self.p, self.training)

        stack, skips = next(mods)(x), []
        for n in self.layers[:5]:
            for _ in range(n):
                stack = torch.cat([stack, layer(stack)], 1)
            skips.append(stack)
            stack = F.max_pool2d(layer(stack), 2)
        new = []
        for n, skip in zip(self.layers[5:], [None, *reversed(skips)], strict=True):
            if skip is not None:
                up = next(mods)(torch.cat(new, 1))
                dh, dw = (up.shape[2] - skip.shape[2]) // 2, (up.shape[3] - skip.shape[3]) // 2
                stack = torch.cat([up[:, :, dh : dh + skip.shape[2], dw : dw + skip.shape[3]], skip], 1)
            new = []
            for _ in range(n):
                new.append(layer(stack))
                stack = torch.cat([stack, new[-1]], 1)
        return next(mods)(stack)


@pytest.mark.parametrize("size", [32, 35])
def test_fcdensenet_computes_what_the_lasagne_layer_list_computes(size):
    over = {"layers": [1, 2, 1, 2, 1, 3, 1, 2, 1, 2, 1], "k": 4, "first": 8, "classes": 5, "size": size}
    ours = netdsl.build_model("fcdensenet103", seed=0, **over).double().eval()
    ref = Tiramisu(over["layers"], 4, 8, 5, 0.2).double().eval()
    gen = torch.Generator().manual_seed(1)
    theirs = list(ref.state_dict().values())
    mine = ours.state_dict()
    assert [t.shape for t in theirs] == [t.shape for t in mine.values()]  # the same layers, in order
    with torch.no_grad():
        for (key, a), b in zip(mine.items(), theirs, strict=True):
            if key.endswith("running_var"):  # non-trivial BN statistics, so BN's epsilon matters
                a.copy_(torch.rand(a.shape, generator=gen, dtype=a.dtype) + 0.5)
            elif a.is_floating_point():
                a.copy_(0.3 * torch.randn(a.shape, generator=gen, dtype=a.dtype))
            b.copy_(a)
        x = torch.randn(2, 3, size, size, generator=gen, dtype=torch.float64)
        with FlopCounterMode(display=False) as counter:
            want = ref(x[:1])
        want = ref(x)
        got = ours(x)
    assert want.shape == got.shape == (2, 5, size, size)
    # torch's own FLOP counter over the reference's convs and transposed convs (2 per MAC)
    assert counter.get_total_flops() == 2 * netdsl.compile_spec("fcdensenet103", **over).graph["total_flops"]
    assert (got - want).abs().max() <= 1e-10 * (1 + want.abs().max())


def test_training_refuses_a_network_whose_output_is_a_map():
    with pytest.raises(NetdslError, match=r"trains classifiers .* but this network's output is a 11x32x32 map") as e:
        check_classifier(compile_target("fcdensenet56", {"size": 32}))
    assert "per-pixel labels" in e.value.hint
    check_classifier(compile_target("densenet_bc100_k12", {"depth": 10}))  # a vector of class scores


@pytest.mark.slow
def test_train_refuses_a_per_pixel_class_map_with_a_message(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "fcdensenet56", "--data", "digits", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "netdsl train trains classifiers" in err
    assert "10x224x224 map per image" in err and "hint: a per-pixel class map needs per-pixel labels" in err
    assert not out.exists()  # refused before the run folder is made


def test_fcdensenet_blocks_are_planned_and_compute_the_naive_function_with_dropout():
    """Every dense block, down and up, shares one buffer, each unit reading a view of it; with
    dropout active and the same random stream, training gives the naive module's values and
    gradients (float64; an odd size, so the crops cut)."""
    over = {"layers": [1, 2, 1, 1, 1, 2, 1, 1, 1, 2, 1], "k": 4, "first": 8, "size": 35}
    g = netdsl.compile_spec("fcdensenet103", **over)
    names = [b.name for b in blocks(g)]
    assert g.graph["planned"] and sorted(v["block"] for v in g.graph["buffers"].values()) == sorted(names)
    for b in blocks(g):
        assert [g.nodes[u.aggregate].get("read", {}).get("strategy") for u in b.units[1:]] == ["view"] * (
            len(b.units) - 1
        )
        if g.nodes[b.output]["kind"] == "concat":  # (one new feature is handed on as it is)
            assert g.nodes[b.output]["read"]["strategy"] == "view", b.name
    planned = netdsl.build_model("fcdensenet103", seed=1, **over).double().train()
    naive = netdsl.build_model("fcdensenet103", seed=1, opt=0, **over).double().train()
    naive.load_state_dict(planned.state_dict())
    x = torch.randn(2, 3, 35, 35, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    outs = []
    for m in (planned, naive):
        torch.manual_seed(5)  # the same dropout masks, drawn in the same order
        y = m(x)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        outs.append(y.detach())
    assert outs[0].shape == (2, 11, 35, 35) and torch.allclose(outs[0], outs[1], rtol=1e-9, atol=1e-10)
    grads = dict(planned.named_parameters())
    for name, p in naive.named_parameters():
        assert torch.allclose(grads[name].grad, p.grad, rtol=1e-7, atol=1e-10), name
