"""Mutation fuzzing in CI: a few hundred defective variants of the bundled specs, each answered
by a compiled network or by netdsl's own located error -- never another exception.
benchmarks/fuzz_mutation.py runs the same fuzzer at scale."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdsl.api import compile_spec
from netdsl.errors import LimitError, NetdslError, SpecSyntaxError
from netdsl.frontend import parse_value

from fuzz.mutations import FUZZ_LIMITS, KINDS, fuzz, mutate, replay, spec_files, tokens

DENSENET = next(p for p in spec_files() if p.name == "densenet_bc.net")


def test_tokens_round_trip_every_bundled_spec():
    for spec in spec_files():
        text = spec.read_text()
        assert "".join(tokens(text)) == text


def test_mutants_are_reproducible_and_every_kind_is_drawn():
    text = DENSENET.read_text()
    a = [mutate(text, random.Random(n)).text for n in range(50)]
    b = [mutate(text, random.Random(n)).text for n in range(50)]
    assert a == b
    drawn = {mutate(text, random.Random(n)).kind for n in range(400)}
    assert drawn == set(KINDS)
    assert all(t != text for t in a[:10])
    rng = random.Random(3)  # what fuzz() draws for case 3: the rounds, then the mutation
    assert replay("densenet_bc.net#3") == mutate(text, rng, rng.choice((1, 1, 1, 2, 3))).text


# 60 mutants in the fast suite, the 200 in the slow one
@pytest.mark.parametrize("cases", [60, pytest.param(200, marks=pytest.mark.slow)])
def test_mutants_raise_only_netdsl_errors(cases):
    report = fuzz(cases, seed=100_000, emit=True)
    assert report.cases == cases
    assert report.foreign == []
    assert report.internal == []
    assert report.slow == []
    assert report.ok + sum(report.errors.values()) == cases
    assert report.errors["SpecSyntaxError"] > 0 and report.errors["SpecNameError"] > 0


@pytest.mark.parametrize(
    "wrap",
    [
        lambda x: "(" * 10_000 + x + ")" * 10_000,
        lambda x: "-" * 20_000 + x,
        lambda x: "+".join([x] * 20_000),
        lambda x: "not " * 20_000 + x,
        lambda x: "2 ** " * 20_000 + x,
        lambda x: "[" * 5_000 + x + "]" * 5_000,
    ],
)
def test_deep_expressions_are_refused_with_a_syntax_error(wrap):
    text = DENSENET.read_text().replace("let n = (depth - 4) // 6", f"let n = {wrap('1')}")
    with pytest.raises(SpecSyntaxError) as info:
        compile_spec(DENSENET, text=text)
    assert "nest" in info.value.message
    assert info.value.span.line == text[: text.index("let n =")].count("\n") + 1


def test_deep_template_chains_are_refused_not_recursion_errors(tmp_path):
    chain = "".join(f"def t{i}() {{ if true {{ t{i + 1}() }} }}\n" for i in range(500)) + "def t500() { bn }\n"
    spec = tmp_path / "deep.net"
    spec.write_text(chain + "network n() {\n    input(3, 8, 8)\n    t0()\n}\n")
    with pytest.raises(LimitError) as info:
        compile_spec(spec)
    assert info.value.span.file == str(spec)


def test_a_very_long_name_is_refused_or_compiled_never_crashes(tmp_path):
    name = "n" * 200_000
    text = DENSENET.read_text().replace("stem:", f"{name}:")
    try:
        graph = compile_spec(DENSENET, text=text, limits=FUZZ_LIMITS)
    except NetdslError as err:
        assert len(str(err)) < 2_000  # the message quotes a window of the line, not the whole name
    else:
        assert name in graph.nodes


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("0123456789.eE+-*/%()[],=<>! _abcnotruefalsepathwindowsplit\"'\n\\")), max_size=40
    )
)
def test_any_set_value_parses_or_raises_a_located_netdsl_error(value):
    try:
        parse_value(value)
    except NetdslError as err:
        assert err.span is not None and err.span.file == "--set"
