"""Connection sets of every pattern against hand-written index sets."""

import pytest

import netdsl
from netdsl.errors import SpecValueError
from netdsl.ir import patterns as P


def test_dense():
    assert P.connections(P.Dense(), 1) == (0,)
    assert P.connections(P.Dense(), 5) == (0, 1, 2, 3, 4)


def test_path_all_while_i_le_far_plus_near():
    p = P.Path(far=2, near=2)
    assert P.connections(p, 1) == (0,)
    assert P.connections(p, 4) == (0, 1, 2, 3)  # i = a+b: all four
    assert P.connections(p, 5) == (0, 1, 3, 4)  # 5 available: drop the middle one
    assert P.connections(p, 9) == (0, 1, 7, 8)


def test_path_study_extremes():
    # SparseNet Fig. 10: 14-0 keeps only the farthest, 0-14 only the nearest.
    assert P.connections(P.Path(far=14, near=0), 20) == tuple(range(14))
    assert P.connections(P.Path(far=0, near=14), 20) == tuple(range(6, 20))
    assert P.connections(P.Path(far=7, near=7), 20) == (0, 1, 2, 3, 4, 5, 6, 13, 14, 15, 16, 17, 18, 19)


def test_window_wider_than_i():
    w = P.Window(4)
    assert P.connections(w, 1) == (0,)
    assert P.connections(w, 3) == (0, 1, 2)  # the window is wider than what exists
    assert P.connections(w, 7) == (3, 4, 5, 6)
    # the block input as three groups x_{-2}, x_{-1}, x_0: the window slides across it
    assert P.connections(w, 1, first=-2) == (-2, -1, 0)
    assert P.connections(w, 2, first=-2) == (-2, -1, 0, 1)
    assert P.connections(w, 3, first=-2) == (-1, 0, 1, 2)


def test_rule():
    r = P.Rule("j < 2 or i - j <= 4", lambda i, j: j < 2 or i - j <= 4)
    assert P.connections(r, 3) == (0, 1, 2)
    assert P.connections(r, 9) == (0, 1, 5, 6, 7, 8)


def test_split_connections():
    assert P.split_connections(4) == {2: (-2,), 3: (-1, 2), 4: (0, 3)}


def _block_sets(write_spec, pattern, units=6, extra=""):
    p = write_spec(f"""
network t() {{
    input(8, 4, 4)
    block({units}, {pattern}{extra}) {{ bn; relu; conv(4, 1) }}
}}""")
    g = netdsl.compile_spec(p, check=True)
    (b,) = g.graph["blocks"]
    return g, b


def test_ir_dense_block_reads_and_concat_order(write_spec):
    g, b = _block_sets(write_spec, "dense")
    assert b.connection_sets() == {i: tuple(range(i)) for i in range(1, 7)}
    agg = g.nodes[b.units[2].aggregate]
    assert agg["kind"] == "concat"
    assert agg["inputs"] == ("input", "block1.unit1.conv1", "block1.unit2.conv1")
    assert g.nodes[b.output]["shape"] == (8 + 6 * 4, 4, 4)


def test_ir_path_block(write_spec):
    _, b = _block_sets(write_spec, "path(far=1, near=2)")
    assert b.connection_sets() == {1: (0,), 2: (0, 1), 3: (0, 1, 2), 4: (0, 2, 3), 5: (0, 3, 4), 6: (0, 4, 5)}


def test_ir_path_total_form(write_spec):
    _, b = _block_sets(write_spec, "path(3)")  # far = 1, near = 2
    assert b.units[5].reads == (0, 4, 5)


def test_ir_window_slides_over_input_groups(write_spec):
    g, b = _block_sets(write_spec, "window(3)", units=4, extra=", output=new")
    # input of 8 channels = two groups of the unit width 4: x_-1, x_0
    assert b.connection_sets() == {1: (-1, 0), 2: (-1, 0, 1), 3: (0, 1, 2), 4: (1, 2, 3)}
    u3 = g.nodes[b.units[2].aggregate]
    first = g.nodes[u3["inputs"][0]]
    assert first["kind"] == "slice" and (first["attrs"]["start"], first["attrs"]["stop"]) == (4, 8)
    assert g.nodes[b.output]["shape"] == (16, 4, 4)  # only the new groups


def test_ir_window_input_not_multiple_is_error(write_spec):
    p = write_spec("network t() { input(6, 4, 4); block(3, window(2)) { conv(4, 1) } }")
    with pytest.raises(SpecValueError, match="split their input into groups of 4 channels, but the input has 6"):
        netdsl.compile_spec(p)


def test_ir_rule_block(write_spec):
    _, b = _block_sets(write_spec, "rule(j == 0 or i - j == 1)")
    assert b.connection_sets() == {1: (0,), 2: (0, 1), 3: (0, 2), 4: (0, 3), 5: (0, 4), 6: (0, 5)}


def test_ir_split_block(write_spec):
    p = write_spec("network t() { input(12, 4, 4); block(split(scale=3)) { conv(channels, 3); bn; relu } }")
    g = netdsl.compile_spec(p, check=True)
    (b,) = g.graph["blocks"]
    assert b.connection_sets() == {2: (-1,), 3: (0, 2)}
    assert g.nodes["block1.unit3.sum"]["inputs"] == ("block1.x3", "block1.unit2.relu1")
    assert g.nodes[b.output]["inputs"] == ("block1.x1", "block1.unit2.relu1", "block1.unit3.relu1")
    assert g.nodes[b.output]["shape"] == (12, 4, 4)


def test_split_scale_not_dividing_width_is_error(write_spec):
    p = write_spec("network t() { input(10, 4, 4); block(split(scale=4)) { conv(channels, 3) } }")
    with pytest.raises(SpecValueError, match="split scale 4 does not divide the width 10") as e:
        netdsl.compile_spec(p)
    assert e.value.span.line == 1 and "2, 5, 10" in e.value.hint


def test_window_below_one_is_error(write_spec):
    p = write_spec("network t() { input(8, 4, 4); block(3, window(0)) { conv(4, 1) } }")
    with pytest.raises(SpecValueError, match="window size must be >= 1"):
        netdsl.compile_spec(p)


def test_output_selection_last_and_add_aggregate(write_spec):
    p = write_spec(
        "network t() {\n input(4, 4, 4)\n block(3, dense, aggregate=add, output=last) { bn; relu; conv(4, 3) }\n}"
    )
    g = netdsl.compile_spec(p, check=True)
    (b,) = g.graph["blocks"]
    assert g.nodes[b.units[2].aggregate]["kind"] == "add"
    assert g.nodes[b.units[2].aggregate]["inputs"] == ("input", "block1.unit1.conv1", "block1.unit2.conv1")
    assert b.output == "block1.unit3.conv1"
