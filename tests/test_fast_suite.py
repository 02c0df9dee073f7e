"""The fast suite's per-spec loops run one bundled spec per structure (helpers.FAST_SPECS), the slow
suite every bundled spec: the representatives must exist and have every block pattern that the
bundled specs have, so the fast suite exercises each pattern at least once."""

from pathlib import Path

import pytest
import torch
from test_plan_equivalence import small  # the same compiled graphs as its test_every_pattern_is_covered

from netdsl.ir.graph import blocks

from helpers import FAST_SPECS, FAST_TRACE_MAX_MODULES, SPECS, compiled, spec_params


def _patterns(spec) -> set[str]:
    return {b.pattern.split("(")[0] for b in blocks(compiled(spec, **small(spec)))}


def test_every_representative_is_a_bundled_spec():
    assert set(FAST_SPECS) <= {s.stem for s in SPECS}


def test_representatives_have_every_pattern_of_the_bundled_specs():
    everything = set().union(*(_patterns(s) for s in SPECS))
    fast = set().union(*(_patterns(s) for s in SPECS if s.stem in FAST_SPECS))
    assert {"dense", "path", "window", "split", "rule", "graph"} <= everything
    assert fast == everything, everything - fast


def test_spec_params_mark_all_but_the_representatives_slow():
    params = spec_params()
    assert [Path(p.values[0]).stem for p in params] == [s.stem for s in SPECS]
    fast = [p.id for p in params if not any(m.name == "slow" for m in p.marks)]
    assert sorted(fast) == sorted(FAST_SPECS)


def test_the_fast_suite_traces_only_small_modules():
    """conftest's guard: in a fast test, torch.compile and torch.export refuse a module of more than
    FAST_TRACE_MAX_MODULES submodules (a preset at full depth), and pass a small one through."""
    big = torch.nn.Sequential(*(torch.nn.ReLU() for _ in range(FAST_TRACE_MAX_MODULES)))
    small = torch.nn.Sequential(torch.nn.ReLU())
    x = torch.randn(2, 3)
    refused = f"of {FAST_TRACE_MAX_MODULES + 1} submodules in the fast suite"
    with pytest.raises(AssertionError, match=refused):
        torch.compile(big)
    with pytest.raises(AssertionError, match=refused):
        torch.export.export(big, (x,))
    assert torch.equal(torch.compile(small, backend="eager")(x), x.relu())
    assert torch.equal(torch.export.export(small, (x,)).module()(x), x.relu())
