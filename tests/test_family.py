"""The aggregation patterns of the DenseNet family: VoVNet's one-shot aggregation and HarDNet's
harmonic connectivity (specs/vovnet.net, specs/hardnet.net), the language options they use
(``output=rule(...)``, ``reads`` in a unit body), and their presets against the reference,
pytorchcv 0.0.74 (optional: skipped when pytorchcv is absent): parameters, FLOPs, output shape,
connection sets and -- with the reference's weights loaded -- the outputs themselves."""

import importlib

import pytest
import torch
from test_onnx_equivalence import assert_matches_torch, at_input_size
from torch import nn

import netdsl
from netdsl.errors import SpecValueError
from netdsl.ir import patterns as P
from netdsl.memory import memory_report
from netdsl.presets import get
from netdsl.weights import load_weights

VOVNETS = ("vovnet27s", "vovnet39", "vovnet57")
HARDNETS = ("hardnet39ds", "hardnet68ds", "hardnet68", "hardnet85")
DPNS = ("dpn68", "dpn98", "dpn107", "dpn131")
PELEE = ("peleenet",)
DLAS = ("dla34", "dla46c", "dla60", "dla102")
FAST = {
    "vovnet27s",
    "hardnet39ds",
    "dpn68",
    "peleenet",
    "dla46c",
}  # the small ones run in the fast suite; the others are slow


def _param(names, fast=FAST):
    return [pytest.param(n, id=n, marks=() if n in fast else pytest.mark.slow) for n in names]


# ---- connection sets against hand-written rules


def harmonic_reads(k: int) -> tuple[int, ...]:
    """HarDNet (Chao et al., section 3.1): layer k connects to layer k - 2^n if 2^n divides k."""
    out, step = [], 1
    while step <= k:
        if k % step == 0:
            out.append(k - step)
        step *= 2
    return tuple(sorted(out))


def harmonic_width(k: int, growth: int, mult: float) -> int:
    """The reference's layer width: growth times mult once per extra link, rounded to even."""
    w = growth
    for _ in harmonic_reads(k)[1:]:
        w *= mult
    return int(int(w + 1) / 2) * 2


def assert_planned_equals_naive(target, shape, **overrides):
    """The planned module (--opt 1) computes the naive one's (--opt 0) function, in float64."""
    planned = netdsl.build_model(target, seed=1, **overrides)
    naive = netdsl.build_model(target, seed=1, opt=0, **overrides)
    naive.load_state_dict(planned.state_dict())
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    planned.double().eval()
    naive.double().eval()
    with torch.no_grad():
        assert torch.allclose(planned(x), naive(x), rtol=1e-10, atol=1e-10)


def test_harmonic_rule_is_the_papers_connectivity():
    g = netdsl.compile_spec("hardnet68")
    first = g.graph["blocks"][0]  # 8 layers
    assert first.connection_sets() == {k: harmonic_reads(k) for k in range(1, 9)}
    assert first.connection_sets()[8] == (0, 4, 6, 7)
    sixteen = g.graph["blocks"][1]
    assert sixteen.connection_sets() == {k: harmonic_reads(k) for k in range(1, 17)}
    # the block output: the odd layers and the last one, not the block input, in index order
    assert first.outputs == (1, 3, 5, 7, 8)
    assert sixteen.outputs == (1, 3, 5, 7, 9, 11, 13, 15, 16)


def test_reads_sets_each_layers_width():
    g = netdsl.compile_spec("hardnet68")
    for b, growth in zip(g.graph["blocks"][:2], (14, 16), strict=True):
        widths = {u.index: g.nodes[u.output]["shape"][0] for u in b.units}
        assert widths == {k: harmonic_width(k, growth, 1.7) for k in widths}
    assert [g.nodes[u.output]["shape"][0] for u in g.graph["blocks"][0].units] == [14, 24, 14, 40, 14, 24, 14, 68]


