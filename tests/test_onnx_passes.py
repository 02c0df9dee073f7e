"""The inference rewrites (drop_inference_noops, fold_bn, bn_to_affine, then the concat plan of
the rewritten graph): structure, lint, no mutation of the input graph, and unchanged values --
checked independently of ONNX by running a torch module of the *rewritten* graph with the
rewritten weights; and the exported Concats as the plan's reads."""

import numpy as np
import pytest
import torch
from test_onnx_equivalence import ALLOPS, calibrated

import netdsl
from netdsl.backends.onnx.export import bind_weights, export, inference_passes
from netdsl.backends.torch.codegen import module_from_graph
from netdsl.ir import lint
from netdsl.onnx_runtime import session
from netdsl.passes import bn_to_affine, drop_inference_noops, fold_bn, run_pipeline


def module_of(graph):
    """A torch module of a rewritten graph, loaded with the weights bound on its nodes."""
    m = module_from_graph(graph)
    state = {
        f"{n}.{k}": torch.from_numpy(np.asarray(v))
        for n, d in graph.nodes(data=True)
        for k, v in d.get("weights", {}).items()
    }
    own = m.state_dict()
    state = {k: v for k, v in state.items() if k in own}  # BN's num_batches_tracked is not exported
    assert set(state) == {k for k in own if not k.endswith("num_batches_tracked")}
    m.load_state_dict(state, strict=False)
    return m.eval()


@pytest.fixture
def allops(write_spec):
    g = netdsl.compile_spec(write_spec(ALLOPS), opt=0)
    return g, calibrated(g)


def test_rewritten_graph_computes_the_same_function(allops):
    g, module = allops
    rewritten = run_pipeline(bind_weights(g, module), inference_passes(), lint)
    kinds = {d["kind"] for _, d in rewritten.nodes(data=True)}
    assert not kinds & {"bn", "dropout", "identity"}
    x = torch.randn(3, 3, 17, 17)
    with torch.no_grad():
        assert (module_of(rewritten)(x) - module(x)).abs().max().item() <= 1e-5


def test_fold_only_where_the_conv_value_is_private(allops):
    g, module = allops
    bound = drop_inference_noops.run(bind_weights(g, module)).graph
    out = fold_bn.run(bound).graph
    # 'a' feeds its BN and add1; 'x' feeds its BN and add2: both keep their BN
    assert out.nodes["a"].get("folded") is None and out.nodes["x"].get("folded") is None
    assert out.nodes["stem"]["folded"] == ("bn2",) and out.nodes["stem"]["attrs"]["bias"] is True
    assert out.nodes["block1.unit2.conv1"]["folded"] == ("block1.unit2.bn1",)
    assert {"bn1", "bn3", "bn4"} <= set(out) and "bn2" not in out
    assert out.nodes["relu61"]["inputs"] == ("stem",)
    lint(out)
    # the input graph is untouched
    assert "bn2" in bound and bound.nodes["stem"]["attrs"]["bias"] is True
    assert "folded" not in bound.nodes["stem"]


