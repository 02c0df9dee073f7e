"""The op registry (netdsl/ops): every kind has every backend, the demonstration ops (mish,
channel_shuffle) work end to end, BatchNorm's fold math is right, the language reference lists
exactly the registry's ops, and the IR's membership and plan attributes are explicit."""

import ast
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
from netdsl.backends.onnx.export import export
from netdsl.backends.torch.codegen import build
from netdsl.errors import NetdslError, ShapeError
from netdsl.frontend import lower_spec
from netdsl.ir import lint
from netdsl.ir.graph import block_members, blocks, enclosing
from netdsl.ir.plan import segments
from netdsl.onnx_runtime import run, session
from netdsl.ops import (
    ACTIVATIONS,
    REGISTRY,
    SPEC_OPS,
    bn_scale_shift,
    fold_into_conv,
    get,
)
from netdsl.passes import bn_to_affine
from netdsl.passes.fold_bn import bn_fold_source

ROOT = Path(__file__).resolve().parents[1]

# Every kind a spec can reach, plus the ones rewrites make (affine) and the input.
EVERY_KIND = """
network every(classes=3) {
    input(8, 9, 9)
    a: conv(8, 3, bias=true); bn; relu
    mish; channel_shuffle(4)
    maxpool(3, stride=1, pad=1); avgpool(3, stride=1, pad=1)
    se(reduction=4); dropout(0.1); identity
    add(a)
    parallel(mul) { branch { sigmoid } branch { gap } }
    block(2, window(1), width=4) { conv(4, 1) }
    block(3, rule(j == 0 or i - j == 2), aggregate=wsum, output=mean) { conv(channels, 1) }
    skip: identity
    upconv(4, 3, stride=2); crop(skip); concat(skip); upsample(2, mode=bilinear)
    gap; flatten
    cls: linear(classes)
    use(a); l2norm(2.0)
    f: flatten_hwc
    output(cls, f)
}
"""


def test_every_kind_has_every_backend(write_spec):
    g = netdsl.compile_spec(str(write_spec(EVERY_KIND)))
    rewritten = bn_to_affine.run(_bound(g)).graph  # bn -> affine, so the affine kind is covered too
    seen = set()
    for graph, d in [(h, d) for h in (g, rewritten) for _, d in h.nodes(data=True)]:
        op, a = get(d["kind"]), d["attrs"]
        ins = [graph.nodes[i]["shape"] for i in d["inputs"]]
        seen.add(d["kind"])
        assert op.shape(a, ins) == d["shape"]
        assert op.params(a, ins, d["shape"]) >= 0 and op.flops(a, ins, d["shape"]) >= 0
        assert isinstance(op.label(a), str) and op.label(a)
        assert callable(op.onnx)
        ast.parse(op.torch.call(a, "self.m", [f"x{k}" for k in range(len(ins))]), mode="eval")
        ctor = op.torch.module(a, ins)
        assert ctor is None or (isinstance(ctor[0], str) and isinstance(ctor[1], tuple) and isinstance(ctor[2], dict))
        assert ctor is not None or not op.weights  # an op with weights owns a module
        if op.torch.inplace is not None and (src := op.torch.inplace(a, "x")) is not None:
            ast.parse(src, mode="eval")
    assert seen == set(REGISTRY)


def _bound(g):
    from netdsl.backends.onnx.export import bind_weights

    return bind_weights(g, build(g, 0))


def test_spec_ops_are_the_registry_entries_spec_names():
    assert set(SPEC_OPS) == {s.name for op in REGISTRY.values() for s in op.spec}
    assert {s.name for s in SPEC_OPS.values() if s.kind == "act"} == set(ACTIVATIONS)


def test_language_reference_lists_exactly_the_spec_ops():
    text = (ROOT / "docs" / "language.md").read_text()
    table = text.split("| op | arguments (defaults) | notes |", 1)[1].split("\n\n", 1)[0]
    names = set()
    for row in table.strip().splitlines()[1:]:
        first = row.split("|")[1]
        for code in re.findall(r"`([^`]*)`", first):
            names |= {re.sub(r"\(.*", "", w) for w in code.replace(",", " ").split()}
    assert names == set(SPEC_OPS)


# ---- mish and channel_shuffle, end to end

DEMO = """
network demo(g=4) {
    input(8, 6, 6)
    conv(8, 3); bn; mish
    channel_shuffle(g)
    conv(4, 1, bias=true)
    gap
    linear(3)
}
"""


