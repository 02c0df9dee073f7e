"""`netdsl bench` and the --opt level, end to end on a tiny spec."""

import inspect

import pytest

from netdsl.api import build_model, compile_spec
from netdsl.cli import main
from netdsl.errors import NetdslError

TINY = """
network tiny(classes=3) {
    input(3, 8, 8)
    stem: conv(8, 3)
    block(3, dense) { bn; relu; conv(8, 1); bn; relu; conv(4, 3) }
    bn; relu; gap
    fc: linear(classes)
}
"""


def test_bench_prints_naive_and_planned(write_spec, capsys):
    spec = str(write_spec(TINY))
    assert main(["bench", spec, "--batch-size", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "naive (--opt 0)" in out and "planned" in out and "ratio" in out
    assert main(["bench", spec, "--batch-size", "2", "--repeats", "1", "--train"]) == 0
    assert "training step, batch 2" in " ".join(capsys.readouterr().out.split())


def test_bench_rejects_a_missing_device(write_spec, capsys):
    import torch

    device = "cuda" if not torch.cuda.is_available() else "tpu"
    assert main(["bench", str(write_spec(TINY)), "--device", device]) == 2
    err = capsys.readouterr().err
    assert "is not available here" in err and "Traceback" not in err


def test_opt_levels_choose_the_executor(write_spec):
    spec = write_spec(TINY)
    assert "_buffer(" not in inspect.getsource(type(build_model(spec, opt=0)))  # one torch.cat per unit
    assert "_buffer(" in inspect.getsource(type(build_model(spec)))  # the planned buffers
    assert "buffers" not in compile_spec(spec, opt=0).graph
    assert compile_spec(spec).graph["buffers"]["block1.buffer"]["shape"] == (8 + 3 * 4, 8, 8)
    with pytest.raises(NetdslError, match="unknown optimization level 7"):
        compile_spec(spec, opt=7)