def test_two_way_dense_layer_is_two_units_reading_the_same_features():
    g = netdsl.compile_spec("peleenet")
    b = g.graph["blocks"][0]  # 3 layers on the 32-channel stem: 6 units of growth/2 = 16 channels
    # layer k = units 2k-1 and 2k, both reading x_0 .. x_{2k-2}: every earlier layer, not each other
    assert b.connection_sets() == {i: tuple(range(i - (i + 1) % 2)) for i in range(1, 7)}
    assert b.connection_sets()[4] == (0, 1, 2)
    assert [g.nodes[u.output]["shape"][0] for u in b.units] == [16] * 6
    assert g.nodes[b.output]["shape"][0] == 32 + 3 * 32
    # every read is a prefix of the block's buffer: the plan copies nothing
    assert memory_report(g)["blocks"][b.name]["copy_planned"] == 0
    assert all(len(g.nodes[u.aggregate]["read"]["runs"]) == 1 for u in b.units[2:])


def root_widths(graph) -> list[int]:
    """The input width of every aggregation root of a DLA: the 1x1 convs that read a concat."""
    nodes = graph.nodes
    return [
        nodes[nodes[n]["inputs"][0]]["shape"][0]
        for n in graph.nodes
        if nodes[n]["kind"] == "conv" and nodes[nodes[n]["inputs"][0]]["kind"] == "concat"
    ]


def test_deep_aggregation_roots_read_the_tree_so_far():
    # dla34: levels [1, 2, 2, 1], widths 64-128-256-512 on a 32-channel stem. A level-1 tree's
    # root reads its two residual blocks (2 * out); in a level-2 tree the second root also reads
    # the first tree's output (out) and, past the first stage, the stage input max-pooled (in).
    g = netdsl.compile_spec("dla34")
    assert root_widths(g) == [2 * 64, 2 * 128, 2 * 128 + 64 + 128, 2 * 256, 2 * 256 + 128 + 256, 2 * 512 + 256]


def aggregation_reads(graph, tree: str) -> dict[str, tuple[str, ...]]:
    """Which aggregation nodes of one DLA tree each of them reads, in concat order.

    The aggregation nodes are the residual blocks' and the roots' outputs (``x1``/``x2``/
    ``dla_root1`` scopes of specs/dla.net, their final ReLU); a read is the nearest such node, or
    the tree's input ``x0``, found walking back through the ops between them.
    """
    nodes = graph.nodes
    agg = [
        n
        for n in graph.nodes
        if n.startswith(tree + ".") and n.rsplit(".", 2)[-2] in ("x1", "x2", "dla_root1") and n.endswith(".relu1")
    ]
    x0 = nodes[tree + ".d"]["inputs"][0]
    short = {x0: "x0"}
    for n in agg:
        kind = "r" if "dla_root1" in n else "b"
        short[n] = f"{kind}{sum(1 for m in short.values() if m[0] == kind) + 1}"

    def hits(node: str) -> list[str]:
        if node in short:
            return [short[node]]
        return [h for p in nodes[node]["inputs"] for h in hits(p)]

    return {short[n]: tuple(dict.fromkeys(h for p in nodes[n]["inputs"] for h in hits(p))) for n in agg}


def test_deep_aggregation_tree_is_the_language_docs_matrix():
    # docs/language.md, "Aggregation trees": dla34's second stage, a level-2 tree with the
    # stage input handed down (max-pooled) to the last root
    reads = aggregation_reads(netdsl.compile_spec("dla34"), "tree21")
    assert reads == {
        "b1": ("x0",),
        "b2": ("b1",),
        "r1": ("b2", "b1"),
        "b3": ("r1",),
        "b4": ("b3",),
        "r2": ("b4", "b3", "x0", "r1"),
    }


