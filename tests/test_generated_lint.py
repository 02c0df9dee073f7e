"""The generated torch files are clean by the project's own rules: written to a temporary folder,
each passes ``ruff check`` and ``ruff format --check`` with the repository's pyproject settings.

Open (issue 27): the planned files of the concatenating networks and a few written-out ones still
hold lines over 120 columns (a loop over per-unit tables of an irregular block, a recomputed head's
call), which ruff's formatter would break; :data:`LONG_LINES` lists them, and the slow test fails
when a preset outside it regresses or one in it becomes clean (then remove it from the list)."""

import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.backends.torch.codegen import generate
from netdsl.presets import presets

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# (preset, opt) whose generated file is clean today: a few representative structures.
CLEAN = [("densenet_bc100_k12", 0), ("dla34", 1), ("dpn68", 1), ("randwire_ws_small", 1), ("dense2net121", 0)]

# Presets whose generated file (opt 1, and opt 0 where noted by ruff) still has lines over 120.
LONG_LINES = frozenset(
    [
        "dense2net121",
        "dense2net121_g32",
        "dense2net121_s2",
        "dense2net121_s8",
        "dense2net121_se",
        "densenet100_k12",
        "densenet100_k24",
        "densenet121",
        "densenet161",
        "densenet169",
        "densenet201",
        "densenet40_k12",
        "densenet_bc100_k12",
        "densenet_bc121_k32",
        "densenet_bc190_k40",
        "densenet_bc250_k24",
        "dsod300",
        "dsod300_backbone",
        "fcdensenet103",
        "fcdensenet56",
        "fcdensenet67",
        "hardnet39ds",
        "hardnet68",
        "hardnet68ds",
        "hardnet85",
        "peleenet",
        "res2net50_26w_4s",
        "seqresnet_b22",
        "seqresnet_b42",
        "seqresnet_b_k16_r7_n1",
        "seqresnet_b_k32_r12_n3",
        "seqresnet_k16_r10_n1",
        "seqresnet_k8_r4_n1",
        "seqresnext24",
        "sparsenet_abc_v1",
        "sparsenet_abc_v2",
        "sparsenet_abc_v3",
        "sparsenet_abc_v4",
        "sparsenet_bc_v1",
        "sparsenet_bc_v2",
        "sparsenet_bc_v3",
        "sparsenet_bc_v4",
        "sparsenet_exp121",
        "sparsenet_v1",
        "sparsenet_v2",
        "sparsenet_v3",
        "sparsenet_v4",
        "vovnet27s",
        "vovnet39",
        "vovnet57",
    ]
)


def _ruff(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ruff", *map(str, args), "--config", str(PYPROJECT), "--no-cache"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _unclean(folder: Path) -> set[str]:
    """The files of ``folder`` that ruff check or ruff format --check refuses."""
    bad = set()
    for path in sorted(folder.glob("*.py")):
        check, fmt = _ruff("check", "--quiet", path), _ruff("format", "--check", "--quiet", path)
        if check.returncode or fmt.returncode:
            bad.add(path.stem)
    return bad


def _write(folder: Path, name: str, opt: int) -> None:
    (folder / f"{name}_o{opt}.py").write_text(generate(netdsl.compile_spec(name, opt=opt)))


def test_representative_generated_files_pass_ruff(tmp_path):
    for name, opt in CLEAN:
        _write(tmp_path, name, opt)
    assert _unclean(tmp_path) == set()


@pytest.mark.slow
def test_every_generated_file_passes_ruff_but_the_listed(tmp_path):
    for name in presets():
        for opt in (0, 1):
            _write(tmp_path, name, opt)
    bad = {stem.rsplit("_o", 1)[0] for stem in _unclean(tmp_path)}
    assert bad - LONG_LINES == set(), "new ruff failures"
    assert LONG_LINES - bad == set(), "now clean: remove from LONG_LINES"
