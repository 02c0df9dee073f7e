"""Named presets, like timm's model names: a spec file plus parameter values.

``netdsl summary densenet121`` and ``netdsl.build_model("densenet121", classes=10)`` resolve
here; keyword overrides win over the preset's values. docs/zoo.md lists every preset.

>>> get("sparsenet_bc_v1").values["far"], get("densenet121").spec
(7, 'densenet_imagenet.net')
"""

from __future__ import annotations

import os
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
    test_input: tuple[int, int] | None = None  # reduced (H, W) for quick tests, passed as the spec's `size`


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
        raise SpecNameError(
            f"unknown preset '{name}'",
            None,
            did_you_mean(name, _PRESETS)
            or "run 'netdsl list' to see the presets; a spec file is named with its .net suffix or a path (./name)",
        ) from None


def is_spec_path(target: str | Path) -> bool:
    """The rule that tells a spec file from a preset name, without looking at the disk: a target
    is a file when it ends in ``.net`` or contains a path separator (``./densenet121``), else a
    preset name -- so a file or folder in the working directory can never hide a preset.

    >>> is_spec_path("densenet121"), is_spec_path("my.net"), is_spec_path("./densenet121")
    (False, True, True)
    """
    text = str(target)
    return (
        isinstance(target, Path)
        or text.endswith(".net")
        or "/" in text
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
    )


def resolve(target: str | Path) -> tuple[Path, dict, str | None]:
    """A spec path or preset name -> (spec file, preset values, preset name); see :func:`is_spec_path`."""
    if is_spec_path(target):
        return Path(target), {}, None
    preset = get(str(target))
    return specs_dir() / preset.spec, dict(preset.values), preset.name


# ---- the seed library (docs/zoo.md lists every preset with our count, the paper's and why they differ)
# paper_params / paper_flops are the published numbers (FLOPs as multiply-accumulates).
# test_input is a reduced resolution, passed as the spec's ``size``, at which tests run a preset
# quickly: the smallest that keeps every map at least 1x1 (CIFAR nets downsample 4x, ImageNet 32x).
_CIFAR_TEST = (8, 8)
_IMAGENET_TEST = (32, 32)

# DenseNet (Huang et al.), the CIFAR/SVHN error-rate table.
_DENSENET_CIFAR = "DenseNet seed, CIFAR/SVHN error-rate table"
for _name, _spec, _depth, _k, _published in (
    ("densenet40_k12", "densenet_cifar.net", 40, 12, 1.0e6),
    ("densenet100_k12", "densenet_cifar.net", 100, 12, 7.0e6),
    ("densenet100_k24", "densenet_cifar.net", 100, 24, 27.2e6),
    ("densenet_bc100_k12", "densenet_bc.net", 100, 12, 0.8e6),
    ("densenet_bc250_k24", "densenet_bc.net", 250, 24, 15.3e6),
    ("densenet_bc190_k40", "densenet_bc.net", 190, 40, 25.6e6),
):
    _bc = "-BC" if "bc" in _name else ""
    register(
        Preset(
            _name,
            _spec,
            {"depth": _depth, "k": _k},
            f"{_DENSENET_CIFAR} (DenseNet{_bc} L={_depth}, k={_k})",
            _published,
            test_input=_CIFAR_TEST,
        )
    )

# DenseNet for ImageNet, the architectures table, in torchvision's conventions; the paper prints
# no counts, so paper_params is torchvision's documented count for the same network.
for _name, _blocks, _k, _published in (
    ("densenet121", [6, 12, 24, 16], 32, 7_978_856),
    ("densenet169", [6, 12, 32, 32], 32, 14_149_480),
    ("densenet201", [6, 12, 48, 32], 32, 20_013_928),
    ("densenet161", [6, 12, 36, 24], 48, 28_681_000),
):
    register(
        Preset(
            _name,
            "densenet_imagenet.net",
            {"blocks": _blocks, "k": _k},
            "DenseNet seed, ImageNet architectures table (count: torchvision)",
            _published,
            test_input=_IMAGENET_TEST,
        )
    )

# SparseNet (Liu & Zeng), Tables 1-2: V1..V4 = blocks, growth k, path = far + near.
_SPARSENET_SIZES = {
    1: ([8, 12, 16], 16, 14),
    2: ([12, 18, 24], 24, 21),
    3: ([16, 24, 32], 32, 28),
    4: ([20, 30, 40], 50, 35),
}
_SPARSENET_PUBLISHED = {
    "": (1.20e6, 5.70e6, 17.5e6, 65.7e6),
    "bc_": (0.83e6, 3.45e6, 9.69e6, 34.3e6),
    "abc_": (0.86e6, 3.56e6, 9.92e6, 35.0e6),
}
for _variant, _counts in _SPARSENET_PUBLISHED.items():
    for _v, (_blocks, _k, _path) in _SPARSENET_SIZES.items():
        register(
            Preset(
                f"sparsenet_{_variant}v{_v}",
                "sparsenet.net",
                {
                    "blocks": _blocks,
                    "k": _k,
                    "far": _path // 2,
                    "near": _path - _path // 2,
                    "bc": _variant != "",
                    "attention": _variant == "abc_",
                },
                f"SparseNet seed, Table 1 (SparseNet-{_variant.rstrip('_') or 'basic'}-V{_v})",
                _counts[_v - 1],
                test_input=_CIFAR_TEST,
            )
        )

