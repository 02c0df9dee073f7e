"""Shared test data: the bundled specs."""

import copy
import functools
import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.net"))

# ImageNet-sized specs run in tests at this resolution (every bundled architecture allows it),
# passed as the spec's `size` parameter; CIFAR-sized specs run at their own size.
TEST_SIZE = 64


# One bundled spec per structure: the fast suite's per-spec loops (lint/forward/backward, emitted
# source, planned vs naive, onnxruntime vs torch) run these; every other bundled spec runs in
# `pytest -m slow` (``spec_params``). Together they have every block pattern the bundled specs have
# (tests/test_fast_suite.py checks it).
FAST_SPECS = {
    "densenet_bc": "dense",
    "sparsenet": "path (sparse aggregation)",
    "seqresnet": "window (sequential aggregation) and dense",
    "res2net": "split (res2net scales)",
    "dpn": "streams (dual path)",
    "randwire": "graph (random wiring)",
    "custom_rule": "rule (a connectivity rule)",
    "dla": "tree (deep layer aggregation, no block)",
    "dsod300": "detection (several outputs)",
    "fcdensenet": "upsampling (encoder-decoder with skips)",
}


# The most submodules a module traced by torch.compile or torch.export in the fast suite may have
# (tests/conftest.py refuses more; SeqResNet at r=1, the biggest fast representative, has 118).
FAST_TRACE_MAX_MODULES = 120


def spec_params(specs=None, fast=FAST_SPECS) -> list:
    """``SPECS`` (or ``specs``) as parameters with the spec's stem as id: the representatives in
    ``fast`` run in the fast suite, every other one is marked slow (so `pytest -m slow` still runs
    the exhaustive loop)."""
    return [
        pytest.param(p, id=Path(p).stem, marks=() if Path(p).stem in fast else pytest.mark.slow)
        for p in (SPECS if specs is None else specs)
    ]


def _key(value):
    """A hashable form of an override value (lists as tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    return value


_COMPILED: dict = {}


def compiled(target, **over):
    """``netdsl.compile_spec(target, **over)``, compiled once per test run: the same graph object
    for the same arguments, so callers must only read it (tests that change a graph compile their
    own)."""
    import netdsl

    try:
        key = (str(target), _key(over))
        hash(key)
    except TypeError:  # a value the key cannot describe: no caching
        return netdsl.compile_spec(target, **over)
    if key not in _COMPILED:
        _COMPILED[key] = netdsl.compile_spec(target, **over)
    return _COMPILED[key]


def small_overrides(spec, **over) -> dict:
    """Overrides that keep a spec's architecture (with ``over`` applied) but shrink its input for
    quick tests."""
    params = compiled(spec, opt=0, **over).graph["params"]
    size = params.get("size")
    return {"size": TEST_SIZE} if isinstance(size, int) and size > TEST_SIZE else {}


# A preset of every spec file at reduced depth and width (applied on top of the preset's values):
# the fast suite builds and runs these; the slow suite every preset at full size.
REDUCED = {
    "densenet40_k12": {"depth": 10, "k": 4},
    "densenet_bc100_k12": {"depth": 16, "k": 4},
    "densenet121": {"blocks": [1, 2, 1, 1], "k": 8, "classes": 10},
    "sparsenet_v1": {"blocks": [2, 3, 5], "k": 4, "far": 1, "near": 2},
    "sparsenet_abc_v1": {"blocks": [2, 3, 5], "k": 4, "far": 1, "near": 2},
    "dense2net121_se": {"blocks": [1, 2, 1, 1], "k": 8},
    "dense2net121_g32": {"blocks": [1, 1, 1, 1]},
    "res2net50_26w_4s": {"layers": [1, 1, 2, 1], "base": 4, "classes": 10},
    "seqresnet_b_k16_r7_n1": {"k": 8, "r": 1},  # two units per block: window reads, the raw stream
    "seqresnext24": {"blocks": [1, 1, 2, 1], "widen": 1, "ks": [8, 8, 16, 16], "classes": 10},
    "dsod300_backbone": {"blocks": [1, 1, 2, 1], "k": 8},
    "dsod300": {"blocks": [1, 1, 2, 1], "k": 8, "widths": [16, 16, 8, 8, 8], "classes": 5},
    "sparsenet_exp121": {"blocks": [1, 2, 3, 2], "k": 8, "classes": 10},
    "vovnet27s": {"channels": [16, 24, 32, 40], "branch": [8, 8, 8, 8], "stem": 16, "classes": 10},
    "hardnet39ds": {"layers": [2, 4, 2, 2], "growth": [4, 4, 8, 8], "channels": [16, 24, 32, 40], "stem": 16},
    "hardnet68": {"layers": [2, 4, 2, 2, 2], "growth": [4, 4, 8, 8, 8], "channels": [16, 24, 32, 40, 48], "stem": 16},
    "dpn68": {"units": [1, 2, 2, 1], "inc": [4, 8, 8, 8], "k_r": 16, "groups": 4, "classes": 10},
    "peleenet": {"layers": [1, 2, 2, 1], "growth": 8, "stem": 8},
    "dla102": {"levels": [1, 2, 3, 4], "channels": [8, 8, 16, 16]},
    "randwire_ws_regular": {"C": 4, "N": 12},
    "fcdensenet103": {"layers": [1, 1, 2, 2, 2, 3, 2, 2, 2, 1, 1], "k": 4, "first": 8},
}


def fast_overrides(spec) -> dict:
    """Overrides for the fast suite's per-spec loops: the spec as its reduced preset (REDUCED), when
    one is built on this spec file, at a small input; the slow suite runs every preset in full.
    A new dict each call (computed once per spec)."""
    return copy.deepcopy(_fast_overrides(str(spec)))


@functools.cache
def _fast_overrides(spec: str) -> dict:
    from netdsl.presets import get

    name = Path(spec).name
    for preset, reduced in REDUCED.items():
        p = get(preset)
        if p.spec == name:
            over = {**p.values, **reduced}
            break
    else:
        over = {}
    return {**over, **small_overrides(spec, **over)}


def set_args(over: dict) -> list[str]:
    """``--set`` arguments for overrides (spec syntax: ``true``/``false``, lists as written)."""

    def text(v) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return [a for k, v in over.items() for a in ("--set", f"{k}={text(v)}")]


def ctrl_c_at(epoch: int, step: int):
    """A training ``on_step`` hook that sends this process SIGINT (Ctrl-C) at that step."""

    def hook(e: int, s: int) -> None:
        if (e, s) == (epoch, step):
            os.kill(os.getpid(), signal.SIGINT)

    return hook


def outputs(y) -> tuple:
    """A module's forward result as a tuple of tensors: a network that declares several outputs
    (``output(cls, box)``) returns a tuple, any other one tensor."""
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def output_shapes(graph) -> tuple:
    """The shape of every output of a compiled graph, in forward's order (batch excluded)."""
    from netdsl.ir.graph import graph_outputs

    return tuple(tuple(graph.nodes[node]["shape"]) for _, node in graph_outputs(graph))
