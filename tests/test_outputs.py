"""Several named outputs (``output(a, b, ...)``, docs/language.md "Outputs"): the IR records them
in order, every pass keeps each one's value observable, the torch module returns them as a tuple
and the ONNX model has one graph output per name, which onnxruntime computes as torch does.
A network without ``output(...)`` is exactly as before."""

import json

import numpy as np
import onnx
import pytest
import torch

import netdsl
from netdsl.backends.onnx.export import export
from netdsl.backends.torch import codegen as torch_codegen
from netdsl.cli import main
from netdsl.ir import lint
from netdsl.ir.graph import graph_outputs, output_nodes
from netdsl.onnx_runtime import run_all, session
from netdsl.passes import drop_inference_noops

# Heads on two scales, an output read further on (a: its BN and ReLU follow), an output that is a
# block, and one behind a dropout (dropped at inference).
HEADS = """
network heads(k=4) {
    input(3, 16, 16)
    stem: conv(8, 3); bn; relu
    a: conv(k, 3)
    bn; relu
    d: dropout(0.1)
    use(stem)
    maxpool(2)
    b: block(2, dense) { bn; relu; conv(4, 3) }
    gap
    c: linear(5)
    output(c, a, b, d)
}
"""


def _calibrated(model, x):
    """Non-trivial BatchNorm statistics (one batch in train mode, cumulative average)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def test_outputs_are_recorded_in_order(write_spec):
    g = netdsl.compile_spec(write_spec(HEADS))
    lint(g)
    assert graph_outputs(g) == (("c", "c"), ("a", "a"), ("b", "b.cat"), ("d", "d"))
    assert g.graph["output"] == "c" and output_nodes(g) == {"c", "a", "b.cat", "d"}


def test_forward_returns_a_tuple_of_the_named_values(write_spec):
    model = netdsl.build_model(write_spec(HEADS)).eval()
    assert model.output_names == ("c", "a", "b", "d")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        c, a, b, d = model(x)
        stem = model.stem(x)
        want_a = model.a(torch.relu(model.bn1(stem)))  # 'a' is the conv's value: the ReLU after it is not in place
        assert torch.equal(a, want_a)
        assert torch.equal(d, torch.relu(model.bn2(want_a)))
    assert c.shape == (2, 5) and b.shape == (2, 16, 8, 8)


@pytest.mark.parametrize("opt", [0, 1])
def test_onnx_has_one_output_per_name_and_agrees_with_torch(write_spec, opt):
    spec = write_spec(HEADS)
    g = netdsl.compile_spec(spec, opt=opt)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model = _calibrated(netdsl.build_model(spec, opt=opt), x)
    proto, report = export(g, model)
    onnx.checker.check_model(proto, full_check=True)
    assert [o.name for o in proto.graph.output] == ["c", "a", "b", "d"]
    # the stem is read twice and 'a' is an output: no BN folds into them (if bn2 folded into 'a',
    # the ONNX 'a' would be BN(conv), which the comparison below would catch)
    assert (report.folded_bn, report.affine_bn) == (0, 4)
    got = run_all(session(proto.SerializeToString(), device="cpu", threads=1), x.numpy())
    with torch.no_grad():
        want = model(x)
    assert list(got) == ["c", "a", "b", "d"]
    for (name, value), ref in zip(got.items(), want, strict=True):
        assert np.abs(value - ref.numpy()).max() <= 1e-4, name


def test_a_rewrite_that_merges_two_outputs_keeps_both_names(write_spec):
    g = netdsl.compile_spec(write_spec(HEADS))
    out = drop_inference_noops.run(g).graph  # d = dropout(relu): d's value is now the ReLU's
    lint(out)
    assert dict(graph_outputs(out))["d"] == "relu2"
    assert dict(graph_outputs(g))["d"] == "d"  # the input graph is untouched


def test_single_output_networks_are_unchanged(write_spec):
    """Without output(...): no 'outputs' in the IR, forward returns a tensor, ONNX names the output
    after its node; one declared output is a tensor too, named after its label in ONNX."""
    plain = netdsl.compile_spec("densenet_bc100_k12", depth=10, k=4)
    assert "outputs" not in plain.graph and graph_outputs(plain) == (("output", "head1.fc"),)
    assert "output_names" not in torch_codegen.generate(plain)
    proto, _ = export(plain, netdsl.build_model("densenet_bc100_k12", depth=10, k=4))
    assert [o.name for o in proto.graph.output] == ["head1.fc"]
    spec = write_spec("network one() { input(3, 8, 8)\n stem: conv(4, 3); relu\n output(stem) }")
    one = netdsl.compile_spec(spec)
    model = netdsl.build_model(spec)
    assert torch.is_tensor(model(torch.randn(1, 3, 8, 8)))
    proto, _ = export(one, model)
    assert [o.name for o in proto.graph.output] == ["stem"]


def test_cli_shows_the_outputs(write_spec, capsys, tmp_path):
    spec = str(write_spec(HEADS))
    assert main(["summary", spec, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(o["name"], o["shape"]) for o in data["outputs"]] == [
        ("c", [5]),
        ("a", [4, 16, 16]),
        ("b", [16, 8, 8]),
        ("d", [4, 16, 16]),
    ]
    assert main(["viz", spec, "-o", str(tmp_path / "v.dot")]) == 0
    dot = (tmp_path / "v.dot").read_text()
    assert sum("class=result" in line for line in dot.splitlines() if "->" not in line) == 4
    assert main(["report", spec, "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert all(f"<span>output {name}</span>" in page for name in ("c", "a", "b", "d"))
    onnx_path = tmp_path / "h.onnx"
    assert main(["compile", spec, "--target", "onnx", "-o", str(onnx_path)]) == 0
    capsys.readouterr()
    assert main(["run", str(onnx_path), "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["outputs"]) == ["c", "a", "b", "d"]


@pytest.mark.slow  # importing the training stack (Lightning) takes seconds
def test_train_refuses_a_multi_output_network_before_any_work(write_spec, capsys, tmp_path):
    assert main(["train", str(write_spec(HEADS)), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "'heads' has 4 outputs (c, a, b, d); netdsl train trains and scores classifiers" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_the_language_reference_example_has_its_three_outputs(write_spec):
    from helpers import ROOT

    text = (ROOT / "docs" / "language.md").read_text()
    example = text.split("## Outputs", 1)[1].split("```\n", 2)[1]
    g = netdsl.compile_spec(write_spec(example))
    assert [(name, g.nodes[node]["shape"]) for name, node in graph_outputs(g)] == [
        ("logits", (10,)),
        ("fine_box", (4, 16, 16)),
        ("coarse_box", (4, 8, 8)),
    ]


@pytest.mark.parametrize(
    ("outputs_value", "message"),
    [
        ((), "non-empty tuple"),
        ((("c", "c"), ("c", "a")), "'c' is used twice"),
        ((("c", "c"), ("x", "nowhere")), "not a computed node"),
        ((("c", "c"), ("x", "input")), "not a computed node"),
        ((("a", "a"), ("c", "c")), "is not the first declared output"),
        ((("c", "c"), ("not an id", "a")), "not an identifier"),
    ],
)
def test_lint_checks_the_declared_outputs(write_spec, outputs_value, message):
    from netdsl.errors import IRError

    g = netdsl.compile_spec(write_spec(HEADS))
    g.graph["outputs"] = outputs_value
    with pytest.raises(IRError, match=message):
        lint(g)


def test_bench_times_a_training_step_of_a_multi_output_network(write_spec, capsys):
    spec = str(write_spec(HEADS))
    assert main(["bench", spec, "--train", "--batch-size", "2", "--repeats", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    variants = [(r["variant"], r["precision"]) for r in rows]
    assert variants == [(v, p) for p in ("fp32", "bf16") for v in ("naive (--opt 0)", "planned")]
    assert all(r["seconds"] > 0 and r["train_saved_bytes"] > 0 for r in rows)
