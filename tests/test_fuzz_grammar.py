"""The grammar-aware fuzzer (tests/fuzz/grammar.py): programs generated from the Lark grammar and
mutants of the bundled specs, with a fixed seed and a CPU-time budget per case. Every case must
compile or raise netdsl's own error type: no other exception escapes the frontend and the passes,
no internal error, no case over budget."""

from __future__ import annotations

import contextlib
import random

import pytest

from netdsl.errors import NetdslError
from netdsl.frontend import parse

from fuzz.grammar import case_text, fuzz, generate, replay
from fuzz.mutations import FUZZ_LIMITS, spec_files


def test_generated_programs_are_reproducible_and_mostly_parse():
    texts = [generate(random.Random(n)) for n in range(200)]
    assert texts == [generate(random.Random(n)) for n in range(200)]
    parsed = 0
    for text in texts:
        with contextlib.suppress(NetdslError):  # the fuzz tests below check the error types
            parse(text)
            parsed += 1
    assert parsed > 100  # generation follows the grammar: most programs reach lowering


def test_replay_gives_the_case_text():
    seeds = [(p, p.read_text()) for p in spec_files()]
    for n in (0, 1, 7):
        case_id, _, _, text = case_text(n, 3, seeds)
        assert replay(case_id) == text


# 150 cases in the fast suite (they reach every stage), the 500 in the slow one
@pytest.mark.parametrize("cases", [150, pytest.param(500, marks=pytest.mark.slow)])
def test_cases_raise_only_netdsl_errors_within_budget(cases):
    report = fuzz(cases, seed=2026, budget_s=5.0)
    assert report.cases == cases
    assert report.foreign == [], report.summary()
    assert report.internal == [], report.summary()
    assert report.slow == [], report.summary()
    assert report.ok + sum(report.errors.values()) == cases
    # the cases reach every stage: parsing, names, types, values, limits, includes
    for kind in ("SpecSyntaxError", "SpecNameError", "SpecTypeError", "SpecValueError"):
        assert report.errors[kind] > 0, report.summary()
    assert report.ok > 0


@pytest.mark.slow
def test_20000_cases_raise_only_netdsl_errors_within_budget():
    report = fuzz(20_000, seed=0, budget_s=5.0)
    assert report.cases == 20_000
    assert (report.foreign, report.internal, report.slow) == ([], [], []), report.summary()


def _accepted(seed: int, scan: int, want: int, max_params: int = 30_000_000):
    """The first ``want`` accepted mutants of the bundled specs among cases 0..scan (odd cases),
    small enough to run: (case id, spec path, text, graph)."""
    from netdsl.api import compile_spec

    seeds = [(p, p.read_text()) for p in spec_files()]
    out = []
    for n in range(1, scan, 2):
        case_id, spec, _, text = case_text(n, seed, seeds)
        try:
            graph = compile_spec(spec, limits=FUZZ_LIMITS, text=text, opt=0)
        except NetdslError:
            continue
        shape = graph.nodes[graph.graph["input"]]["shape"]
        if graph.graph["total_params"] <= max_params and len(shape) == 3 and shape[1] * shape[2] <= 32 * 32:
            out.append((case_id, spec, text, graph))
            if len(out) == want:
                break
    return out


@pytest.mark.parametrize(
    "sample", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
def test_accepted_mutants_agree_in_torch_emitted_source_and_onnx(sample, tmp_path):
    """A sample of accepted mutants: the in-process module, the emitted source (written to a file
    and imported) and onnxruntime give the same outputs for the same weights."""
    import importlib.util

    import numpy as np
    import torch

    from netdsl.api import compile_spec
    from netdsl.backends.onnx.export import export
    from netdsl.backends.torch import codegen as torch_codegen
    from netdsl.onnx_runtime import session

    # about 1 odd case in 150 is an accepted mutant of a small (<= 32x32) spec; which ones depends on
    # the bundled specs (round robin: adding a spec moves the first e.g. from case 29 to 703), so
    # the scan stops at the first found and leaves a wide margin (a scan is ~2-4 ms a case)
    found = _accepted(seed=7, scan=2000, want=sample + 1)
    if sample >= len(found):
        pytest.fail(f"only {len(found)} accepted small mutants in the scanned cases")
    case_id, spec, text, naive = found[sample]
    graph = compile_spec(spec, limits=FUZZ_LIMITS, text=text)
    from test_onnx_equivalence import calibrated  # well-conditioned weights: see its docstring

    model = calibrated(graph).eval()
    path = tmp_path / "emitted.py"
    path.write_text(torch_codegen.generate(graph))
    modspec = importlib.util.spec_from_file_location("emitted", path)
    emitted_mod = importlib.util.module_from_spec(modspec)
    modspec.loader.exec_module(emitted_mod)
    emitted = emitted_mod.build().eval()
    emitted.load_state_dict(model.state_dict())
    onnx_model, _ = export(naive, model, seed=0)
    x = torch.randn(2, *graph.nodes[graph.graph["input"]]["shape"], generator=torch.Generator().manual_seed(0))
    from helpers import outputs  # a mutant of a multi-output spec returns a tuple

    with torch.no_grad():
        wants = outputs(model(x))
        gots = outputs(emitted(x))
    orts = session(onnx_model.SerializeToString(), device="cpu").run(None, {graph.graph["input"]: x.numpy()})
    assert len(gots) == len(wants) == len(orts), case_id
    for got, want, ort in zip(gots, wants, orts, strict=True):
        scale = float(want.abs().max()) + 1.0
        assert torch.equal(got, want), case_id
        assert np.abs(ort - want.numpy()).max() <= 1e-4 * scale, case_id


def test_a_case_over_its_cpu_budget_is_reported_slow_and_a_pause_is_not(monkeypatch):
    import time

    from fuzz import mutations

    runs = []

    def spin(spec, text, emit):  # unbounded work: over budget on every run
        runs.append("spin")
        while True:
            pass

    def pause_once(spec, text, emit):  # over budget on the first run only
        runs.append("pause")
        if runs.count("pause") == 1:
            end = time.process_time() + 1.0
            while time.process_time() < end:
                pass

    report = mutations.Report()
    with mutations.cpu_alarm():
        monkeypatch.setattr(mutations, "run_case", spin)
        report.record("spin", "test", mutations.run_within(0.2, spec_files()[0], "", False))
        monkeypatch.setattr(mutations, "run_case", pause_once)
        report.record("pause", "test", mutations.run_within(0.2, spec_files()[0], "", False))
    assert runs == ["spin", "spin", "pause", "pause"]
    assert (report.cases, report.ok, report.slow) == (2, 1, [("spin", "test")])
