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
    # The slow marker (long fuzzing, big networks); registered here too in case pyproject.toml lacks it.
    config.addinivalue_line("markers", "slow: slow tests (long fuzzing, full-size networks); run with -m slow")
