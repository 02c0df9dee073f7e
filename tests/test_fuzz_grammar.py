"""The grammar-aware fuzzer (tests/fuzz/grammar.py): programs generated from the Lark grammar and
mutants of the bundled specs, with a fixed seed and a wall-clock budget per case. Every case must
compile or raise netdsl's own error type: no other exception escapes the frontend and the passes,
no internal error, no case over budget."""

from __future__ import annotations

import contextlib
import random

import pytest

from netdsl.errors import NetdslError
from netdsl.frontend import parse

from fuzz.grammar import case_text, fuzz, generate, replay
from fuzz.mutations import spec_files


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


def test_500_cases_raise_only_netdsl_errors_within_budget():
    report = fuzz(500, seed=2026, budget_s=5.0)
    assert report.cases == 500
    assert report.foreign == [], report.summary()
    assert report.internal == [], report.summary()
    assert report.slow == [], report.summary()
    assert report.ok + sum(report.errors.values()) == 500
    # the cases reach every stage: parsing, names, types, values, limits, includes
    for kind in ("SpecSyntaxError", "SpecNameError", "SpecTypeError", "SpecValueError"):
        assert report.errors[kind] > 0, report.summary()
    assert report.ok > 0


@pytest.mark.slow
def test_20000_cases_raise_only_netdsl_errors_within_budget():
    report = fuzz(20_000, seed=0, budget_s=5.0)
    assert report.cases == 20_000
    assert (report.foreign, report.internal, report.slow) == ([], [], []), report.summary()
