"""netdsl viz: rendered graphviz/matplotlib files checked against hand-written connection sets."""

import struct
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from netdsl.api import build_model, compile_spec
from netdsl.cli import main
from netdsl.viz.matrix import READ, SKIPPED, UNAVAILABLE, block_matrices, connectivity_matrix, weight_matrix
from netdsl.viz.model import block_view

from helpers import ROOT, SPECS, compiled

SVG = "{http://www.w3.org/2000/svg}"
DENSENET_BC = str(ROOT / "specs" / "densenet_bc.net")
DENSE2NET = str(ROOT / "specs" / "dense2net.net")
SEQRESNET = str(ROOT / "specs" / "seqresnet.net")

# One small block per pattern, and the connection set of each written out by hand from the
# papers' definitions (not computed by netdsl).
BLOCKS = {
    "dense": (
        "conv(4, 3); block(4, dense) { bn; relu; conv(2, 3) }",
        {1: (0,), 2: (0, 1), 3: (0, 1, 2), 4: (0, 1, 2, 3)},
    ),
    # SparseNet: the far farthest and near nearest of x_0..x_{i-1}
    "path": (
        "conv(4, 3); block(5, path(far=1, near=1)) { conv(2, 3) }",
        {1: (0,), 2: (0, 1), 3: (0, 2), 4: (0, 3), 5: (0, 4)},
    ),
    # WSeqConv: a 12-channel input is the groups x_-2, x_-1, x_0 of the 4-channel unit width
    "window": ("conv(12, 3); block(3, window(2)) { conv(4, 3) }", {1: (-1, 0), 2: (0, 1), 3: (1, 2)}),
    # Res2Net: subsets x_1..x_4 are indexed -3..0; y_i = K_i(x_i + y_{i-1}) for i > 2
    "split": ("conv(8, 3); block(split(4)) { conv(channels, 3) }", {2: (-2,), 3: (-1, 2), 4: (0, 3)}),
    "rule": (
        "conv(4, 3); block(5, rule(j == 0 or i - j == 2)) { conv(2, 3) }",
        {1: (0,), 2: (0,), 3: (0, 1), 4: (0, 2), 5: (0, 3)},
    ),
}


def spec_text(body: str) -> str:
    return f"network t() {{\n    input(3, 8, 8)\n    {body}\n    gap\n    fc: linear(3)\n}}\n"


def parse_svg(path):
    root = ET.parse(path).getroot()
    items = []
    for g in root.iter(f"{SVG}g"):
        classes = g.get("class", "").split()
        title = g.find(f"{SVG}title")
        if classes and classes[0] in ("node", "edge"):
            items.append((classes, title.text if title is not None else None, [t.text for t in g.iter(f"{SVG}text")]))
    return items


def node_id(j: int) -> str:
    return f"block1/x{j}" if j <= 0 else f"block1.unit{j}"


@pytest.mark.parametrize("pattern", ["dense", "path", "window", "split"])
def test_block_svg_has_one_node_per_unit_and_one_edge_per_connection(pattern, write_spec, tmp_path):
    body, expected = BLOCKS[pattern]
    out = tmp_path / "g.svg"
    assert main(["viz", str(write_spec(spec_text(body))), "-o", str(out)]) == 0
    items = parse_svg(out)
    units = sorted(t for c, t, _ in items if c == ["node", "unit"])
    assert units == sorted(f"block1.unit{i}" for i in expected)
    edges = sorted(t for c, t, _ in items if c == ["edge", "connection"])
    assert edges == sorted(f"{node_id(j)}->block1.unit{i}" for i, reads in expected.items() for j in reads)
    features = sorted(t for c, t, _ in items if c == ["node", "feature"])
    # every input group is drawn: read by a unit or part of the output (output=all; y_1 = x_1 of split)
    lowest = {"window": -2, "split": -3}.get(pattern, 0)
    assert features == sorted(f"block1/x{j}" for j in range(lowest, 1))


def test_dropped_connections_are_drawn_separately(write_spec, tmp_path):
    body, expected = BLOCKS["path"]
    out = tmp_path / "g.svg"
    assert main(["viz", str(write_spec(spec_text(body))), "--dropped", "-o", str(out)]) == 0
    dropped = sorted(t for c, t, _ in parse_svg(out) if c == ["edge", "dropped"])
    assert dropped == sorted(
        f"block1.unit{j}->block1.unit{i}" for i, reads in expected.items() for j in range(0, i) if j not in reads
    )


