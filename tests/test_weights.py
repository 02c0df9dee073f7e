"""Weights in and out (netdsl/weights): published layouts mapped onto netdsl models by structure.

Equality is always against an independent reference forward: pytorchcv's own modules (an
optional dependency: ``pip install pytorchcv==0.0.74 --no-deps``; its model files are imported
one by one) and the hand-written torchvision modules of tests/torchvision_reference.py.
"""

from __future__ import annotations

import pytest
import torch
import torchvision_reference as tv
from torch import nn

import netdsl
from netdsl.cli import main
from netdsl.errors import WeightsError

TOL = 1e-5  # the bound on the max relative difference of the logits


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every tensor random, BN running statistics included (so a misplaced one shows), eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-0.5, 0.5, generator=gen)
    return model.eval()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


def logits(model: nn.Module, size: tuple[int, int], seed: int = 1) -> torch.Tensor:
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


# ------------------------------------------------------------------------------ pytorchcv


def pcv(module: str):
    return pytest.importorskip(f"pytorchcv.models.{module}", reason="pytorchcv 0.0.74 is optional")


def adaptive_pool(ref: nn.Module) -> nn.Module:
    """pytorchcv pools with a fixed 7x7 (ImageNet) or 8x8 (CIFAR) window, the final map at the
    native size; global pooling is the same there and lets the test run at a small size."""
    ref.features.final_pool = nn.AdaptiveAvgPool2d(1)
    return ref


def check_pytorchcv(ref: nn.Module, target: str, size: tuple[int, int], **overrides) -> float:
    """Load ``ref``'s random weights into the netdsl model: equal logits; export them back by
    pytorchcv's naming rule: exactly ``ref``'s state_dict."""
    randomize(adaptive_pool(ref))
    net = netdsl.build_model(target, weights=ref.state_dict(), layout="pytorchcv", size=size[0], **overrides)
    diff = rel_diff(logits(ref, size), logits(net, size))
    assert diff <= TOL
    exported, want = netdsl.export_weights(net, "pytorchcv"), ref.state_dict()
    assert [(k, v.shape) for k, v in exported.items()] == [(k, v.shape) for k, v in want.items()]
    assert all(torch.equal(v, want[k]) for k, v in exported.items())
    return diff


def test_pytorchcv_densenet_bc_small():
    dc = pcv("densenet_cifar")
    k, n = 4, 2
    channels = [[8 + k * (i + 1) for i in range(n)], [8 + k * (i + 1) for i in range(n)]]
    channels = [[2 * k + k * (i + 1) for i in range(n)]]
    for _ in range(2):
        start = channels[-1][-1] // 2
        channels.append([start + k * (i + 1) for i in range(n)])
    ref = dc.CIFARDenseNet(channels=channels, init_block_channels=2 * k, bottleneck=True)
    check_pytorchcv(ref, "densenet_bc100_k12", (8, 8), depth=6 * n + 4, k=k)


