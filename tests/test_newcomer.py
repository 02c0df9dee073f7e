"""The newcomer's rough edges (issue 18): each one a behaviour pinned here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import netdsl
from netdsl import pipeline
from netdsl.api import API_OPTIONS, onnx_model
from netdsl.errors import NetdslError, SpecValueError

from helpers import ROOT, SPECS

SMALL = {"depth": 10, "k": 4}


# ---- the Python API: onnx_model's weights, one override style


def test_onnx_model_refuses_a_module_of_another_network_by_name_and_key_counts():
    given = netdsl.build_model("densenet_bc100_k12", depth=16, k=4)
    expected = netdsl.build_model("densenet_bc100_k12", **SMALL)
    missing = set(expected.state_dict()) - set(given.state_dict())
    unexpected = set(given.state_dict()) - set(expected.state_dict())
    assert missing or unexpected
    with pytest.raises(NetdslError) as err:
        onnx_model("densenet_bc100_k12", **SMALL, weights=given)
    assert err.value.message == (
        f"weights (module DensenetBc) do not fit 'densenet_bc' (DensenetBc): "
        f"{len(missing)} missing, {len(unexpected)} unexpected keys"
    )
    assert "fold_bn" not in str(err.value)


def test_onnx_model_refuses_a_module_with_other_widths_by_the_first_shape():
    given = netdsl.build_model("densenet_bc100_k12", depth=10, k=6)
    with pytest.raises(NetdslError) as err:
        onnx_model("densenet_bc100_k12", **SMALL, weights=given)
    # the stem is conv(2 * k, 3): the first tensor that differs
    assert err.value.message == (
        "weights (module DensenetBc) do not fit 'densenet_bc': stem.weight has shape (12, 3, 3, 3), "
        "the network's is (8, 3, 3, 3)"
    )


@pytest.mark.parametrize("weights", [3, [1, 2], b"abc"])
def test_onnx_model_names_the_kinds_of_weights_it_takes(weights):
    with pytest.raises(NetdslError) as err:
        onnx_model("densenet_bc100_k12", **SMALL, weights=weights)
    assert err.value.message == (
        f"weights: expected a torch module, a state_dict or a checkpoint path, got {type(weights).__name__}"
    )


def test_onnx_model_takes_its_own_networks_module():
    model = onnx_model("densenet_bc100_k12", **SMALL, weights=netdsl.build_model("densenet_bc100_k12", **SMALL))
    assert model.metadata_props and dict((p.key, p.value) for p in model.metadata_props)["netdsl.weights"] == (
        "module DensenetBc"
    )


def test_every_api_function_takes_overrides_as_keywords():
    ref = pipeline.compile_target("densenet_bc100_k12", {"depth": 16, "k": 4}).graph
    g = netdsl.compile_spec("densenet_bc100_k12", depth=16, k=4)
    assert g.graph["params"] == ref.graph["params"] and g.graph["total_params"] == ref.graph["total_params"]
    source = netdsl.torch_source("densenet_bc100_k12", depth=16, k=4)
    assert "depth=16" in source.split('"""')[1] and "k=4" in source.split('"""')[1]
    assert "depth=100" not in source


@pytest.mark.parametrize("fn", [netdsl.compile_spec, netdsl.torch_source, onnx_model, netdsl.build_model])
def test_a_dict_of_overrides_is_not_a_second_style(fn):
    with pytest.raises(TypeError, match="positional argument"):
        fn("densenet_bc100_k12", SMALL)


def test_a_spec_parameter_named_like_an_api_option_is_refused_with_the_way_out(write_spec):
    spec = write_spec("network n(seed=1) { input(3, 8, 8); conv(4 * seed, 3) }")
    with pytest.raises(SpecValueError) as err:
        netdsl.compile_spec(spec)
    assert err.value.message == (
        "network 'n' declares the parameter 'seed', which the Python API takes as its own option (seed=...), "
        "so its value cannot be passed as a keyword"
    )
    assert err.value.hint == "rename the parameter in the spec (the command line's --set seed=VALUE still works)"
    # the command line is unaffected: the pipeline compiles it with the value
    assert pipeline.compile_target(spec, {"seed": "2"}).graph.nodes["conv1"]["shape"] == (8, 8, 8)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_no_bundled_spec_parameter_is_named_like_an_api_option(spec):
    assert not set(pipeline.spec_header(spec).params) & API_OPTIONS


def _readme_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.M | re.S)


def _readme_python() -> str:
    """The Tour's example, the README's first Python block: it runs as written."""
    return _readme_blocks()[0]


def test_every_readme_python_block_parses_and_names_only_what_netdsl_has():
    import netdsl

    blocks = _readme_blocks()
    assert len(blocks) >= 2  # the Tour, the pretrained weights
    for code in blocks:
        compile(code, "README.md", "exec")
        for name in re.findall(r"\bnetdsl\.(\w+)", code):
            assert hasattr(netdsl, name), name


@pytest.mark.slow
def test_the_readme_python_example_runs_and_prints_what_it_says(capsys):
    code = _readme_python()
    printed = re.findall(r"print\(.*\)\s+# (\S+)", code)
    exec(compile(code, "README.md", "exec"), {})  # our own text, not a spec
    assert capsys.readouterr().out.split() == printed


def test_the_readme_python_example_passes_overrides_as_keywords():
    code = _readme_python()
    assert "{" not in code  # no dict of overrides
    assert re.search(r"onnx_model\(\"dense2net121\", classes=100, weights=model\)", code)
    assert Path(ROOT / "README.md").read_text().count("weights=model") == 1


# ---- compile without -o: NAME.onnx, decided and checked before compiling


def test_onnx_without_o_writes_the_presets_name_here(tmp_path, monkeypatch, capsys):
    from netdsl.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["compile", "densenet_bc100_k12", "--set", "depth=10", "--set", "k=4", "--target", "onnx"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["densenet_bc100_k12.onnx"]
    assert "wrote densenet_bc100_k12.onnx" in capsys.readouterr().err


def test_onnx_without_o_names_a_spec_file_by_its_network(tmp_path, monkeypatch, write_spec):
    from netdsl.cli import main

    spec = write_spec("network tiny_net() { input(3, 8, 8); conv(4, 3) }", "some_file.net")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    assert main(["compile", str(spec), "--target", "onnx"]) == 0
    assert [p.name for p in out.iterdir()] == ["tiny_net.onnx"]


def test_an_existing_default_output_is_refused_before_compiling_unless_force(
    tmp_path, monkeypatch, capsys, count_compiles
):
    from netdsl.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "densenet_bc100_k12.onnx").write_bytes(b"mine")
    argv = ["compile", "densenet_bc100_k12", "--set", "depth=10", "--set", "k=4", "--target", "onnx"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "error: densenet_bc100_k12.onnx exists (the default output of --target onnx)\n"
        "hint: name another file with -o FILE, or replace it with --force\n"
    )
    assert count_compiles == [] and (tmp_path / "densenet_bc100_k12.onnx").read_bytes() == b"mine"
    assert main([*argv, "--force"]) == 0
    assert count_compiles == ["densenet_bc100_k12"]  # the hook sees the compile it was absent for
    assert (tmp_path / "densenet_bc100_k12.onnx").read_bytes()[:2] != b"mi"


def test_an_unwritable_o_is_refused_before_compiling(tmp_path, capsys, count_compiles):
    from netdsl.cli import main

    argv = ["compile", "densenet_bc100_k12", "--target", "onnx", "-o", str(tmp_path / "nope" / "m.onnx")]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"error: -o {tmp_path}/nope/m.onnx: the folder '{tmp_path}/nope' does not exist\n"
    assert count_compiles == []


def test_torch_without_o_prints_the_source(capsys):
    from netdsl.cli import main

    assert main(["compile", "densenet_bc100_k12", "--set", "depth=10", "--set", "k=4"]) == 0
    assert capsys.readouterr().out == netdsl.torch_source("densenet_bc100_k12", depth=10, k=4)


# ---- the spec's own expectations: DenseNet's depth


@pytest.mark.parametrize(
    "preset, depth, rule",
    [("densenet_bc100_k12", 50, "DenseNet-BC's depth is 6n+4"), ("densenet40_k12", 41, "DenseNet's depth is 3n+4")],
)
def test_a_densenet_depth_off_its_rule_is_warned_about_at_the_specs_expect(preset, depth, rule, capsys):
    from netdsl.cli import main

    spec = ROOT / "specs" / pipeline.compile_target(preset).path.name
    lines = spec.read_text().splitlines()
    (line,) = [k for k, text in enumerate(lines, 1) if text.strip().startswith("expect(")]
    col = lines[line - 1].index("(depth") + 1
    assert main(["check", preset, "--set", f"depth={depth}"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{spec}:{line}:{col}: warning: {rule} (3 blocks of n ")
    assert err[0].endswith("; n is rounded down") and err[-1] == f"hint: with depth = {depth}"
    assert main(["check", preset, "--set", f"depth={depth + 2}"]) == 0
    assert capsys.readouterr().err == ""  # 52 = 6*8+4, 43 = 3*13+4


def test_expect_warns_once_and_the_api_keeps_the_warning(write_spec):
    spec = write_spec(
        'network n(w=3) {\n    input(3, 8, 8)\n    for b in 1..3 { expect(w % 2 == 0, "w is even"); conv(w, 3) }\n}\n'
    )
    (warning,) = netdsl.compile_spec(spec).graph["warnings"]
    assert (warning.message, warning.hint, warning.span.line, warning.span.column) == ("w is even", "with w = 3", 3, 28)
    assert netdsl.compile_spec(spec, w=4).graph["warnings"] == []


# ---- split blocks: one naming in summary and drawings

SPLIT = """network n() {
    input(3, 8, 8)
    conv(16, 3)
    block(split(scale=4)) { conv(4, 3) }
}
"""


def test_summary_and_both_drawings_name_a_split_blocks_features_alike(write_spec, tmp_path, capsys):
    from netdsl.cli import main

    spec = str(write_spec(SPLIT))
    # the paper's names: unit i reads its subset x_i and, after unit 2, the previous output y_{i-1}
    expected = {2: "x2", 3: "x3, y2", 4: "x4, y3"}
    assert main(["summary", spec]) == 0
    table = [line.split("│") for line in capsys.readouterr().out.splitlines() if "block1.unit" in line]
    assert {int(row[1].strip()[-1]): row[5].strip() for row in table} == expected
    assert main(["summary", spec, "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert {int(r["name"][-1]): r["reads_label"] for r in layers if r["kind"] == "unit"} == expected
    assert main(["viz", spec, "--level", "op", "-o", str(tmp_path / "op.dot")]) == 0
    op_dot = (tmp_path / "op.dot").read_text()
    assert all(f'label="unit {i} reads {reads}"' in op_dot for i, reads in expected.items())
    assert main(["viz", spec, "-o", str(tmp_path / "block.dot")]) == 0
    block_dot = (tmp_path / "block.dot").read_text()
    # the subsets drawn at block level are named as the op level's slice ops block1.x1 .. block1.x4
    assert [f"block1.x{i}" in op_dot for i in range(1, 5)] == [True] * 4
    assert [f'"block1/x{j}" [label=x{j + 4} ' in block_dot for j in range(-3, 1)] == [True] * 4


def test_virtual_environments_and_tool_caches_are_ignored():
    ignored = set((ROOT / ".gitignore").read_text().split())
    assert {".venv/", "venv/", ".mypy_cache/", ".ruff_cache/", "__pycache__/", "*.onnx"} <= ignored
