"""A hand-written DenseNet in the torchvision/timm style -- ``torch.cat`` of all predecessors
in every layer, in-place ReLUs -- and its "memory efficient" variant, which wraps
cat+BN+ReLU+1x1 conv in ``torch.utils.checkpoint`` exactly as torchvision's
``memory_efficient=True`` does. The baseline netdsl's planner is measured against.

Modules are declared in the order the netdsl spec declares them, so ``load_from(netdsl_model)``
copies the parameters positionally after checking every shape (``check_same`` verifies that
parameters and outputs agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn


class DenseLayer(nn.Module):
    def __init__(self, cin: int, k: int, width: int, memory_efficient: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, width * k, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width * k)
        self.conv2 = nn.Conv2d(width * k, k, 3, padding=1, bias=False)
        self.memory_efficient = memory_efficient

    def bottleneck(self, *features):
        return self.conv1(F.relu(self.bn1(torch.cat(features, 1)), inplace=True))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and any(f.requires_grad for f in features):
            out = cp.checkpoint(self.bottleneck, *features, use_reentrant=False)
        else:
            out = self.bottleneck(*features)
        return self.conv2(F.relu(self.bn2(out), inplace=True))


class DenseBlock(nn.Module):
    def __init__(self, n: int, cin: int, k: int, memory_efficient: bool):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * k, k, 4, memory_efficient) for i in range(n))

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x), inplace=True)), 2)


class DenseNet(nn.Module):
    """DenseNet-BC. ``imagenet``: 7x7/2 stem + BN-ReLU + 3x3/2 max pool (DenseNet-121);
    otherwise the CIFAR 3x3 stem of width 2k."""

    def __init__(self, blocks: list[int], k: int, classes: int, imagenet: bool, memory_efficient: bool = False):
        super().__init__()
        c = 2 * k
        if imagenet:
            self.stem = nn.Sequential(
                nn.Conv2d(3, c, 7, 2, 3, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            )
        else:
            self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.features = nn.ModuleList()
        for i, n in enumerate(blocks):
            self.features.append(DenseBlock(n, c, k, memory_efficient))
            c += n * k
            if i < len(blocks) - 1:
                self.features.append(Transition(c, c // 2))
                c //= 2
        self.norm = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.stem(x)
        for f in self.features:
            x = f(x)
        x = F.relu(self.norm(x), inplace=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def for_preset(name: str, memory_efficient: bool = False, **values) -> DenseNet:
    """The reference for a netdsl DenseNet-BC preset/spec values (depth or blocks, k, classes)."""
    if "blocks" in values:
        return DenseNet(list(values["blocks"]), values["k"], values["classes"], True, memory_efficient)
    n = (values["depth"] - 4) // 6
    return DenseNet([n, n, n], values["k"], values["classes"], False, memory_efficient)


def load_from(ref: nn.Module, netdsl_model: nn.Module) -> None:
    """Copy parameters and BN statistics positionally, refusing any shape mismatch."""
    src = list(netdsl_model.state_dict().items())
    dst = list(ref.state_dict().items())
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} tensors in the netdsl model, {len(dst)} in the reference")
    state = {}
    for (sk, sv), (dk, dv) in zip(src, dst, strict=True):
        if sv.shape != dv.shape:
            raise ValueError(f"{sk} {tuple(sv.shape)} vs {dk} {tuple(dv.shape)}")
        state[dk] = sv.clone()
    ref.load_state_dict(state)


def check_same(ref: nn.Module, netdsl_model: nn.Module, input_shape: tuple) -> float:
    """Same parameter count, and the max |difference| of eval outputs after ``load_from``."""
    n_ref = sum(p.numel() for p in ref.parameters())
    n_net = sum(p.numel() for p in netdsl_model.parameters())
    if n_ref != n_net:
        raise ValueError(f"parameters differ: reference {n_ref:,}, netdsl {n_net:,}")
    load_from(ref, netdsl_model)
    x = torch.randn((2,) + tuple(input_shape), generator=torch.Generator().manual_seed(0))
    ref.eval()
    netdsl_model.eval()
    with torch.no_grad():
        return (ref(x) - netdsl_model(x)).abs().max().item()