def test_one_shot_aggregation_is_a_chain_concatenated_once():
    g = netdsl.compile_spec("vovnet39")
    for b in g.graph["blocks"]:
        assert b.connection_sets() == {1: (0,), 2: (1,), 3: (2,), 4: (3,), 5: (4,)}
        assert b.outputs == (0, 1, 2, 3, 4, 5)  # the module input first, then every layer
    assert len(g.graph["blocks"]) == 6  # layers [1, 1, 2, 2]


def test_the_language_docs_table_rows(write_spec):
    # docs/language.md, "Exact connection sets", L = 6
    osa = _block(write_spec, "block(6, rule(i - j == 1), output=all)")
    assert osa.connection_sets() == {1: (0,), 2: (1,), 3: (2,), 4: (3,), 5: (4,), 6: (5,)}
    assert osa.outputs == (0, 1, 2, 3, 4, 5, 6)
    hard = _block(
        write_spec, "block(6, rule(ispow2(i - j) and i % (i - j) == 0), output=rule(j % 2 == 1 or j == i - 1))"
    )
    assert hard.connection_sets() == {1: (0,), 2: (0, 1), 3: (2,), 4: (0, 2, 3), 5: (4,), 6: (4, 5)}
    assert hard.outputs == (1, 3, 5, 6)
    pelee = _block(write_spec, "block(6, rule(i % 2 == 1 or j < i - 1))")
    assert pelee.connection_sets() == {
        1: (0,),
        2: (0,),
        3: (0, 1, 2),
        4: (0, 1, 2),
        5: tuple(range(5)),
        6: tuple(range(5)),
    }


def test_dual_path_streams_of_a_dpn_unit():
    g = netdsl.compile_spec("dpn68")
    nodes = g.nodes
    # a unit's output is concat(res, grow): stage 1 (bw 64, inc 16): the projection makes 64 + 2*16
    # channels, each unit appends 16
    outputs = [n for n in nodes if n.startswith("dpn_unit") and n.endswith(".concat2")]
    widths = [nodes[n]["shape"][0] for n in outputs]
    assert widths[:3] == [64 + 3 * 16, 64 + 4 * 16, 64 + 5 * 16]
    assert widths[-1] == 512 + 5 * 64  # the last stage: bw 512, inc 64, 3 units (3 + 1 + 1 increments)
    # the streams flow from unit to unit, not through the unit's input: the residual stream is a
    # sum of the previous unit's, the dense stream the previous one with inc channels appended
    assert nodes["dpn_unit2.add1"]["inputs"] == ("dpn_unit2.y1", "dpn_unit1.add1")
    assert nodes["dpn_unit2.concat1"]["inputs"] == ("dpn_unit1.concat1", "dpn_unit2.y2")
    assert nodes["dpn_unit2.concat2"]["inputs"] == ("dpn_unit2.add1", "dpn_unit2.concat1")
    assert nodes["dpn_unit2.dpn_conv1.bn1"]["inputs"] == ("dpn_unit1.concat2",)  # the unit reads both


@pytest.mark.parametrize(
    ("op", "message", "col"),
    [
        ("slice(2, 2)", "channel slice [2:2] is outside 0..4", 5),
        ("slice(0, 9)", "channel slice [0:9] is outside 0..4", 5),
        ("slice(-1, 2)", "slice() 'start' must be >= 0, got -1", 11),  # at the argument
    ],
)
def test_slice_misuse_is_located(write_spec, op, message, col):
    spec = write_spec(f"network t() {{\n    input(4, 4, 4)\n    {op}\n}}\n")
    with pytest.raises(netdsl.NetdslError) as err:
        netdsl.compile_spec(spec)
    assert message in str(err.value)
    assert f"{spec}:3:{col}:" in str(err.value)


def _block(write_spec, block: str):
    spec = write_spec(f"network t() {{\n    input(4, 4, 4)\n    {block} {{ conv(2, 1) }}\n}}\n")
    (b,) = netdsl.compile_spec(spec).graph["blocks"]
    return b


