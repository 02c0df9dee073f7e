"""The one pipeline: compile_target, compile_source, spec_header, instantiate; api and cli go through it."""

import inspect

import pytest
import torch

import netdsl
from netdsl import pipeline
from netdsl.cli import main
from netdsl.errors import IncludeError, SpecNameError, SpecValueError
from netdsl.presets import specs_dir

SMALL = {"depth": 10, "k": 4}
SPEC = """
include "lib/densenet.net"
network small(classes=10, width=6) {
    input(3, 8, 8)
    conv(width, 3); bn; relu
    gap
    fc: linear(classes)
}
"""


def test_compiled_holds_what_compiles_it_again():
    c = pipeline.compile_target("densenet_bc100_k12", SMALL)
    assert (c.target, c.preset, c.overrides, c.opt) == ("densenet_bc100_k12", "densenet_bc100_k12", SMALL, 1)
    assert c.path == specs_dir() / "densenet_bc.net"
    assert c.text == c.path.read_text(encoding="utf-8")
    assert c.graph.graph["params"]["depth"] == 10 and c.graph.graph["planned"]
    assert (c.input_shape, c.output_shape) == ((3, 32, 32), (10,))
    with pytest.raises(AttributeError):
        c.opt = 0  # frozen


def test_the_api_is_the_pipeline():
    ref = pipeline.compile_target("densenet_bc100_k12", SMALL, opt=0).graph
    g = netdsl.compile_spec("densenet_bc100_k12", **SMALL, opt=0)
    assert g.graph["total_params"] == ref.graph["total_params"]
    model = netdsl.build_model("densenet_bc100_k12", opt=0, **SMALL)
    assert sum(p.numel() for p in model.parameters()) == g.graph["total_params"]  # torch counts the same


def test_an_unknown_level_is_refused_before_reading_anything(tmp_path):
    with pytest.raises(SpecValueError, match="unknown optimization level 7"):
        pipeline.compile_target(tmp_path / "absent.net", opt=7)
    with pytest.raises(IncludeError):
        pipeline.compile_target(tmp_path / "absent.net")


def test_compile_source_uses_the_embedded_text_not_the_file(write_spec, tmp_path):
    path = write_spec(SPEC)
    c = pipeline.compile_target(str(path), {"width": 5})
    source = c.source()
    assert source == {"target": str(path), "file": str(path), "name": "small", "preset": None, "text": SPEC}
    path.write_text("network broken {")  # the stored path is never read again
    again = pipeline.compile_source(source, {"width": 5})
    assert again.text == SPEC and again.graph.graph["total_params"] == c.graph.graph["total_params"]
    assert again.graph.nodes["conv1"]["shape"] == (5, 8, 8)
    # a preset's record compiles by name, from its stored text
    p = pipeline.compile_target("densenet_bc100_k12", SMALL)
    edited = {**p.source(), "text": p.text.replace("classes=10", "classes=7")}
    assert pipeline.compile_source(edited, SMALL).output_shape == (7,)


def test_spec_header_parses_without_compiling(write_spec, count_compiles):
    assert pipeline.spec_header("densenet_bc100_k12").name == "densenet_bc"
    h = pipeline.spec_header(write_spec(SPEC))
    assert (h.name, h.params) == ("small", ("classes", "width"))
    assert count_compiles == []
    two = write_spec("network a() { input(1, 4, 4) }\nnetwork b() { input(1, 4, 4) }", "two.net")
    with pytest.raises(SpecNameError, match="exactly one network"):
        pipeline.spec_header(two)


def test_instantiate_is_build_model_and_follows_the_plan():
    for opt in (0, 1):
        graph = pipeline.compile_target("densenet_bc100_k12", SMALL, opt=opt).graph
        m = pipeline.instantiate(graph, seed=3)
        ref = netdsl.build_model("densenet_bc100_k12", seed=3, opt=opt, **SMALL)
        assert type(m) is type(ref)  # the same generated class: the source is cached by its text
        assert ("_buffer(" in inspect.getsource(type(m))) == bool(opt)  # the plan's buffers
        a, b = m.state_dict(), ref.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    before = torch.get_rng_state()
    pipeline.instantiate(graph, seed=3)
    assert torch.equal(before, torch.get_rng_state())  # the caller's random state is untouched


def test_cli_commands_compile_through_the_pipeline_once(count_compiles, capsys):
    assert main(["summary", "densenet_bc100_k12", "--set", "depth=10", "--set", "k=4"]) == 0
    assert main(["check", "densenet_bc100_k12", "--set", "depth=10"]) == 0
    assert count_compiles == ["densenet_bc100_k12", "densenet_bc100_k12"]
