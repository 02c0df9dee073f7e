"""Output read by a program or a pipe: no colour, no escape codes, no wrapping at 80 columns
(each table row one line, names whole), and ``--json`` where a machine reads the result."""

from __future__ import annotations

import io
import json

import numpy as np

from netdsl.cli import main
from netdsl.display import UNBOUNDED_WIDTH, console
from netdsl.presets import presets

from helpers import ROOT

SMALL = ["densenet_bc100_k12", "--set", "depth=10", "--set", "k=4"]


def _out(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out  # no colour or cursor codes in a pipe
    return out


def test_a_console_on_a_pipe_has_no_width_limit_and_no_colour():
    c = console(file=io.StringIO())
    assert not c.is_terminal and c.width == UNBOUNDED_WIDTH and c.color_system is None
    c.print("[bold]x[/bold] " + "y" * 300)
    assert c.file.getvalue() == "x " + "y" * 300 + "\n"


def test_list_in_a_pipe_shows_each_preset_whole_on_one_line(capsys):
    out = _out(capsys, "list", "--no-count")
    lines = out.splitlines()
    assert "…" not in out
    for name, preset in presets().items():
        # grep finds the name, its spec and its (long) source on one line
        (row,) = [line for line in lines if f" {name} " in line]
        assert preset.spec in row and preset.paper in row


def test_summary_in_a_pipe_keeps_long_names_and_rows_whole(write_spec, capsys):
    from netdsl.naming import MAX_NAME_LENGTH

    label = ("a_rather_long_label_for_the_first_convolution_of_this_network_" * 2)[:MAX_NAME_LENGTH]
    spec = write_spec(f"network n() {{ input(3, 8, 8); {label}: conv(4, 3); block(3, dense) {{ conv(2, 3) }} }}")
    lines = _out(capsys, "summary", str(spec)).splitlines()
    assert sum(label in line for line in lines) == 1
    (block,) = [line for line in lines if line.startswith("block1: dense, 3 units")]
    assert block.endswith("-> 10x8x8")


def test_run_json_reports_what_onnxruntime_computes(tmp_path, capsys):
    from netdsl.onnx_runtime import run, session

    model = tmp_path / "m.onnx"
    assert main(["compile", *SMALL, "--target", "onnx", "-o", str(model)]) == 0
    capsys.readouterr()
    r = json.loads(_out(capsys, "run", str(model), "--batch", "3", "--seed", "5", "--json"))
    x = np.random.default_rng(5).standard_normal((3, 3, 32, 32)).astype(np.float32)
    y = run(session(model, device="cpu"), x)
    assert r["input"] == {"shape": [3, 3, 32, 32], "file": None, "seed": 5}
    assert r["provider"] == "CPUExecutionProvider" and r["output"]["shape"] == [3, 10]
    assert r["output"]["top_class"] == [int(c) for c in y.argmax(axis=1)]
    assert r["output"]["max"] == float(y.max()) and r["output"]["mean"] == float(y.mean())


def test_bench_json_has_one_row_per_variant(capsys):
    r = json.loads(_out(capsys, "bench", *SMALL, "--batch-size", "2", "--repeats", "1", "--json"))
    variants = [(row["variant"], row["precision"]) for row in r]
    assert variants == [(v, p) for p in ("fp32", "bf16") for v in ("naive (--opt 0)", "planned")]
    for row in r:
        assert row["samples_per_s"] == 2 / row["seconds"] and row["seconds"] > 0
        assert row["infer_peak_bytes"] > 0


def test_check_json_carries_the_warnings_instead_of_printing_them(capsys):
    assert main(["check", "densenet_bc100_k12", "--set", "depth=50", "--json"]) == 0
    out, err = capsys.readouterr()
    r = json.loads(out)
    assert err == "" and (r["name"], r["params"]) == ("densenet_bc", 218470)
    (w,) = r["warnings"]
    lines = (ROOT / "specs" / "densenet_bc.net").read_text().splitlines()
    (line,) = [k for k, text in enumerate(lines, 1) if "expect(" in text]
    assert (w["line"], w["column"], w["hint"]) == (line, lines[line - 1].index("(depth") + 1, "with depth = 50")
    assert w["file"].endswith("densenet_bc.net") and w["message"].startswith("DenseNet-BC's depth is 6n+4")
    assert main(["check", "densenet_bc100_k12", "--set", "depth=52", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