def sparsenet_channels(sp, init: int, k: int, layers: list[int]) -> list[list[int]]:
    """pytorchcv's get_sparsenet channel rule for any block sizes."""
    out, width = [], init * 2
    for n in layers:
        stage = [width // 2]
        for j in range(n):
            stage.append(sum(sp.sparsenet_exponential_fetch([stage[0]] + [k] * (j + 1))))
        out.append(stage[1:])
        width = stage[-1]
    return out


def test_pytorchcv_sparsenet_small_permutes_newest_first():
    sp = pcv("sparsenet")
    k, init, layers = 4, 8, [5, 4]
    ref = sp.SparseNet(channels=sparsenet_channels(sp, init, k, layers), init_block_channels=init, growth_rate=k)
    check_pytorchcv(ref, "sparsenet_exp121", (32, 32), blocks=layers, k=k, classes=1000)
    # the same weights taken in netdsl's oldest-first order compute something else
    net = netdsl.build_model("sparsenet_exp121", weights=ref.state_dict(), layout="torchvision", blocks=layers, k=k)
    assert rel_diff(logits(ref, (32, 32)), logits(net, (32, 32), 1)) > 0.01


def test_pytorchcv_export_like_round_trip():
    sp = pcv("sparsenet")
    k, init, layers = 4, 8, [5, 4]

    def build():
        ref = sp.SparseNet(channels=sparsenet_channels(sp, init, k, layers), init_block_channels=init, growth_rate=k)
        return adaptive_pool(ref)

    net = randomize(netdsl.build_model("sparsenet_exp121", blocks=layers, k=k), seed=3)
    ref = build()
    state = netdsl.export_weights(net, "pytorchcv", like=ref.state_dict())
    assert list(state) == list(ref.state_dict())
    ref.load_state_dict(state)
    assert rel_diff(logits(net, (32, 32)), logits(ref, (32, 32))) <= TOL


# Every netdsl preset pytorchcv 0.0.74 also ships: (pytorchcv file, its constructor, netdsl target, overrides).
# pytorchcv's non-BC CIFAR DenseNets have a 2k-wide first conv and halve the width in transitions
# (netdsl's presets follow the paper: 16 channels, theta = 1), so they load with those two values set.
# pytorchcv's other SparseNets are sparsenet_exp121's spec with its block sizes and growth rate.
# specs/resnet.net is torchvision's ResNet (stride on the 3x3 conv): pytorchcv's "b" variants and ResNeXts.
PYTORCHCV = [
    ("densenet_cifar", "densenet40_k12_cifar10", "densenet40_k12", {"init": 24, "theta": 0.5}),
    ("densenet_cifar", "densenet100_k12_cifar10", "densenet100_k12", {"init": 24, "theta": 0.5}),
    ("densenet_cifar", "densenet100_k24_cifar10", "densenet100_k24", {"init": 48, "theta": 0.5}),
    ("densenet_cifar", "densenet100_k12_bc_cifar10", "densenet_bc100_k12", {}),
    ("densenet_cifar", "densenet250_k24_bc_cifar10", "densenet_bc250_k24", {}),
    ("densenet_cifar", "densenet190_k40_bc_cifar10", "densenet_bc190_k40", {}),
    ("densenet", "densenet121", "densenet121", {}),
    ("densenet", "densenet161", "densenet161", {}),
    ("densenet", "densenet169", "densenet169", {}),
    ("densenet", "densenet201", "densenet201", {}),
    ("sparsenet", "sparsenet121", "sparsenet_exp121", {}),
    ("sparsenet", "sparsenet161", "sparsenet_exp121", {"blocks": [6, 12, 36, 24], "k": 48}),
    ("sparsenet", "sparsenet169", "sparsenet_exp121", {"blocks": [6, 12, 32, 32]}),
    ("sparsenet", "sparsenet201", "sparsenet_exp121", {"blocks": [6, 12, 48, 32]}),
    ("sparsenet", "sparsenet264", "sparsenet_exp121", {"blocks": [6, 12, 64, 48]}),
    ("resnet", "resnet50b", "specs/resnet.net", {}),
    ("resnet", "resnet101b", "specs/resnet.net", {"layers": [3, 4, 23, 3]}),
    ("resnet", "resnet152b", "specs/resnet.net", {"layers": [3, 8, 36, 3]}),
    ("resnext", "resnext50_32x4d", "specs/resnet.net", {"groups": 32, "base": 4}),
    ("resnext", "resnext101_32x4d", "specs/resnet.net", {"groups": 32, "base": 4, "layers": [3, 4, 23, 3]}),
    ("resnext", "resnext101_64x4d", "specs/resnet.net", {"groups": 64, "base": 4, "layers": [3, 4, 23, 3]}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "name", "target", "overrides"), PYTORCHCV, ids=[p[1] for p in PYTORCHCV])
def test_pytorchcv_model_logits_equal(module, name, target, overrides):
    ref = getattr(pcv(module), name)()
    size = (8, 8) if module == "densenet_cifar" else (32, 32)
    diff = check_pytorchcv(ref, target, size, **overrides)
    print(f"{name} -> {target}: max relative difference {diff:.2e}")


# ---------------------------------------------------------------------------- torchvision


def small_densenet() -> tuple[nn.Module, nn.Module]:
    ref = randomize(tv.DenseNet(growth=4, blocks=(2, 3), init=8, classes=10))
    net = netdsl.build_model("densenet121", blocks=[2, 3], k=4, classes=10, size=32)
    return ref, net


def test_torchvision_densenet_logits_equal_and_old_keys():
    ref, net = small_densenet()
    want = logits(ref, (32, 32))
    netdsl.load_weights(net, ref.state_dict(), layout="torchvision")
    assert rel_diff(want, logits(net, (32, 32))) <= TOL
    old = tv.old_densenet_keys(ref.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    fresh = netdsl.build_model("densenet121", blocks=[2, 3], k=4, classes=10, size=32)
    netdsl.load_weights(fresh, old, layout="torchvision")
    assert rel_diff(want, logits(fresh, (32, 32))) <= TOL


def test_torchvision_export_is_torchvision_state_dict(tmp_path):
    ref, net = small_densenet()
    randomize(net, seed=5)
    state = netdsl.export_weights(net, "torchvision")
    assert [(k, tuple(v.shape)) for k, v in state.items()] == [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    ref.load_state_dict(state)
    assert rel_diff(logits(net, (32, 32)), logits(ref, (32, 32))) <= TOL
    back = netdsl.build_model(
        "densenet121", blocks=[2, 3], k=4, classes=10, size=32, weights=state, layout="torchvision"
    )
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in net.state_dict().items())


def test_torchvision_resnet_small():
    ref = randomize(tv.ResNet(layers=(2, 1), classes=10))
    net = netdsl.build_model("specs/resnet.net", layers=[2, 1], classes=10, size=32)
    netdsl.load_weights(net, ref.state_dict(), layout="torchvision")
    assert rel_diff(logits(ref, (32, 32)), logits(net, (32, 32))) <= TOL
    state = netdsl.export_weights(net, "torchvision")
    assert list(state) == list(ref.state_dict())
    assert "layer1.0.downsample.0.weight" in state and "layer2.0.downsample.1.running_var" in state


TORCHVISION = [*tv.DENSENET, *tv.RESNET]


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_fixture_full_size(name):
    if name in tv.RESNET:
        layers, count = tv.RESNET[name]
        ref, target, overrides = tv.ResNet(layers), "specs/resnet.net", {"layers": list(layers)}
    else:
        growth, blocks, init, count = tv.DENSENET[name]
        ref, target, overrides = tv.DenseNet(growth, blocks, init), name, {}
    assert sum(p.numel() for p in ref.parameters()) == count  # the fixture is torchvision's network
    randomize(ref)
    net = netdsl.build_model(target, size=32, weights=ref.state_dict(), layout="torchvision", **overrides)
    diff = rel_diff(logits(ref, (32, 32)), logits(net, (32, 32)))
    assert diff <= TOL
    exported = netdsl.export_weights(net, "torchvision")
    assert [(k, v.shape) for k, v in exported.items()] == [(k, v.shape) for k, v in ref.state_dict().items()]
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in exported.items())
    if name in tv.DENSENET:
        old = netdsl.build_model(target, size=32, weights=tv.old_densenet_keys(ref.state_dict()), layout="torchvision")
        assert rel_diff(logits(ref, (32, 32)), logits(old, (32, 32))) <= TOL
    print(f"torchvision {name}: max relative difference {diff:.2e}")


ROUND_TRIP = [
    ("densenet_bc100_k12", {"depth": 16, "k": 4, "size": 8}),
    ("densenet40_k12", {"depth": 10, "size": 8}),
    ("sparsenet_bc_v1", {"blocks": [3, 4], "k": 4, "size": 8}),  # windowed, output=next: permuted for pytorchcv
    ("sparsenet_abc_v1", {"blocks": [2, 3], "k": 4, "size": 8}),
    ("specs/resnet.net", {"layers": [2, 1], "size": 32, "classes": 10}),
]


@pytest.mark.parametrize("layout", ["torchvision", "pytorchcv"])
@pytest.mark.parametrize(("target", "overrides"), ROUND_TRIP, ids=[t for t, _ in ROUND_TRIP])
def test_export_then_load_is_identity(target, overrides, layout):
    net = randomize(netdsl.build_model(target, **overrides), seed=6)
    state = netdsl.export_weights(net, layout)
    assert len(state) == len(net.state_dict())
    back = netdsl.build_model(target, seed=1, weights=state, layout=layout, **overrides)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in net.state_dict().items())