class Reference(nn.Module):
    """The demo network by hand: torch's Mish and ShuffleNet's shuffle (view, transpose, view)."""

    def __init__(self, g):
        super().__init__()
        self.g = g
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.linear1 = nn.Conv2d(8, 4, 1), nn.Linear(4, 3)

    def forward(self, x):
        x = nn.Mish()(self.bn1(self.conv1(x)))
        n, c, h, w = x.shape
        x = x.view(n, self.g, c // self.g, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.linear1(self.conv2(x).mean((2, 3)))


def _demo(write_spec, **over):
    return netdsl.compile_spec(str(write_spec(DEMO)), **over)


@pytest.mark.parametrize("opt", [0, 1])
def test_mish_and_channel_shuffle_in_torch_equal_a_hand_written_reference(write_spec, opt):
    g = netdsl.compile_spec(str(write_spec(DEMO)), opt=opt)
    model = netdsl.build_model(str(write_spec(DEMO)), opt=opt).eval()
    ref = Reference(4).eval()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-6, rtol=0)
    assert g.graph["total_params"] == sum(p.numel() for p in ref.parameters()) == 8 * 8 * 9 + 16 + 4 * 8 + 4 + 4 * 3 + 3


def test_mish_and_channel_shuffle_in_onnx_equal_torch(write_spec):
    g = _demo(write_spec)
    module = build(g, 0).eval()
    with torch.no_grad():  # non-trivial BN statistics, so the fold and the shuffle both matter
        bn = module.get_submodule("bn1")
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    model, report = export(g, module)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert [o for o in ops if o in ("Reshape", "Transpose")] == ["Reshape", "Transpose", "Reshape"]
    assert {"Softplus", "Tanh"} <= set(ops) and report.folded_bn == 1
    sess = session(model.SerializeToString(), device="cpu", threads=1)
    for batch in (1, 3):  # the batch dimension stays symbolic through the reshapes
        x = torch.randn(batch, 8, 6, 6, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = module(x).numpy()
        assert np.abs(run(sess, x.numpy()) - want).max() <= 1e-5


def test_every_activation_in_onnx_equals_torch(write_spec):
    """One branch per row of the activation table: a new activation is covered by adding its row."""
    branches = " ".join(f"branch {{ {name} }}" for name in ACTIVATIONS)
    g = netdsl.compile_spec(str(write_spec(f"network acts() {{ input(2, 4, 4); parallel(add) {{ {branches} }} }}")))
    module = build(g, 0).eval()
    model, _ = export(g, module)
    sess = session(model.SerializeToString(), device="cpu", threads=1)
    x = 3 * torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = module(x).numpy()
    assert np.abs(run(sess, x.numpy()) - want).max() <= 1e-5


def test_inplace_forms_compute_the_plain_forms():
    x = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    for name, row in ACTIVATIONS.items():
        a = {"fn": name, **{arg.name: arg.default for arg in row.args}}
        plain = eval(get("act").torch.call(a, "", ["x"]), {"torch": torch, "F": F, "x": x})
        src = get("act").torch.inplace(a, "y")
        if src is None:
            continue
        y = x.clone()
        out = eval(src, {"torch": torch, "F": F, "y": y})
        assert torch.equal(out, plain) and torch.equal(y, plain), name


def test_channel_shuffle_groups_must_divide_the_channels(write_spec):
    path = write_spec(DEMO.replace("channel_shuffle(g)", "channel_shuffle(3)"))
    with pytest.raises(ShapeError, match=r"groups=3 must divide the input channels \(8\)") as err:
        lower_spec(path)
    assert (err.value.span.line, err.value.span.column) == (5, 5)
    with pytest.raises(NetdslError, match="'groups' must be >= 1"):
        lower_spec(write_spec(DEMO.replace("channel_shuffle(g)", "channel_shuffle(0)")))


# ---- BatchNorm folding: the one copy of the arithmetic, and the one decision


def test_fold_math_on_numpy_equals_the_textbook_formula():
    rng = np.random.default_rng(0)
    gamma, beta, mean = rng.normal(size=5), rng.normal(size=5), rng.normal(size=5)
    var, eps = rng.uniform(0.1, 2, size=5), 1e-3
    scale, shift = bn_scale_shift(gamma, beta, mean, var, eps)
    np.testing.assert_allclose(scale, gamma / np.sqrt(var + eps), rtol=1e-14)
    np.testing.assert_allclose(shift, beta - mean * gamma / np.sqrt(var + eps), rtol=1e-14)
    w, b = rng.normal(size=(5, 3, 2, 2)), rng.normal(size=5)
    fw, fb = fold_into_conv(w, b, scale, shift)
    np.testing.assert_allclose(fw, w * scale[:, None, None, None], rtol=1e-14)
    np.testing.assert_allclose(fb, b * scale + shift, rtol=1e-14)


def test_fold_math_on_torch_equals_batchnorm_after_conv():
    gen = torch.Generator().manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3, bias=True).double(), nn.BatchNorm2d(5, eps=1e-3).double().eval()
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.randn(5, generator=gen, dtype=torch.float64))
        bn.running_var.uniform_(0.1, 2.0, generator=gen)
        scale, shift = bn_scale_shift(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
        w, b = fold_into_conv(conv.weight, conv.bias, scale, shift)
        x = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
        assert torch.allclose(F.conv2d(x, w, b), bn(conv(x)), atol=1e-12, rtol=0)


def test_the_fold_decision_refuses_observable_convs(write_spec):
    g = netdsl.compile_spec(
        str(
            write_spec("""
network folds() {
    input(3, 8, 8)
    a: conv(4, 3); bn; relu
    b: conv(4, 3)
    bn; add(b)
}""")
        )
    )
    assert bn_fold_source(g, "bn1") == "a"  # the conv's only reader
    assert bn_fold_source(g, "bn2") is None  # the add also reads conv b


# ---- membership and plan attributes on the IR (item 2)


def test_nested_blocks_carry_their_own_block_unit_stage_and_layer():
    g = netdsl.compile_spec(str(ROOT / "specs" / "dense2net.net"), blocks=[2, 3], k=6, scale=3)
    lint(g)
    outer = {b.name for b in blocks(g) if "." not in b.name}
    assert outer == {"block1", "block2"}
    for n, d in g.nodes(data=True):
        # the reference: the scopes in the node id (lowering names every node by its scope)
        parts = n.split(".")
        assert d["stage"] == parts[0]
        block_scopes = [".".join(parts[:k]) for k in range(1, len(parts)) if parts[k - 1].startswith("block")]
        inner = block_scopes[-1] if block_scopes else None
        assert d.get("block") == inner, n
        if inner is not None:
            rest = n[len(inner) + 1 :].split(".")
            unit = int(rest[0][4:]) if rest[0].startswith("unit") and len(rest) > 1 else None
            assert d.get("unit") == unit, n
        in_outer_unit = len(parts) > 2 and parts[0] in outer and parts[1].startswith("unit")
        assert d["layer"] == (".".join(parts[:2]) if in_outer_unit else parts[0]), n
    nested = g.graph["block_parents"]
    assert nested == {
        b.name: (b.name.split(".")[0], int(b.name.split(".")[1][4:])) for b in blocks(g) if b.name not in outer
    }
    split = next(b for b in blocks(g) if b.name in nested)
    assert enclosing(g, split.features[0].node) == [(split.name, None), nested[split.name]]
    members = block_members(g, "block1")
    assert set(members) == {n for n in g.nodes if n.startswith("block1.")}


def test_lint_checks_the_membership_attributes():
    from netdsl.errors import IRError

    g = netdsl.compile_spec(str(ROOT / "specs" / "dense2net.net"), blocks=[2], k=8)
    node = next(n for n, d in g.nodes(data=True) if d.get("unit") == 2)
    g.nodes[node]["unit"] = 7
    with pytest.raises(IRError, match="unit 7"):
        lint(g)
    g.nodes[node]["unit"] = 2
    del g.nodes["stem"]["layer"]
    with pytest.raises(IRError, match="stage/layer"):
        lint(g)


def test_plan_segments_live_on_the_ir():
    g = netdsl.compile_spec("densenet_bc100_k12", depth=16, k=4, opt=1)
    heads = segments(g)
    assert heads and all(g.nodes[h]["segment"] == tuple(chain) for h, chain in heads.items())
    members = {c: h for h, chain in heads.items() for c in chain}
    assert members == {n: d["in_segment"] for n, d in g.nodes(data=True) if "in_segment" in d}
    assert all(get(g.nodes[h]["kind"]).per_channel for h in heads)
    # DenseNet-BC: every unit's first BN reads its aggregate, a view of the block buffer
    assert heads["block1.unit2.bn1"] == ("block1.unit2.bn1", "block1.unit2.relu1", "block1.unit2.conv1")
