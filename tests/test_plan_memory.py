"""The concat plan's byte figures: a hand computation on a small dense block, zero copies in
planned dense and window blocks, and the training model against autograd's saved tensors."""

import json
import math

import pytest
import torch

from netdsl.api import build_model, compile_spec
from netdsl.backends.torch.bench import allocator, saved_bytes
from netdsl.cli import main
from netdsl.ir.graph import blocks
from netdsl.memory import memory_report

from helpers import SPECS, compiled

SMALL_DENSE = """
network t(classes=2) {
    input(4, 2, 2)
    block(2, dense) { bn; relu; conv(2, 1) }
    gap; flatten
    fc: linear(classes)
}
"""
CH = 2 * 2 * 4  # bytes of one channel of a 2x2 float32 map


def test_summary_memory_matches_hand_computation(write_spec, capsys):
    # x0 = input (4 ch), x1, x2 (2 ch each); unit 2 reads cat(x0, x1) (6 ch); output cat (8 ch).
    assert main(["summary", str(write_spec(SMALL_DENSE)), "--json"]) == 0
    mem = json.loads(capsys.readouterr().out)["memory"]
    block = mem["blocks"]["block1"]
    # copies: naive writes unit2.cat (6 ch) and block1.cat (8 ch); planned writes no concat but
    # stores each feature once into the 8-channel buffer.
    assert block["copy_naive"] == (6 + 8) * CH == 224
    assert block["copy_planned"] == 0
    assert block["store_planned"] == (4 + 2 + 2) * CH
    # training, naive: bn1 saves x0 (4), relu1 its output (4; conv1 saves the same tensor),
    # unit 2's bn1 saves the concat (6) and relu1 its output (6). Outside the block gap (a mean)
    # saves nothing and fc its 8-float input.
    assert block["train_naive"] == (4 + 4 + 6 + 6) * CH == 320
    assert mem["total"]["train_naive"] == 320 + 8 * 4 == 352
    # planned: each unit's BN+ReLU+conv head runs on the block's buffer and is recomputed from it
    # in backward; autograd keeps an alias of the buffer, i.e. its whole storage: x0 (4), x1 (2)
    # and x2 (2, read by no unit, but in the buffer). Saved-tensor hooks measure exactly this plus
    # BatchNorm's statistics (test_training_model_matches_saved_tensors; the model counted 6 channels).
    assert block["train_planned"] == (4 + 2 + 2) * CH
    assert mem["total"]["train_planned"] == 8 * CH + 8 * 4 == 160
    # inference peak, naive: after unit2.bn1 -- x0 4 + x1 2 + cat 6 + bn 6 = 18 channels.
    assert block["infer_naive"] == 18 * CH == 288
    # planned: the buffer (8) + unit 2's fused BN+ReLU output (6) + its conv output before the
    # store (2) = 16 channels.
    assert block["infer_planned"] == 16 * CH == 256


def test_summary_table_shows_memory(write_spec, capsys):
    assert main(["summary", str(write_spec(SMALL_DENSE)), "--opt", "0"]) == 0
    out = capsys.readouterr().out
    assert "concat copies" in out
    row = [line for line in out.splitlines() if "block1" in line][-1]  # the memory table is last
    assert [c.strip() for c in row.split("│")[2:4]] == ["224 B", "0 B"]  # naive, planned copies


def test_planned_dense_and_window_blocks_copy_nothing():
    seen = set()
    for spec in SPECS:
        graph = compiled(spec)  # shared with test_viz's loop over the same graphs
        report = memory_report(graph)
        for b in blocks(graph):
            kind = b.pattern.split("(")[0]
            if kind not in ("dense", "window"):
                continue
            seen.add(kind)
            # a collected stream (block(..., stream=raw), SeqConv's pre-BN stream) is one concat of
            # the units' pieces, outside the block's buffer: its bytes are the only copy left
            streamed = sum(
                4 * math.prod(graph.nodes[s.output]["shape"])
                for s in b.streams
                if s.output is not None and graph.nodes[s.output]["kind"] == "concat"
            )
            assert report["blocks"][b.name]["copy_planned"] == streamed, b.name
            for u in b.units:
                read = graph.nodes[u.aggregate].get("read")
                assert read is None or (read["strategy"] == "view" and len(read["runs"]) == 1), u.aggregate
    assert seen == {"dense", "window"}