# Dense2Net (Starliper & Songkakul), section 3 and the slides: DenseNet-121-BC, k=32, on CIFAR.
_values: dict  # the loops below bind it to dicts of different value types
for _name, _values in (
    ("densenet_bc121_k32", {"scale": 1}),
    ("dense2net121", {}),
    ("dense2net121_s2", {"scale": 2}),
    ("dense2net121_s8", {"scale": 8}),
    ("dense2net121_g32", {"card": 32}),
    ("dense2net121_se", {"se": True}),
):
    register(
        Preset(
            _name, "dense2net.net", _values, "Dense2Net seed, section 3 (no published counts)", test_input=_CIFAR_TEST
        )
    )

register(
    Preset(
        "res2net50_26w_4s",
        "res2net.net",
        {},
        "Res2Net (Gao et al.), ImageNet table",
        25.70e6,
        test_input=_IMAGENET_TEST,
    )
)

# SeqConv (Huang et al.): CIFAR Table 3 from the Table 1 template; ImageNet Table 2.
for _name, _values, _published in (
    ("seqresnet_k8_r4_n1", {"k": 8, "r": 4, "n": 1}, 1.2e6),
    ("seqresnet_k16_r10_n1", {"k": 16, "r": 10, "n": 1}, 7.6e6),
    ("seqresnet_b_k16_r7_n1", {"k": 16, "r": 7, "n": 1, "b": True}, 0.8e6),
    ("seqresnet_b_k32_r12_n3", {"k": 32, "r": 12, "n": 3, "b": True}, 6.0e6),
):
    register(
        Preset(_name, "seqresnet.net", _values, "SeqConv seed, Table 3 (CIFAR)", _published, test_input=_CIFAR_TEST)
    )
for _name, _values, _published, _flops in (
    ("seqresnet_b22", {"blocks": [1, 1, 2, 1]}, 11.8e6, 2.73e9),
    ("seqresnet_b42", {"blocks": [3, 4, 5, 3]}, 25.6e6, 5.33e9),
    ("seqresnext24", {"blocks": [1, 1, 3, 1], "widen": 4, "cards": [8, 8, 4, 4], "twice": True}, 26.2e6, 4.32e9),
):
    register(
        Preset(
            _name,
            "seqresnet_imagenet.net",
            _values,
            "SeqConv seed, Table 2 (ImageNet)",
            _published,
            _flops,
            test_input=_IMAGENET_TEST,
        )
    )

register(
    Preset(
        "dsod300_backbone",
        "dsod.net",
        {},
        "DSOD (Shen et al.), Table 1 (backbone; no published count)",
        test_input=_IMAGENET_TEST,
    )
)
register(
    Preset(
        "dsod300",
        "dsod300.net",
        {},
        "DSOD (Shen et al.), Table 4 (DSOD300, VOC: 21 classes); reference szq0214/DSOD",
        14.8e6,
        test_input=_IMAGENET_TEST,
    )
)
register(
    Preset(
        "sparsenet_exp121",
        "sparsenet_exp.net",
        {},
        "Zhu et al. exponential aggregation on DenseNet-121's layout (count: pytorchcv sparsenet121)",
        3_250_824,
        test_input=_IMAGENET_TEST,
    )
)

# Aggregation patterns of the DenseNet family (issue 17), each exact to pytorchcv 0.0.74's model
# (its parameter count is paper_params; tests/test_family.py compares them when pytorchcv is installed).
# VoVNet (Lee et al. 2019): one-shot aggregation; vovnet27s is the slim model (half the widths).
for _name, _values, _published in (
    ("vovnet27s", {"layers": [1, 1, 1, 1], "channels": [128, 256, 384, 512], "branch": [64, 80, 96, 112]}, 3_525_736),
    ("vovnet39", {"layers": [1, 1, 2, 2]}, 22_600_296),
    ("vovnet57", {"layers": [1, 1, 4, 3]}, 36_640_296),
):
    register(
        Preset(
            _name,
            "vovnet.net",
            _values,
            "VoVNet (Lee et al. 2019), count: pytorchcv 0.0.74",
            _published,
            test_input=_IMAGENET_TEST,
        )
    )

