"""Property: every spec the generator of valid specs (tests/fuzz/generate.py) draws compiles,
passes the IR lint, and runs forward in torch with the shape the generator predicted
independently; the torch module's parameter count equals the IR's."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from netdsl.api import compile_spec
from netdsl.backends.torch import codegen as torch_codegen
from netdsl.ir import lint

from fuzz.generate import valid_specs


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_generated_spec_compiles_lints_and_runs_with_predicted_shape(tmp_path_factory, gen):
    _check(tmp_path_factory, gen)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_hundreds_of_generated_specs_compile_lint_and_run_with_predicted_shape(tmp_path_factory, gen):
    _check(tmp_path_factory, gen)


def _check(tmp_path_factory, gen):
    spec = tmp_path_factory.mktemp("gen") / "generated.net"
    spec.write_text(gen.text)
    graph = compile_spec(spec, check=True)  # check=True lints after every pass
    lint(graph)
    assert graph.nodes[graph.graph["output"]]["shape"] == gen.shape, gen.text
    model = torch_codegen.build(graph, seed=0).eval()
    with torch.no_grad():
        y = model(torch.randn(2, *gen.input))
    assert tuple(y.shape) == (2,) + gen.shape, gen.text
    assert sum(p.numel() for p in model.parameters()) == graph.graph["total_params"]
