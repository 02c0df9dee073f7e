import os
import sys
from pathlib import Path

import pytest

from helpers import FAST_TRACE_MAX_MODULES

# The tests run tiny tensors, where a second intra-op thread gains nothing; on a loaded or shared
# machine OpenMP threads spin-wait against each other and a 0.1 s test takes seconds. Set before
# torch is imported (test modules are imported after this file); subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec text to a temporary .net file and return its path."""

    def write(text: str, name: str = "t.net") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


@pytest.fixture
def count_compiles(monkeypatch):
    """The targets ``netdsl.pipeline.compile_target`` is called with, in order."""
    from netdsl import pipeline

    calls = []
    real = pipeline.compile_target

    def counting(*args, **kw):
        calls.append(args[0])
        return real(*args, **kw)

    monkeypatch.setattr(pipeline, "compile_target", counting)
    return calls


# The fast suite traces (torch.compile, torch.export) only small modules: dynamo and AOT autograd
# take time per traced op, so a compile costs about a second per dozen layers -- a full preset
# tens of seconds. Each kind of compiled behaviour keeps a small representative in the fast suite
# (DenseNet-BC with one unit per block, a six-unit SparseNet block, SeqResNet at r=1); the big
# models compile in `pytest -m slow`. tests/test_fast_suite.py checks the guard.


def _guarded(trace, name: str):
    def guarded(model=None, *args, **kw):
        import torch

        if isinstance(model, torch.nn.Module):
            n = sum(1 for _ in model.modules())
            assert n <= FAST_TRACE_MAX_MODULES, (
                f"{name} of a module of {n} submodules in the fast suite (at most {FAST_TRACE_MAX_MODULES}): "
                "trace a smaller model, or mark the test slow"
            )
        return trace(model, *args, **kw)

    return guarded


@pytest.fixture(autouse=True)
def _small_traces_in_the_fast_suite(request, monkeypatch):
    """In a test not marked slow, torch.compile and torch.export.export refuse a module of more
    than FAST_TRACE_MAX_MODULES submodules."""
    torch = sys.modules.get("torch")
    if torch is not None and request.node.get_closest_marker("slow") is None:
        monkeypatch.setattr(torch, "compile", _guarded(torch.compile, "torch.compile"))
        monkeypatch.setattr(torch.export, "export", _guarded(torch.export.export, "torch.export.export"))
