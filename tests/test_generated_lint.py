"""The generated torch files are clean by the project's own rules: written to a temporary folder,
each passes ``ruff check`` and ``ruff format --check`` with the repository's pyproject settings
(120 columns). The generator keeps its lines short (tables as ranges and windows, one call per
recomputed head) and :mod:`netdsl.backends.torch.layout` breaks what is still long as ruff's
formatter would; tests/test_codegen.py holds the files to their length."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.backends.torch.codegen import generate
from netdsl.backends.torch.layout import fit
from netdsl.presets import presets

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# (preset, opt): one of each structure whose lines used to run long -- a DenseNet-BC's planned
# transitions, a SparseNet's windows and irregular widths, HarDNet's and FC-DenseNet's written-out
# and up-path blocks, DSOD's two outputs, SeqResNet's nested windows -- and the naive (opt 0) form.
REPRESENTATIVE = [
    ("densenet_bc100_k12", 0),
    ("densenet_bc100_k12", 1),
    ("sparsenet_bc_v1", 0),
    ("sparsenet_abc_v2", 1),
    ("hardnet68", 1),
    ("fcdensenet56", 0),
    ("fcdensenet56", 1),
    ("dsod300", 1),
    ("seqresnet_b22", 1),
    ("dla34", 1),
    ("dpn68", 1),
    ("randwire_ws_small", 1),
    ("dense2net121", 0),
]


def _ruff(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ruff", *map(str, args), "--config", str(PYPROJECT), "--no-cache"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _assert_clean(folder: Path) -> None:
    """Every file of ``folder`` passes ruff check and ruff format --check (ruff's report if not)."""
    check = _ruff("check", "--quiet", "--output-format", "concise", folder)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    fmt = _ruff("format", "--check", folder)
    assert fmt.returncode == 0, fmt.stdout[-4000:] + fmt.stderr[-2000:]


def _write(folder: Path, name: str, opt: int) -> None:
    (folder / f"{name}_o{opt}.py").write_text(generate(netdsl.compile_spec(name, opt=opt)))


def test_representative_generated_files_pass_ruff(tmp_path):
    for name, opt in REPRESENTATIVE:
        _write(tmp_path, name, opt)
    _assert_clean(tmp_path)


@pytest.mark.slow
def test_every_generated_file_passes_ruff(tmp_path):
    for name in presets():
        for opt in (0, 1):
            _write(tmp_path, name, opt)
    _assert_clean(tmp_path)


def test_layout_breaks_long_statements_as_ruff_format_does(tmp_path):
    """Each shape of statement the layout breaks -- a call whose arguments fit on one line, one
    whose arguments do not, a literal, a comprehension, a for header, a comment -- comes out as
    ruff's formatter writes it, and means the same."""
    long = ", ".join(f"argument_{k}" for k in range(12))
    many = ", ".join(f"(argument_{k}, {k})" for k in range(20))
    source = "\n".join(
        [
            "def f(*args, **kwargs):",
            f"    value = g({long})",
            f"    value = g({many}, strict=True)",
            f"    table = [{many}]",
            f"    picked = [feats[j] for j in ({', '.join(map(str, range(40)))}) if j]",
            f"    for unit, a in zip(self.units.values(), ({', '.join(map(str, range(0, 480, 16)))}), strict=True):",
            f"        # {' '.join(['a comment that runs long'] * 8)}",
            "        pass",
            "",
        ]
    )
    out = fit(source)
    assert all(len(line) <= 120 for line in out.splitlines())
    assert ast.dump(ast.parse(out)) == ast.dump(ast.parse(source))
    (tmp_path / "laid_out.py").write_text(out)
    fmt = _ruff("format", "--check", "--diff", tmp_path / "laid_out.py")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