def test_chain_of_plain_ops_is_one_node_and_flow_edges_join_the_blocks(write_spec, tmp_path):
    body, _ = BLOCKS["dense"]
    out = tmp_path / "g.svg"
    assert main(["viz", str(write_spec(spec_text(body))), "-o", str(out)]) == 0
    items = parse_svg(out)
    plain = sorted(t for c, t, _ in items if c == ["node", "plain"])
    assert plain == ["conv1", "gap1", "input"]  # gap1 .. fc merged into one node
    flows = sorted(t for c, t, _ in items if c == ["edge", "flow"])
    assert flows == ["block1/out->gap1", "conv1->block1/x0", "input->conv1"]
    outputs = sorted(t for c, t, _ in items if c == ["edge", "output"])
    assert outputs == sorted(f"{node_id(j)}->block1/out" for j in range(0, 5))


def test_densenet_bc_250_collapses_each_block_and_bundles_every_connection(tmp_path):
    graph = compile_spec(DENSENET_BC, depth=250, k=24)
    view = block_view(graph)  # default: at most 8 units drawn per block
    n = (250 - 4) // 6  # 41 units per dense block
    assert [b.name for b in graph.graph["blocks"]] == ["block1", "block2", "block3"]
    assert sum(1 for v in view.nodes if v.kind == "unit") == 3 * 8
    collapsed = [v.id for v in view.nodes if v.kind == "collapsed"]
    assert collapsed == ["block1/units5-37", "block2/units5-37", "block3/units5-37"]
    # every connection of the 41-unit dense blocks is still counted: in a bundle, or among the
    # 33 collapsed units (unit i of 5..37 reads i - 5 of the others: 0 + 1 + .. + 32 = 528)
    assert [v.inside for v in view.nodes if v.kind == "collapsed"] == [528] * 3
    assert sum(e.count for e in view.edges if e.kind == "connection") + 3 * 528 == 3 * n * (n + 1) // 2
    # x0 -> the collapsed units 5..37 is one edge standing for 33 connections
    assert [e.count for e in view.edges if (e.src, e.dst) == ("block1/x0", "block1/units5-37")] == [33]
    out = tmp_path / "d250.svg"
    assert main(["viz", DENSENET_BC, "--set", "depth=250", "--set", "k=24", "-o", str(out)]) == 0
    items = parse_svg(out)
    assert sum(1 for c, _, _ in items if c == ["node", "unit"]) == 24
    labels = [txt for c, t, txt in items if c == ["edge", "connection"] and t == "block2/x0->block2/units5-37"]
    assert labels == [["x33"]]


def test_huge_layouts_are_refused_before_running_dot(tmp_path, capsys):
    out = tmp_path / "all.svg"
    argv = ["viz", DENSENET_BC, "--set", "depth=250", "--max-units", "0", "-o"]
    assert main(argv + [str(out)]) == 2
    assert "graphviz would need minutes" in capsys.readouterr().err and not out.exists()
    assert main(argv + [str(tmp_path / "all.dot")]) == 0  # the source needs no layout
    assert main(["viz", DENSENET_BC, "--level", "op", "-o", str(out)]) == 2  # 758 op edges
    assert "graphviz would need minutes" in capsys.readouterr().err and not out.exists()
    assert main(argv[:4] + ["--level", "op", "-o", str(out)]) == 2  # depth 250: 876 ops
    assert "too many to draw" in capsys.readouterr().err and not out.exists()
    assert (tmp_path / "all.dot").read_text().count("class=connection") == 3 * 41 * 42 // 2


def test_many_input_groups_collapse_into_one_node(write_spec):
    # a 64-channel input of a width-4 window block is 16 groups x_-15 .. x_0
    graph = compile_spec(write_spec(spec_text("conv(64, 3); block(3, window(2)) { conv(4, 3) }")))
    view = block_view(graph, max_units=8)
    features = [v.id for v in view.nodes if v.kind == "feature"]
    assert features == [f"block1/x{j}" for j in (-15, -14, -13, -12, -3, -2, -1, 0)]
    edges = {(e.src, e.dst, e.kind): e.count for e in view.edges}
    assert edges[("conv1", "block1/x-11..x-4", "flow")] == 8
    assert edges[("block1/x-11..x-4", "block1/out", "output")] == 8
    assert sum(c for (s, d, k), c in edges.items() if k == "connection") == 6
    assert view.clusters["block1"] == "block1: window(2), 3 units (input groups x-11..x-4 collapsed)"


def test_max_units_zero_draws_every_unit():
    graph = compile_spec(DENSENET_BC, depth=40)
    view = block_view(graph, max_units=0)
    assert sum(1 for v in view.nodes if v.kind == "unit") == 3 * 6
    assert all(e.count == 1 for e in view.edges)
    assert sum(1 for e in view.edges if e.kind == "connection") == 3 * 21