def test_output_rule_is_what_a_further_unit_would_read(write_spec):
    b = _block(write_spec, "block(6, dense, output=rule(j == 0 or i - j == 1))")
    assert b.outputs == (0, 6)  # tested with i = 7
    assert b.output_mode == "rule(j == 0 or i - j == 1)"
    # with the block's own rule it is output=next
    nxt = _block(write_spec, "block(6, rule(ispow2(i - j)), output=next)")
    same = _block(write_spec, "block(6, rule(ispow2(i - j)), output=rule(ispow2(i - j)))")
    assert nxt.outputs == same.outputs == P.connections(P.Rule("", lambda i, j: i - j in (1, 2, 4)), 7)
    # on a block input viewed as groups, j runs over the groups too
    grouped = _block(write_spec, "block(3, dense, width=2, output=rule(j < 0 or j == i - 1))")
    assert grouped.outputs == (-1, 3)


def test_reads_is_the_number_of_features_a_unit_reads(write_spec):
    spec = write_spec(
        "network t() {\n    input(4, 4, 4)\n    block(5, rule(j == 0 or i - j == 1)) { conv(2 * reads + unit, 1) }\n}\n"
    )
    (b,) = netdsl.compile_spec(spec).graph["blocks"]
    g = netdsl.compile_spec(spec)
    assert [g.nodes[u.output]["shape"][0] for u in b.units] == [2 * len(u.reads) + u.index for u in b.units]
    assert [len(u.reads) for u in b.units] == [1, 2, 2, 2, 2]


def test_reads_outside_a_unit_body_is_an_unknown_name(write_spec):
    spec = write_spec("network t() {\n    input(4, 4, 4)\n    conv(reads, 1)\n}\n")
    with pytest.raises(netdsl.NetdslError) as err:
        netdsl.compile_spec(spec)
    assert f"{spec}:3:10: error: unknown name 'reads'" in str(err.value)


@pytest.mark.parametrize(
    ("block", "message", "col"),
    [
        ("block(3, dense, output=rule(j > 10))", "output=rule(j > 10) selects no feature of the block", 21),
        (
            "block(3, dense, output=5)",
            "block() output must be all, new, last, next, sinks, mean or rule(expr), got 5",
            21,
        ),
    ],
)
def test_output_misuse_is_located(write_spec, block, message, col):
    spec = write_spec(f"network t() {{\n    input(4, 4, 4)\n    {block} {{ conv(2, 1) }}\n}}\n")
    with pytest.raises(SpecValueError) as err:
        netdsl.compile_spec(spec)
    assert message in str(err.value)
    assert f"{spec}:3:{col}:" in str(err.value)


# ---- compilation: concat planning, torch, ONNX


def test_concat_planning_applies_to_both_patterns():
    hard = netdsl.compile_spec("hardnet39ds")
    b = hard.graph["blocks"][1]
    # the buffer holds x_0 (96 channels) then x_1, x_2, ... of harmonic widths (growth 20, mult 1.6)
    ends = [96]
    for k in range(1, 8):
        ends.append(ends[-1] + harmonic_width(k, 20, 1.6))
    unit8 = hard.nodes[b.units[7].aggregate]["read"]  # x_7, x_6, x_4, x_0: nearest first (order=descending)
    assert unit8["buffer"] == f"{b.name}.buffer"
    assert unit8["runs"] == ((ends[6], ends[7]), (ends[5], ends[6]), (ends[3], ends[4]), (0, 96))
    assert hard.nodes[b.output]["read"]["buffer"] == f"{b.name}.buffer"
    vov = netdsl.compile_spec("vovnet27s")
    for b in vov.graph["blocks"]:
        # each layer reads one stored feature, the output is the whole buffer: nothing is copied
        assert all(vov.nodes[u.output].get("stores") for u in b.units)
        assert vov.nodes[b.output]["read"]["copy_bytes"] == 0


