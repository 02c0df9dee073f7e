"""Named presets, like timm's model names: a spec file plus parameter values.

``netdsl summary densenet121`` and ``netdsl.build_model("densenet121", classes=10)`` resolve
here; keyword overrides win over the preset's values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import SpecNameError, did_you_mean


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    spec: str  # file name under specs/
    values: dict = field(default_factory=dict)
    paper: str = ""  # where the network is published
    paper_params: float | None = None  # the published parameter count
    paper_flops: float | None = None  # the published FLOPs (multiply-accumulates)
    test_input: tuple[int, int] | None = None  # reduced (H, W) for quick tests of ImageNet presets


def specs_dir() -> Path:
    here = Path(__file__).resolve().parent
    for d in (here / "specs", here.parent / "specs"):
        if d.is_dir():
            return d
    raise FileNotFoundError("the bundled specs/ folder is missing")


_PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    if preset.name in _PRESETS:
        raise ValueError(f"preset {preset.name} registered twice")
    _PRESETS[preset.name] = preset
    return preset


def presets() -> dict[str, Preset]:
    return dict(_PRESETS)


def get(name: str) -> Preset:
    try:
        return _PRESETS[name]
    except KeyError:
        raise SpecNameError(f"unknown preset '{name}'", None,
                            did_you_mean(name, _PRESETS) or "run 'netdsl list' to see the presets") from None


def resolve(target: str | Path) -> tuple[Path, dict, str | None]:
    """A spec path or preset name -> (spec file, preset values, preset name)."""
    p = Path(target)
    if p.suffix == ".net" or p.exists() or "/" in str(target):
        return p, {}, None
    preset = get(str(target))
    return specs_dir() / preset.spec, dict(preset.values), preset.name


register(Preset("densenet_bc100_k12", "densenet_bc.net", {"depth": 100, "k": 12},
                "DenseNet seed, error-rate table (DenseNet-BC L=100, k=12)", 0.8e6))
