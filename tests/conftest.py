import os
from pathlib import Path

import pytest

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