@pytest.mark.parametrize(
    ("name", "small"),
    [
        ("vovnet27s", {"layers": [1, 2, 1, 1], "channels": [16, 24, 32, 40], "branch": [8, 8, 8, 8], "stem": 16}),
        ("hardnet39ds", {"layers": [4, 8, 2, 2], "growth": [4, 4, 8, 8], "channels": [16, 24, 32, 40], "stem": 16}),
        ("hardnet85", {"layers": [4, 8, 2, 2, 2, 2], "growth": [4, 4, 8, 8, 8, 8], "stem": 16}),
    ],
)
def test_reduced_presets_planned_equals_naive_and_onnx_equals_torch(name, small):
    small = {**small, "classes": 10, "size": 32}
    assert_planned_equals_naive(name, (2, 3, 32, 32), **small)
    assert_matches_torch(at_input_size(netdsl.compile_spec(name, opt=0, **small), (32, 32)), batches=(1, 2))


# ---- the reference, pytorchcv 0.0.74


def reference(name: str) -> nn.Module:
    family = next(f for f in ("vovnet", "hardnet", "dpn", "peleenet", "dla") if name.startswith(f))
    # the model file alone: pytorchcv's model provider imports torchvision
    module = importlib.import_module(f"pytorchcv.models.{family}")
    return getattr(module, name)().eval()


