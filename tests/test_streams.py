"""Named streams (``stream(name)``, ``block(..., stream=name)``; docs/language.md "Streams"): what
the IR records, the function against a hand-written forward, the generated loop, torch.compile,
ONNX and the drawing. The planned-vs-naive check is in tests/test_plan_equivalence.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.errors import IRError
from netdsl.ir import lint
from netdsl.viz.model import block_view

SPEC = Path(__file__).resolve().parent.parent / "docs" / "images" / "specs" / "streams.net"


def _block(graph):
    (b,) = graph.graph["blocks"]
    return b


def test_ir_records_the_streams():
    g = netdsl.compile_spec(SPEC)
    lint(g)
    raw, side = _block(g).streams
    assert (raw.name, raw.input, raw.output) == ("raw", "stem", "block1.raw")
    assert raw.slices == tuple(f"block1.unit{i}.raw" for i in range(1, 5))
    assert [g.nodes[s]["attrs"]["start"] for s in raw.slices] == [0, 4, 8, 12]  # 16 channels, 4 per unit
    assert all(g.nodes[p]["kind"] == "add" for p in raw.pieces)
    assert (side.input, side.slices, side.output) == (None, (None,) * 4, "block1.side")
    assert g.nodes["block1.side"]["inputs"] == side.pieces
    assert g.nodes["block1.side"]["shape"] == (8, 16, 16)


def test_lint_checks_the_stream_record():
    g = netdsl.compile_spec(SPEC)
    b = _block(g)
    raw = b.streams[0]
    g.graph["blocks"][0] = dataclasses.replace(b, streams=(dataclasses.replace(raw, pieces=raw.pieces[::-1]),))
    with pytest.raises(IRError, match="not the concat of its pieces"):
        lint(g)
    g.graph["blocks"][0] = dataclasses.replace(b, streams=(dataclasses.replace(raw, slices=raw.slices[::-1]),))
    with pytest.raises(IRError, match=r"unit 1 sees 'block1.unit4.raw', not channels \[0, 4\)"):
        lint(g)


def test_unread_stream_output_is_dropped(write_spec):
    spec = write_spec(
        "network t() { input(3, 8, 8); conv(8, 3); stream(raw); relu\n"
        "block(2, dense, output=new, stream=raw) { conv(4, 3); add(raw); stream(raw); relu } }"
    )
    g = netdsl.compile_spec(spec)
    lint(g)
    (st,) = _block(g).streams
    assert st.output is None and "block1.raw" not in g


def _hand_forward(model, x):
    """streams.net's forward written out from the spec text, reading the model's modules."""
    b = model.block1
    raw = model.stem(x)
    feats = [torch.relu(model.bn1(raw))]
    sums, sides = [], []
    for i in range(4):
        u = b[f"unit{i + 1}"]
        y = torch.relu(u.bn2(u.conv1(torch.relu(u.bn1(torch.cat(feats, 1))))))
        y = u.conv2(y) + raw[:, 4 * i : 4 * i + 4]
        sums.append(y)
        h = torch.relu(u.bn3(y))
        sides.append(u.conv3(h))
        feats.append(h)
    y = torch.cat([torch.cat(feats[1:], 1) + torch.cat(sums, 1), torch.cat(sides, 1)], 1)
    y = F.adaptive_avg_pool2d(torch.relu(model.bn2(y)), 1).flatten(1)
    return model.fc(y)


@pytest.mark.parametrize("opt", [0, 1])
def test_function_equals_the_hand_written_forward(opt):
    model = netdsl.build_model(SPEC, opt=opt).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for train in (False, True):
        model.train(train)
        with torch.no_grad():
            torch.testing.assert_close(model(x), _hand_forward(model, x), rtol=1e-10, atol=1e-12)


def test_generated_code_loops_over_the_units():
    src = netdsl.torch_source(SPEC)
    assert "def forward(self, x, s0):" in src  # a unit takes its slice of the carried stream
    assert "return h, add1, conv3" in src  # ... and returns its output and its two pieces
    # one loop per branch (autograd: recomputed heads; inference: the plan's buffer), each unit
    # handed its slice of the stem's output and its pieces collected
    assert src.count("y, raw_piece, side_piece = unit(") == 2
    assert src.count("stem[:, raw_start:raw_stop]") == 2
    assert src.count("side = torch.cat(side_pieces, 1)") == 2


@pytest.mark.slow
def test_no_graph_breaks():
    from test_codegen import _assert_no_graph_breaks

    _assert_no_graph_breaks(netdsl.build_model(SPEC))


def test_onnxruntime_equals_torch():
    from test_onnx_equivalence import assert_matches_torch

    assert_matches_torch(netdsl.compile_spec(SPEC, opt=0))


def test_block_drawing_shows_the_streams():
    view = block_view(netdsl.compile_spec(SPEC))
    nodes = {n.id: n for n in view.nodes}
    assert nodes["block1/raw"].kind == "stream" and nodes["block1/side"].kind == "stream"
    streams = {(e.src, e.dst) for e in view.edges if e.kind == "stream"}
    assert {("stem", f"block1.unit{i}") for i in range(1, 5)} <= streams  # raw enters every unit
    assert {(f"block1.unit{i}", "block1/side") for i in range(1, 5)} <= streams  # every unit's piece
    assert {(e.src, e.dst) for e in view.edges if e.kind == "flow"} >= {("block1/raw", "add1")}


IRREGULAR = """
network irr() {
    input(3, 8, 8)
    conv(16, 3); stream(raw); bn; relu
    block(4, dense, output=new, stream=raw) {
        conv(4, 3)
        if unit % 2 == 0 { add(raw); stream(raw) }
        bn; relu
    }
    conv(16, 1)
    block(4, window(4), output=new, width=4, stream=raw) { conv(4, 3); if unit > 2 { add(raw) }; bn; relu }
    add(raw)
    gap
    linear(10)
}
"""
ONE_UNIT = """
network one() {
    input(3, 8, 8)
    conv(8, 3); stream(raw); bn; relu
    block(1, dense, output=new, stream=raw) { conv(8, 3); add(raw); stream(raw); bn; relu }
    block(1, dense, output=new, stream=raw) { conv(8, 3); add(raw); stream(raw); bn; relu }
    add(raw)
    gap
    linear(10)
}
"""


@pytest.mark.parametrize("text", [IRREGULAR, ONE_UNIT], ids=["irregular", "one_unit"])
def test_edge_cases_planned_equals_naive(write_spec, text):
    """Units that differ (some pass their slice on unchanged: written out op by op) and one-unit
    blocks (the unit sees the whole stream): lint-clean, and the planned module equals the naive."""
    spec = write_spec(text)
    lint(netdsl.compile_spec(spec))
    planned = netdsl.build_model(spec).double()
    naive = netdsl.build_model(spec, opt=0).double()
    naive.load_state_dict(planned.state_dict())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for train in (False, True):
        planned.train(train)
        naive.train(train)
        torch.testing.assert_close(planned(x), naive(x), rtol=1e-10, atol=1e-12)