def test_export_refuses_what_the_layout_cannot_name():
    net = netdsl.build_model("dense2net121", blocks=[2, 2], k=8, size=8)
    with pytest.raises(WeightsError, match="the torchvision DenseNet layout has plain dense blocks only"):
        netdsl.export_weights(net, "torchvision")
    seq = netdsl.build_model("seqresnet_k8_r4_n1", size=8)
    with pytest.raises(WeightsError, match="no pytorchcv name for the conv module 1 of the head"):
        netdsl.export_weights(seq, "pytorchcv")


# --------------------------------------------------------------------------------- errors


def test_wrong_shape_names_the_key():
    ref, _ = small_densenet()
    net = netdsl.build_model("densenet121", blocks=[2, 3], k=5, classes=10, size=32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    message = r"'features\.conv0\.weight' \(netdsl's 'stem\.weight'\) has shape \[8, 3, 7, 7\], "
    with pytest.raises(WeightsError, match=message + r"the network needs \[10, 3, 7, 7\]"):
        netdsl.load_weights(net, ref.state_dict(), layout="torchvision")
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # nothing half-loaded


def test_missing_module_and_missing_key():
    ref, _ = small_densenet()
    deeper = netdsl.build_model("densenet121", blocks=[2, 4], k=4, classes=10, size=32)
    # block 2 has one unit more: its BN takes features.norm5 (same width), then the classifier misfits
    misfit = (
        r"weight module 26 does not fit: the weights have linear 'classifier' \(weight \[10, 20\]\) \[weight, bias\] "
    )
    misfit += r"where the network has conv 'block2\.unit4\.conv1' \(weight \[16, 20, 1, 1\]\) \[weight\]"
    with pytest.raises(WeightsError, match=misfit):
        netdsl.load_weights(deeper, ref.state_dict(), layout="torchvision")
    _, net = small_densenet()
    state = net.state_dict()
    del state["block1.unit2.conv1.weight"]
    with pytest.raises(WeightsError, match=r"the weights have no 'block1\.unit2\.conv1\.weight' \(1 keys missing\)"):
        netdsl.load_weights(net, state)
    with pytest.raises(WeightsError, match="unknown weights layout 'timm'"):
        netdsl.load_weights(net, state, layout="timm")


def test_permuted_channels_into_a_grouped_conv_are_refused(write_spec):
    spec = write_spec(
        'include "lib/densenet.net"\n'
        "network grouped(size=8) {\n"
        "    input(3, size, size)\n"
        "    stem: conv(8, 3)\n"
        "    block(3, rule(ispow2(i - j)), output=next) { bottleneck(4) }\n"
        "    mix: conv(8, 3, groups=2)\n"
        "    head(10)\n"
        "}\n"
    )
    net = netdsl.build_model(spec)
    # pytorchcv orders this block's output newest first: a grouped conv cannot take it permuted
    with pytest.raises(
        WeightsError, match="cannot map the 'pytorchcv' layout's channel order through 'mix' \\(conv\\)"
    ):
        netdsl.load_weights(net, net.state_dict(), layout="pytorchcv")
    netdsl.load_weights(net, net.state_dict(), layout="torchvision")  # oldest first: nothing to permute


def test_checkpoint_file_forms(tmp_path):
    _, net = small_densenet()
    randomize(net, seed=2)
    for i, wrap in enumerate((lambda s: s, lambda s: {"state_dict": s}, lambda s: {"model": s})):
        path = tmp_path / f"w{i}.pt"
        torch.save(wrap({"module." + k: v for k, v in net.state_dict().items()}), path)
        other = netdsl.build_model("densenet121", blocks=[2, 3], k=4, classes=10, size=32, weights=path)
        assert all(torch.equal(v, other.state_dict()[k]) for k, v in net.state_dict().items())


def test_model_without_known_network():
    _, net = small_densenet()
    plain = netdsl.backends.torch.codegen.build(netdsl.compile_spec("densenet121", blocks=[2, 3], k=4))
    with pytest.raises(WeightsError, match="network is unknown"):
        netdsl.load_weights(plain, net.state_dict(), layout="torchvision")


# ------------------------------------------------------------------------------------ CLI


def test_cli_export_weights(tmp_path, capsys):
    ref, net = small_densenet()
    randomize(net, seed=4)
    ckpt, out = tmp_path / "net.pt", tmp_path / "tv.pt"
    torch.save(net.state_dict(), ckpt)
    args = ["export-weights", "densenet121", "--set", "blocks=[2,3]", "--set", "k=4", "--set", "classes=10"]
    assert main([*args, "--weights", str(ckpt), "--layout", "torchvision", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    state = torch.load(out, weights_only=True)
    ref.load_state_dict(state)
    assert rel_diff(logits(net, (32, 32)), logits(ref, (32, 32))) <= TOL


def test_cli_export_weights_like_a_reference_file(tmp_path, capsys):
    ref, net = small_densenet()
    randomize(net, seed=8)
    ckpt, like, out = tmp_path / "net.pt", tmp_path / "ref.pt", tmp_path / "out.pt"
    torch.save({"model": net.state_dict()}, ckpt)
    torch.save(ref.state_dict(), like)
    args = ["export-weights", "densenet121", "--set", "blocks=[2,3]", "--set", "k=4", "--set", "classes=10"]
    assert main([*args, "--weights", str(ckpt), "--layout", "pytorchcv", "--like", str(like), "-o", str(out)]) == 0
    state = torch.load(out, weights_only=True)
    assert list(state) == list(ref.state_dict())  # the reference's keys, whatever the layout's own names
    ref.load_state_dict(state)
    assert rel_diff(logits(net, (32, 32)), logits(ref, (32, 32))) <= TOL


def test_cli_export_weights_errors_one_line(tmp_path, capsys):
    _, net = small_densenet()
    ckpt, out = tmp_path / "net.pt", tmp_path / "tv.pt"
    torch.save(net.state_dict(), ckpt)
    args = ["export-weights", "densenet121", "--set", "blocks=[2,3]", "--set", "k=5", "--weights", str(ckpt)]
    assert main([*args, "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: 'stem.weight' has shape [8, 3, 7, 7], the network needs [10, 3, 7, 7]\n"
        "hint: build the network with the parameters the weights were trained with (e.g. --set k=24)\n"
    )
    assert not out.exists()
    assert main([*args, "-o", str(tmp_path / "no" / "x.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_compile_onnx_with_torchvision_weights(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    ref, _ = small_densenet()
    ckpt, out = tmp_path / "tv.pt", tmp_path / "m.onnx"
    torch.save({"state_dict": ref.state_dict()}, ckpt)
    args = [
        "compile",
        "densenet121",
        "--set",
        "blocks=[2,3]",
        "--set",
        "k=4",
        "--set",
        "classes=10",
        "--set",
        "size=32",
    ]
    assert main([*args, "--target", "onnx", "--weights", str(ckpt), "--layout", "torchvision", "-o", str(out)]) == 0
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    assert rel_diff(logits(ref, (32, 32)), got) <= 1e-5