def reference_flops(model: nn.Module, hw: int = 224) -> tuple[int, tuple[int, ...]]:
    """Multiply-accumulates of the conv and linear layers of ``model`` on one hw x hw image, counted
    by forward hooks (netdsl's convention: one MAC is one FLOP, no bias, no BN/pool/activation),
    and the output shape."""
    total = 0

    def hook(mod, _inputs, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += out[0].numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            total += mod.in_features * mod.out_features

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            y = model(torch.randn(1, 3, hw, hw))
    finally:
        for h in hooks:
            h.remove()
    return total, tuple(y.shape[1:])


@pytest.mark.parametrize("name", _param(VOVNETS + HARDNETS + DPNS + PELEE + DLAS))
def test_preset_equals_pytorchcv_in_params_flops_and_output_shape(name):
    pytest.importorskip("pytorchcv")
    ref = reference(name)
    g = netdsl.compile_spec(name)
    flops, shape = reference_flops(ref)
    assert g.graph["total_params"] == sum(p.numel() for p in ref.parameters()) == get(name).paper_params
    assert g.graph["total_flops"] == flops
    assert g.nodes[g.graph["output"]]["shape"] == shape == (1000,)


@pytest.mark.parametrize("name", _param(DLAS))
def test_aggregation_roots_equal_pytorchcvs(name):
    pytest.importorskip("pytorchcv")
    roots = [m.conv.conv.in_channels for m in reference(name).modules() if type(m).__name__ == "DLARoot"]
    assert root_widths(netdsl.compile_spec(name)) == roots


@pytest.mark.parametrize("name", _param(HARDNETS))
def test_harmonic_links_equal_pytorchcvs(name):
    pytest.importorskip("pytorchcv")
    units = [m for m in reference(name).modules() if type(m).__name__ == "HarDUnit"]
    blocks = netdsl.compile_spec(name).graph["blocks"]
    assert len(units) == len(blocks)
    for unit, b in zip(units, blocks, strict=True):
        # the same sets, concatenated in the same order (nearest first: order=descending)
        assert [tuple(links) for links in unit.links_list] == [b.aggregate_order(u) for u in b.units]


# fast: the one with multi-feature reads in the reference's (nearest-first) order
@pytest.mark.parametrize("name", _param(VOVNETS + HARDNETS + DPNS + PELEE + DLAS, fast={"hardnet39ds"}))
def test_preset_computes_pytorchcvs_function_with_its_weights(name):
    pytest.importorskip("pytorchcv")
    torch.manual_seed(0)
    ref = reference(name)
    with torch.no_grad():  # trained-looking BN: statistics of a batch, affines as in test_onnx_equivalence
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # one batch gives exactly its statistics
                m.weight.uniform_(0.2, 0.6)
                m.bias.copy_(m.weight * (0.5 + torch.rand(m.weight.shape)))
        ref.train()(torch.randn(8, 3, 224, 224))
    ref.eval()
    model = netdsl.build_model(name).eval()
    # matched by position (netdsl.weights, docs/weights.md); the concatenations are in the same
    # order -- HarDNet's layers nearest first, order=descending -- so no channel is permuted
    load_weights(model, ref.state_dict(), "pytorchcv")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want, got = ref(x), model(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    assert (want[0] - want[1]).abs().max() > 1e-2  # the outputs depend on the input


# ---- order=descending: the concat order of a unit's features


DESCENDING = """
network t(mid=4) {
    input(4, 6, 6)
    block(6, rule(ispow2(i - j) and i % (i - j) == 0), order=descending) {
        bn; relu; conv(mid, 1); bn; relu; conv(2, 3)
    }
    bn; relu; gap
    fc: linear(3)
}
"""


# the plan gathers the multi-run reads of units 2, 4, 6 (mid=4) or splits their BN-ReLU-1x1 conv
# over the runs (mid=1: cheaper than a copy), the runs in the aggregate's order
@pytest.mark.parametrize(("mid", "strategy"), [(4, "gather"), (1, "split")])
def test_descending_order_concatenates_nearest_first(write_spec, mid, strategy):
    spec = write_spec(DESCENDING)
    g = netdsl.compile_spec(spec, mid=mid, opt=0)
    (b,) = g.graph["blocks"]
    assert b.order == "descending" and b.connection_sets()[4] == (0, 2, 3)  # the set is unchanged
    assert b.aggregate_order(b.units[3]) == (3, 2, 0)
    assert g.nodes[b.units[3].aggregate]["inputs"] == tuple(b.feature_node(j) for j in (3, 2, 0))
    assert g.nodes[b.output]["inputs"] == tuple(b.feature_node(j) for j in range(7))  # the output: index order
    planned_graph = netdsl.compile_spec(spec, mid=mid)
    reads = [planned_graph.nodes[u.aggregate].get("read", {}).get("strategy") for u in b.units]
    assert reads == [None, strategy, None, strategy, None, strategy]
    # the planned module computes the naive one's function; ONNX agrees with torch
    assert_planned_equals_naive(spec, (2, 4, 6, 6), mid=mid)
    assert_matches_torch(g, batches=(1, 2))


def test_weight_heat_map_follows_the_descending_order(write_spec):
    from netdsl.viz.matrix import weight_matrix

    g = netdsl.compile_spec(write_spec(DESCENDING), opt=0)
    (b,) = g.graph["blocks"]
    state = {}
    for u in b.units:
        conv = next(n for n in g.nodes if n.startswith(u.scope + ".") and g.nodes[n]["kind"] == "conv")
        w = torch.zeros(4, g.nodes[u.aggregate]["shape"][0], 1, 1)
        start = 0
        for j in b.aggregate_order(u):  # the channels of x_j get the value j + 1
            width = next(f for f in b.features if f.index == j).channels(g)
            w[:, start : start + width] = j + 1
            start += width
        state[f"{conv}.weight"] = w.numpy()
    m = weight_matrix(g, b, state)
    row4 = dict(zip(m.cols, m.weights[3], strict=True))
    assert (row4[0], row4[2], row4[3]) == (1.0, 3.0, 4.0)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("block(3, dense, order=all)", 'block() order must be ascending or descending, got "all"'),
        ("block(split(scale=2), order=descending)", "a split block has no 'order'"),
    ],
)
def test_order_misuse_is_located(write_spec, block, message):
    spec = write_spec(f"network t() {{\n    input(4, 4, 4)\n    {block} {{ conv(2, 1) }}\n}}\n")
    with pytest.raises(netdsl.NetdslError) as err:
        netdsl.compile_spec(spec)
    assert message in str(err.value)
    col = block.index("order=") + 5  # at the option
    assert f"{spec}:3:{col}:" in str(err.value)