def test_fold_arithmetic_against_torch_conv_bn():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=True)
    bn = torch.nn.BatchNorm2d(3, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([0.25, 4.0, 1.5]))
        bn.weight.copy_(torch.tensor([2.0, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    text = "network t() { input(2, 5, 5)\n c: conv(3, 3, bias=true)\n b: bn(eps=0.001) }"
    g = netdsl.compile_spec("t.net", opt=0, text=text)
    g.nodes["c"]["weights"] = {k: v.detach().numpy() for k, v in conv.state_dict().items()}
    g.nodes["b"]["weights"] = {k: v.numpy() for k, v in bn.state_dict().items()}
    out = fold_bn.run(g).graph
    assert set(out) == {"input", "c"} and out.graph["output"] == "c"
    folded = torch.nn.Conv2d(2, 3, 3, padding=1)
    folded.load_state_dict({k: torch.from_numpy(v) for k, v in out.nodes["c"]["weights"].items()})
    x = torch.randn(2, 2, 5, 5)
    with torch.no_grad():
        assert (folded(x) - bn.eval()(conv(x))).abs().max().item() <= 1e-5


def test_bn_to_affine_keeps_the_id_and_needs_weights():
    g = netdsl.compile_spec("densenet_bc100_k12", depth=10, k=4, opt=0)
    with pytest.raises(netdsl.NetdslError, match="no weights bound"):
        bn_to_affine.run(g)
    bound = bind_weights(g, calibrated(g))
    out = bn_to_affine.run(bound).graph
    assert out.nodes["block1.unit1.bn1"]["kind"] == "affine" and bound.nodes["block1.unit1.bn1"]["kind"] == "bn"
    lint(out)


def test_drop_noops_moves_output_and_block_metadata(write_spec):
    spec = write_spec("network t() { input(3, 8, 8)\n block(2, dense) { conv(4, 3); identity }\n dropout(0.5) }")
    g = netdsl.compile_spec(spec, opt=0)
    (b,) = g.graph["blocks"]
    assert g.nodes[b.units[0].output]["kind"] == "identity"
    out = drop_inference_noops.run(g).graph
    lint(out)
    (b2,) = out.graph["blocks"]
    assert [out.nodes[u.output]["kind"] for u in b2.units] == ["conv", "conv"]
    assert out.nodes[out.graph["output"]]["kind"] == "concat"
    assert g.nodes[g.graph["output"]]["kind"] == "dropout"  # the input graph is untouched


def _concats(model):
    return {n.name: tuple(n.input) for n in model.graph.node if n.op_type == "Concat"}


def test_dense_aggregates_grow_by_the_plan():
    """The exported Concats are the plan's reads: each dense aggregate extends the one before it
    by the newest stored feature, and the copied bytes are the reads' (no re-planning)."""
    g = netdsl.compile_spec("densenet_bc100_k12", depth=16, k=4, opt=0)
    m = calibrated(g)
    model, report = export(g, m)
    cats = _concats(model)
    assert cats["block1.unit2.cat"] == ("stem", "block1.unit1.conv2")
    assert cats["block1.cat"] == ("block1.unit2.cat", "block1.unit2.conv2")
    assert all(len(ins) == 2 for ins in cats.values()) and len(cats) == 6
    # 3 blocks x (unit-2 aggregate 12 ch + block output 16 ch) at 32, 16, 8 px, float32
    assert (report.concat_nodes, report.concat_bytes) == (6, 4 * 28 * (32 * 32 + 16 * 16 + 8 * 8))
    plan = run_pipeline(bind_weights(g, m), inference_passes(), lint).graph["buffer_plans"]["block1"]
    assert [(r.node, r.extends) for r in plan.reads] == [("block1.unit2.cat", None), ("block1.cat", "block1.unit2.cat")]
    x = torch.randn(2, 3, 32, 32)
    sess = session(model.SerializeToString(), device="cpu", threads=1)
    with torch.no_grad():
        assert np.abs(sess.run(None, {"input": x.numpy()})[0] - m(x).numpy()).max() <= 1e-4


def test_path_aggregates_extend_only_true_prefixes(write_spec):
    spec = write_spec(
        "network t() { input(3, 8, 8)\n conv(4, 3)\n block(4, rule(j == 0 or i - j == 1)) { conv(4, 3) }\n}"
    )
    g = netdsl.compile_spec(spec, opt=0)
    model, _ = export(g, calibrated(g))
    cats = _concats(model)
    # unit 3 reads (x0, x2): no earlier read is a prefix of it, so it joins the stored values
    assert cats["block1.unit3.cat"] == ("conv1", "block1.unit2.conv1")
    # the block output (x0, x1, x2, x3, x4) extends unit 2's (x0, x1)
    assert cats["block1.cat"] == ("block1.unit2.cat", "block1.unit2.conv1", "block1.unit3.conv1", "block1.unit4.conv1")


def test_an_opt1_graph_exports_as_its_opt0_graph():
    """The export plans the rewritten graph itself: a planned input's stale plan is dropped first."""
    kw = {"depth": 16, "k": 4}
    g0, g1 = (netdsl.compile_spec("densenet_bc100_k12", opt=o, **kw) for o in (0, 1))
    m = calibrated(g0)
    (a, ra), (b, rb) = (export(g, m) for g in (g0, g1))
    assert ra == rb and [n.name for n in a.graph.node] == [n.name for n in b.graph.node]
    assert "buffer_plans" in g1.graph and g1.graph["planned"]  # the caller's graph is untouched