def test_one_block_of_a_nested_spec_is_drawn_with_its_neighbours(tmp_path):
    out = tmp_path / "b.svg"
    # Dense2Net: block 1 is the split block inside the first unit of the first dense block
    assert main(["viz", DENSE2NET, "--set", "blocks=[2,2]", "--block", "1", "-o", str(out)]) == 0
    items = parse_svg(out)
    graph = compile_spec(DENSE2NET, blocks="[2,2]")
    inner = graph.graph["blocks"][0]
    assert inner.pattern.startswith("split")
    assert sorted(t for c, t, _ in items if c == ["node", "unit"]) == sorted(u.scope for u in inner.units)
    assert sum(1 for c, _, _ in items if c == ["edge", "connection"]) == inner.connection_count
    context = sorted(t for c, t, _ in items if c == ["node", "context"])
    assert context == sorted({inner.input} | set(graph.successors(inner.output)))


def test_op_level_has_every_op_and_shapes_on_edges(write_spec, tmp_path):
    body, _ = BLOCKS["dense"]
    path = write_spec(spec_text(body))
    out = tmp_path / "op.svg"
    assert main(["viz", str(path), "--level", "op", "-o", str(out)]) == 0
    graph = compile_spec(path)
    items = parse_svg(out)
    ops = sorted(t for c, t, _ in items if c[0] == "node" and c[1] == "op")
    assert ops == sorted(graph.nodes)
    edges = {t: txt for c, t, txt in items if c[0] == "edge"}
    assert len(edges) == graph.number_of_edges()
    # each producer's C x H x W is written once, on its first edge
    for n in graph.nodes:
        labels = [txt for t, txt in edges.items() if t.startswith(n + "->") and txt]
        want = [["x".join(map(str, graph.nodes[n]["shape"]))]] if graph.out_degree(n) else []
        assert labels == want, n
    assert edges["conv1->block1.unit1.bn1"] == ["4x8x8"]
    assert edges["block1.unit3.conv1->block1.unit4.cat"] == ["2x8x8"]
    assert edges["block1.unit3.conv1->block1.cat"] == []
    # the concat plan, when it ran: one 'stores' node per producer it placed in a buffer
    stores = sorted(t for c, t, _ in items if c[0] == "node" and "stores" in c)
    assert stores and stores == sorted(n for n, d in graph.nodes(data=True) if d.get("stores"))
    conv1 = next(txt for c, t, txt in items if c[0] == "node" and t == "conv1")
    buf, a, b = graph.nodes["conv1"]["stores"][0]
    assert f"writes {buf}[{a}:{b}]" in conv1
    # at opt=0 no plan ran: no plan annotations
    assert main(["viz", str(path), "--level", "op", "--opt", "0", "-o", str(out)]) == 0
    assert not [c for c, _, _ in parse_svg(out) if "stores" in c or any(k.startswith("read") for k in c)]


