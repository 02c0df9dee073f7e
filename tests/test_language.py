"""Language constructs lower to exactly the graph they describe."""

import pytest
import torch

import netdsl
from netdsl.errors import SpecNameError, SpecValueError


def compile_text(write_spec, text, **over):
    return netdsl.compile_spec(write_spec(text), check=True, **over)


def test_params_let_arithmetic_and_override(write_spec):
    src = "network t(k=4, theta=0.5) { input(3, 8, 8); let w = 2 * k + k // 3; conv(w); conv(floor(theta * channels)) }"
    g = compile_text(write_spec, src)
    assert g.nodes["conv1"]["shape"] == (9, 8, 8) and g.nodes["conv2"]["shape"] == (4, 8, 8)
    g = compile_text(write_spec, src, k=6)
    assert g.nodes["conv1"]["shape"] == (14, 8, 8) and g.nodes["conv2"]["shape"] == (7, 8, 8)


def test_for_if_else_repeat(write_spec):
    g = compile_text(
        write_spec,
        """
network t(widths=[4, 6, 8]) {
    input(3, 8, 8)
    for w in widths { if w == 6 { conv(w, 1) } else if w > 6 { conv(w, 3) } else { conv(w, 5) } }
    repeat(2) { relu }
}""",
    )
    kernels = [g.nodes[f"conv{n}"]["attrs"]["kernel"] for n in (1, 2, 3)]
    assert kernels == [5, 1, 3]
    assert g.graph["output"] == "relu2"


def test_template_scopes_and_defaults(write_spec):
    g = compile_text(
        write_spec,
        """
def unit(out, k=3) { bn; relu; conv(out, k) }
network t() { input(3, 8, 8); unit(4); unit(6, k=1); a: unit(2) }""",
    )
    assert {"unit1.conv1", "unit2.conv1", "a.conv1"} <= set(g.nodes)
    assert g.nodes["unit2.conv1"]["attrs"]["kernel"] == 1


def test_labels_use_and_elementwise_ops(write_spec):
    # SparseNet's attention form: H(x) + H(x) * F(x)
    g = compile_text(
        write_spec,
        """
network t() {
    input(8, 4, 4)
    h: conv(8, 3)
    use(input)
    p: gap
    conv(8, 1); relu
    concat(p)
    conv(8, 1); sigmoid
    mul(h)
    add(h)
}""",
    )
    assert g.nodes["concat1"]["inputs"] == ("relu1", "p")
    assert g.nodes["concat1"]["shape"] == (16, 1, 1)
    assert g.nodes["mul1"]["inputs"] == ("sigmoid1", "h")
    assert g.nodes["mul1"]["shape"] == (8, 4, 4)
    assert g.nodes["add1"]["inputs"] == ("mul1", "h")


def test_residual_and_parallel(write_spec):
    g = compile_text(
        write_spec,
        """
network t() {
    input(8, 8, 8)
    residual { conv(8); bn; relu }
    parallel(add) { branch { conv(16, stride=2) } shortcut: branch { conv(16, 1, stride=2) } }
}""",
    )
    assert g.nodes["residual1.add"]["inputs"] == ("residual1.relu1", "input")
    assert g.nodes["parallel1.add"]["inputs"] == ("parallel1.branch1.conv1", "parallel1.shortcut.conv1")
    assert g.nodes["parallel1.add"]["shape"] == (16, 4, 4)


def test_split_stage_with_bypass(write_spec):
    g = compile_text(
        write_spec,
        """
network t() {
    input(8, 8, 8)
    block(split(4), stage=true, bypass=avgpool(3, 2, pad=1)) { conv(channels, 3, stride=2) }
}""",
    )
    (b,) = g.graph["blocks"]
    assert b.connection_sets() == {2: (-2,), 3: (-1,), 4: (0,)}  # no hierarchical add in a stage block
    assert g.nodes["block1.cat"]["shape"] == (8, 4, 4)
    assert g.nodes["block1.bypass.avgpool1"]["inputs"] == ("block1.x1",)


def test_include_and_unit_naming(write_spec, tmp_path):
    (tmp_path / "lib.net").write_text("def two(k) { conv(k, 1); conv(k) }")
    g = compile_text(write_spec, 'include "lib.net"\nnetwork t() { input(4, 4, 4); block(2, dense) { two(4) } }')
    assert {"block1.unit1.conv1", "block1.unit2.conv2"} <= set(g.nodes)


def test_recursive_template_is_error(write_spec):
    with pytest.raises(SpecValueError, match="recursive template: a -> b -> a") as e:
        compile_text(write_spec, "def a() { b } def b() { a } network t() { input(3, 4, 4); a }")
    assert e.value.span.line == 1


def test_duplicate_label_is_error(write_spec):
    with pytest.raises(SpecNameError, match="already used"):
        compile_text(write_spec, "network t() { input(3, 4, 4); x: conv(4); x: conv(4) }")


def test_custom_rule_spec_forward_matches_hand_model(write_spec):
    """A rule block against a hand-written PyTorch model with the same weights."""
    p = write_spec("network t() { input(2, 4, 4); block(4, rule(j == 0 or i - j == 2)) { conv(2, 1, bias=true) } }")
    m = netdsl.build_model(p).eval()
    convs = [m.block1._modules[f"unit{i}"].conv1 for i in range(1, 5)]
    x = torch.randn(3, 2, 4, 4)
    feats = [x]
    for i, conv in enumerate(convs, start=1):
        reads = [j for j in range(i) if j == 0 or i - j == 2]
        feats.append(conv(torch.cat([feats[j] for j in reads], 1)))
    with torch.no_grad():
        assert torch.allclose(m(x), torch.cat(feats, 1), atol=1e-6)


def test_block_reading_the_network_input_planned_equals_naive(write_spec):
    """The planned executor stores the network input itself into the block's buffer."""
    p = write_spec("network t() { input(2, 4, 4); block(4, rule(j == 0 or i - j == 2)) { bn; relu; conv(2, 1) } }")
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    grads = []
    for opt in (0, 1):
        m = netdsl.build_model(p, opt=opt, seed=2).double().train()
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        y.square().sum().backward()
        grads.append((y.detach(), xi.grad, [q.grad for q in m.parameters()]))
    (y0, gx0, gp0), (y1, gx1, gp1) = grads
    assert torch.allclose(y0, y1) and torch.allclose(gx0, gx1)
    assert all(torch.allclose(a, b) for a, b in zip(gp0, gp1, strict=True))