def test_small_dense_training_figure_is_measured(write_spec):
    """The hand computation's planned training figure against autograd's saved tensors."""
    spec = write_spec(SMALL_DENSE)
    model = build_model(spec, opt=1)
    measured = saved_bytes(model, torch.randn(2, 4, 2, 2))
    bn_stats = sum(2 * m.num_features * 4 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert measured == memory_report(compile_spec(spec), 2)["total"]["train_planned"] + bn_stats == 2 * 160 + 80


@pytest.mark.parametrize("opt", [0, 1])
def test_training_model_matches_saved_tensors(opt):
    """The model's training figure against autograd's saved tensors (hooks, deduplicated by
    storage). They differ only by BatchNorm's per-channel batch statistics, which the model omits."""
    spec = next(s for s in SPECS if s.stem == "densenet_bc")
    graph = compile_spec(spec, depth=16, k=4)
    model = build_model(spec, depth=16, k=4, opt=opt)
    batch = 4
    measured = saved_bytes(model, torch.randn(batch, 3, 32, 32))
    predicted = memory_report(graph, batch)["total"]["train_planned" if opt else "train_naive"]
    bn_stats = sum(2 * m.num_features * 4 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert predicted <= measured <= predicted + bn_stats


def test_allocator_names_preload_and_malloc_conf(monkeypatch):
    """Benchmark headers name the allocator: the timings depend on it (docs/performance.md)."""
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    assert allocator() == "glibc malloc"
    monkeypatch.setenv("LD_PRELOAD", "/lib/libjemalloc.so.2")
    assert allocator() == "/lib/libjemalloc.so.2"
    monkeypatch.setenv("MALLOC_CONF", "dirty_decay_ms:-1")
    assert allocator() == "/lib/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1"


CONV_FIRST = """
network t(classes=2) {
    input(3, 8, 8)
    conv(8, 3)
    block(3, rule(j == 0 or i - j == 1)) { conv(2, 1); bn; relu; conv(4, 3) }
    gap; flatten
    fc: linear(classes)
}
"""


def test_split_read_into_a_conv_saves_the_concatenation(write_spec):
    """A read the plan splits whose chain is its 1x1 conv alone (HarDNet's units) has no head to
    recompute: the module concatenates the runs and the conv saves that concatenation, as at opt 0.
    (The model counted only the stored features, 4 KiB less than autograd keeps here.)"""
    spec = write_spec(CONV_FIRST)
    graph = compile_spec(spec)
    (read,) = [r for p in graph.graph["buffer_plans"].values() for r in p.reads if r.strategy == "split"]
    assert read.node == "block1.unit3.cat"
    batch = 2
    report = memory_report(graph, batch)["total"]
    assert report["train_planned"] == report["train_naive"]
    model = build_model(spec, opt=1)
    measured = saved_bytes(model, torch.randn(batch, 3, 8, 8))
    bn_stats = sum(2 * m.num_features * 4 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert report["train_planned"] <= measured <= report["train_planned"] + bn_stats


def test_fused_heads_save_the_whole_buffer():
    """SparseNet's heads (BN -> ReLU -> 1x1 conv) run as one autograd Function that saves an alias of
    the block's buffer: autograd keeps the whole buffer's storage, channels no unit reads included
    (a path unit gathers (0, 12) and (16, 24) of a 28-channel buffer). The model counted only the
    stored features the reads cover, 32 KiB per sample under the hooks' figure here."""
    spec = next(s for s in SPECS if s.stem == "sparsenet")
    graph = compile_spec(spec)
    assert any(r.strategy == "gather" for p in graph.graph["buffer_plans"].values() for r in p.reads)
    model = build_model(spec, opt=1)
    batch = 2
    c, h, w = graph.nodes[graph.graph["input"]]["shape"]
    measured = saved_bytes(model, torch.randn(batch, c, h, w))
    predicted = memory_report(graph, batch)["total"]["train_planned"]
    bn_stats = sum(2 * m.num_features * 4 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert predicted <= measured <= predicted + bn_stats