def test_dot_output_is_the_source(write_spec, tmp_path):
    out = tmp_path / "g.dot"
    assert main(["viz", str(write_spec(spec_text(BLOCKS["window"][0]))), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("digraph t {")
    assert text.count("class=connection") == 6


@pytest.mark.parametrize("pattern", sorted(BLOCKS))
def test_matrix_cells_are_the_connection_sets(pattern, write_spec):
    body, expected = BLOCKS[pattern]
    graph = compile_spec(write_spec(spec_text(body)))
    (m,) = block_matrices(graph)
    assert m.reads() == expected
    for r, i in enumerate(m.rows):
        for c, j in enumerate(m.cols):
            want = UNAVAILABLE if j >= i else (READ if j in expected[i] else SKIPPED)
            assert m.mask[r, c] == want, (i, j)


def test_matrix_equals_ir_for_every_bundled_spec():
    for spec in SPECS:
        graph = compiled(spec)  # shared with test_plan_memory's loop over the same graphs
        for b in graph.graph["blocks"]:
            m = connectivity_matrix(b)
            assert m.reads() == b.connection_sets(), (spec.name, b.name)
            assert int((m.mask == READ).sum()) == b.connection_count


def png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_matrix_png_has_the_requested_size(write_spec, tmp_path):
    out = tmp_path / "m.png"
    spec = write_spec(spec_text(BLOCKS["window"][0]))
    assert main(["viz", str(spec), "--style", "matrix", "--size", "640x480", "-o", str(out)]) == 0
    assert png_size(out) == (640, 480)
    # several panels, one per block
    argv = ["viz", DENSENET_BC, "--set", "depth=16", "--style", "matrix", "--size", "333x222", "-o", str(out)]
    assert main(argv) == 0
    assert png_size(out) == (333, 222)


@pytest.mark.slow
def test_matrix_png_of_nine_window_blocks_has_the_requested_size(tmp_path):
    out = tmp_path / "m.png"
    assert main(["viz", SEQRESNET, "--style", "matrix", "--size", "333x222", "-o", str(out)]) == 0
    assert png_size(out) == (333, 222)


# Unit 2 of this block reads x_0 (the 4-channel stem) and x_1 (unit 1's 2 channels):
# its first conv, block1.unit2.conv1, has 6 input channels, [0:4] from x_0 and [4:6] from x_1.
HEAT = "conv(4, 3); block(3, dense) { bn; relu; conv(2, 1); bn; relu; conv(2, 3) }"


def test_weight_heat_map_cells_are_mean_absolute_weights(write_spec, tmp_path):
    spec = write_spec(spec_text(HEAT))
    model = build_model(spec)
    state = model.state_dict()
    w = torch.zeros(2, 6, 1, 1)
    for c in range(6):  # input channel c holds +-(c + 1): signs must not cancel
        w[0, c] = c + 1
        w[1, c] = -(c + 1)
    state["block1.unit2.conv1.weight"] = w
    ckpt = tmp_path / "raw.pt"
    torch.save(state, ckpt)
    graph = compile_spec(spec)
    from netdsl.viz.weights import load_weights

    m = weight_matrix(graph, graph.graph["blocks"][0], load_weights(ckpt))
    row = m.rows.index(2)
    assert m.weights[row, m.cols.index(0)] == pytest.approx((1 + 2 + 3 + 4) / 4)  # 2.5
    assert m.weights[row, m.cols.index(1)] == pytest.approx((5 + 6) / 2)  # 5.5
    assert np.isnan(m.weights[row, m.cols.index(2)])  # x_2 is not available to unit 2
    # unit 1 reads only x_0: the mean |w| of its whole first conv
    w1 = state["block1.unit1.conv1.weight"].abs().double().mean().item()
    assert m.weights[m.rows.index(1), 0] == pytest.approx(w1)
    # a training checkpoint with the state_dict under "model" renders through the CLI
    wrapped = tmp_path / "train.pt"
    torch.save({"model": {"module." + k: v for k, v in state.items()}, "epoch": 3}, wrapped)
    assert load_weights(wrapped).keys() == load_weights(ckpt).keys()
    out = tmp_path / "heat.png"
    assert main(["viz", str(spec), "--weights", str(wrapped), "--size", "400x300", "-o", str(out)]) == 0
    assert png_size(out) == (400, 300)


def test_heat_map_of_a_split_block_says_why_it_has_no_cells(write_spec):
    graph = compile_spec(write_spec(spec_text(BLOCKS["split"][0])))
    (m,) = block_matrices(graph, state={})
    assert m.weights is None and "split block" in m.note


def test_bad_requests_exit_2_and_leave_no_file(write_spec, tmp_path, capsys):
    spec = str(write_spec(spec_text(HEAT)))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    other = tmp_path / "other.pt"
    torch.save({"stem.weight": torch.zeros(1)}, other)
    cases = [
        (["--block", "7"], "no block '7'"),
        (["--style", "matrix", "-o", str(tmp_path / "x.dot")], "matrices render as png, svg, pdf"),
        (["-o", str(tmp_path / "x.txt")], "graphs render as svg, png, pdf, dot"),
        (["--weights", str(tmp_path / "missing.pt")], "no checkpoint file"),
        (["--weights", str(junk)], "cannot read"),
        (["--weights", str(other)], "the checkpoint has no 'block1.unit1.conv1.weight'"),
        (["--size", "12xab", "--style", "matrix"], "--size expects WIDTHxHEIGHT"),
        (["--style", "matrix", "--max-nodes", "3"], "more than 3 ops"),
        (["--weights", str(other), "--style", "graph"], "needs --style matrix"),
    ]
    for extra, message in cases:
        out = tmp_path / "out.png"
        argv = ["viz", spec, "-o", str(out)] + extra
        assert main(argv) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
        assert not out.exists() and not (tmp_path / "x.dot").exists() and not (tmp_path / "x.txt").exists()
    plain = write_spec("network p() {\n    input(3, 8, 8)\n    conv(4, 3)\n}\n", "plain.net")
    assert main(["viz", str(plain), "--style", "matrix", "-o", str(tmp_path / "m.png")]) == 2
    assert "has no block to draw as a matrix" in capsys.readouterr().err
