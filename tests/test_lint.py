"""The IR lint catches each broken rule of the contract, and every pass keeps it green."""

import networkx as nx
import pytest

import netdsl
from netdsl.errors import IRError, PassError
from netdsl.frontend import lower_spec
from netdsl.ir import lint
from netdsl.ir.graph import add_op
from netdsl.passes import Pass, PassResult, default_passes, run_pipeline

from helpers import SPECS


def small():
    return netdsl.compile_spec("specs/densenet_bc.net", depth=16, k=4)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_lint_after_every_pass(spec):
    g = lower_spec(spec)
    lint(g)
    run_pipeline(g, default_passes(), lint)


def test_cycle():
    g = small()
    g.add_edge("head1.fc", "stem")
    with pytest.raises(IRError, match="cycle"):
        lint(g)


def test_unknown_kind():
    g = small()
    g.nodes["stem"]["kind"] = "conv3d"
    with pytest.raises(IRError, match="unknown kind"):
        lint(g)


def test_arity():
    g = small()
    g.nodes["block1.unit2.cat"]["inputs"] = ()
    with pytest.raises(IRError, match="0 inputs"):
        lint(g)


def test_missing_attr():
    g = small()
    del g.nodes["stem"]["attrs"]["groups"]
    with pytest.raises(IRError, match="lacks attribute 'groups'"):
        lint(g)


def test_edges_mirror_inputs():
    g = small()
    g.remove_edge("input", "stem")
    with pytest.raises(IRError, match="edges do not match"):
        lint(g)


def test_channel_disagreement():
    g = small()
    g.nodes["stem"]["shape"] = (9, 32, 32)
    with pytest.raises(IRError):
        lint(g)


def test_spatial_disagreement_at_concat():
    g = nx.DiGraph(blocks=[])
    add_op(g, "input", "input", (), {"shape": (3, 8, 8)}, shape=(3, 8, 8))
    add_op(g, "pool", "maxpool", ("input",), dict(kernel=2, stride=2, padding=0, ceil_mode=False), shape=(3, 4, 4))
    add_op(g, "cat", "concat", ("input", "pool"), {}, shape=(6, 8, 8))
    g.graph.update(input="input", output="cat")
    with pytest.raises(IRError, match="inconsistent input shapes"):
        lint(g)


def test_failing_pass_is_named_with_its_predecessors():
    def broken(graph):
        graph.nodes["stem"]["kind"] = "bogus"
        return PassResult(graph, True)

    with pytest.raises(PassError, match=r"pass 'broken' failed \(after infer_shapes, count\)"):
        run_pipeline(lower_spec("specs/densenet_bc.net"), default_passes() + [Pass("broken", broken)], lint)
