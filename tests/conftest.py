from pathlib import Path

import pytest



@pytest.fixture
def write_spec(tmp_path):
    """Write a spec text to a temporary .net file and return its path."""

    def write(text: str, name: str = "t.net") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


def pytest_configure(config):
    if not any(str(line).startswith("slow") for line in config.getini("markers")):
        config.addinivalue_line("markers", "slow: long-running (training runs, subprocesses); run with -m slow")