# HarDNet (Chao et al. 2019): harmonic dense blocks; "ds" = depthwise separable.
for _name, _values, _published in (
    (
        "hardnet39ds",
        {
            "layers": [4, 16, 8, 4],
            "channels": [96, 320, 640, 1024],
            "growth": [16, 20, 64, 160],
            "down": [1, 1, 1, 0],
            "mult": 1.6,
            "stem": 48,
            "ds": True,
            "drop": 0.05,
        },
        3_488_228,
    ),
    ("hardnet68ds", {"ds": True, "drop": 0.05}, 4_180_602),
    ("hardnet68", {}, 17_565_348),
    (
        "hardnet85",
        {
            "layers": [8, 16, 16, 16, 16, 4],
            "channels": [192, 256, 320, 480, 720, 1280],
            "growth": [24, 24, 28, 36, 48, 256],
            "down": [1, 0, 1, 0, 1, 0],
            "stem": 96,
            "drop": 0.2,
            "last_drop": 0.1,
        },
        36_670_212,
    ),
):
    register(
        Preset(
            _name,
            "hardnet.net",
            _values,
            "HarDNet (Chao et al. 2019), count: pytorchcv 0.0.74",
            _published,
            test_input=_IMAGENET_TEST,
        )
    )

# DPN (Chen et al. 2017): dual path -- a residual and a densely connected stream side by side.
_DPN_LARGE = {"stem_kernel": 7, "bw_factor": 4}
for _name, _values, _published in (
    ("dpn68", {}, 12_611_602),
    (
        "dpn98",
        {**_DPN_LARGE, "units": [3, 6, 20, 3], "inc": [16, 32, 32, 128], "stem": 96, "k_r": 160, "groups": 40},
        61_570_728,
    ),
    (
        "dpn107",
        {**_DPN_LARGE, "units": [4, 8, 20, 3], "inc": [20, 64, 64, 128], "stem": 128, "k_r": 200, "groups": 50},
        86_917_800,
    ),
    (
        "dpn131",
        {**_DPN_LARGE, "units": [4, 8, 28, 3], "inc": [16, 32, 32, 128], "stem": 128, "k_r": 160, "groups": 40},
        79_254_504,
    ),
):
    register(
        Preset(
            _name,
            "dpn.net",
            _values,
            "DPN (Chen et al. 2017), count: pytorchcv 0.0.74",
            _published,
            test_input=_IMAGENET_TEST,
        )
    )

# PeleeNet (Wang et al. 2018): two-way dense layers (a parallel(concat) unit in a dense block).
register(
    Preset(
        "peleenet",
        "peleenet.net",
        {},
        "PeleeNet (Wang et al. 2018), count: pytorchcv 0.0.74",
        2_802_248,
        test_input=_IMAGENET_TEST,
    )
)

# DLA (Yu et al. 2018): hierarchical deep aggregation trees (tree1 .. tree4 in specs/dla.net).
for _name, _values, _published in (
    ("dla34", {}, 15_742_104),
    ("dla46c", {"channels": [64, 64, 128, 256], "bottleneck": True}, 1_301_400),
    ("dla60", {"levels": [1, 2, 3, 1], "channels": [128, 256, 512, 1024], "bottleneck": True}, 22_036_632),
    (
        "dla102",
        {"levels": [1, 3, 4, 1], "channels": [128, 256, 512, 1024], "bottleneck": True, "residual": True},
        33_268_888,
    ),
):
    register(
        Preset(
            _name,
            "dla.net",
            _values,
            "DLA (Yu et al. 2018), count: pytorchcv 0.0.74",
            _published,
            test_input=_IMAGENET_TEST,
        )
    )

# RandWire-WS (Xie et al. 2019): random graph stages (graph(ws(32, 4, 0.75), seed=s) blocks), Table 1's
# small and regular regimes with Table 2's counts (averaged over graph instances: ours is one instance).
for _name, _values, _published, _flops in (
    ("randwire_ws_small", {"C": 78}, 5.6e6, 583e6),
    ("randwire_ws_regular", {"C": 109, "regular": True}, 31.9e6, 4.0e9),
):
    register(
        Preset(
            _name,
            "randwire.net",
            _values,
            "RandWire (Xie et al. 2019), Tables 1-2 (WS(4, 0.75), N=32)",
            _published,
            _flops,
            test_input=_IMAGENET_TEST,
        )
    )

# FC-DenseNet (Jegou et al. 2017, "The One Hundred Layers Tiramisu", Table 2; CamVid, 11 classes):
# the authors' Lasagne code (SimJeg/FC-DenseNet). Table 2's counts include BatchNorm's running
# statistics, which Lasagne's parameter list holds (docs/zoo.md); ours are the trainable ones.
for _name, _values, _published in (
    ("fcdensenet56", {}, 1.5e6),
    ("fcdensenet67", {"layers": [5] * 11, "k": 16}, 3.5e6),
    ("fcdensenet103", {"layers": [4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4], "k": 16}, 9.4e6),
):
    register(
        Preset(
            _name,
            "fcdensenet.net",
            _values,
            "FC-DenseNet (Jegou et al. 2017), Table 2",
            _published,
            test_input=_IMAGENET_TEST,
        )
    )
