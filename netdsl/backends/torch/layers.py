"""The few torch modules netdsl needs beyond torch.nn. The emitted standalone source embeds
this file's classes (inspect.getsource), so they must depend on torch alone."""

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al.): x * sigmoid(W2 relu(W1 gap(x)))."""

    def __init__(self, channels: int, hidden: int, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class Affine(nn.Module):
    """Per-channel y = x * scale + shift (an inference-time BatchNorm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


class L2Norm(nn.Module):
    """SSD's Normalize (across_spatial=false, channel_shared=false): every location's channel
    vector divided by its L2 norm, sqrt(sum_c x_c^2 + eps), times a learned per-channel scale."""

    def __init__(self, channels: int, scale: float, eps: float = 1e-10):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x):
        norm = torch.sqrt(x.pow(2).sum(1, keepdim=True) + self.eps)
        return x / norm * self.weight.view(1, -1, 1, 1)


class WeightedSum(nn.Module):
    """RandWire's aggregation (Xie et al. 2019): sum_k sigmoid(w_k) * x_k, one learnable weight per
    input (ones at first, as the JiaminRen/RandWireNN reference initializes them)."""

    def __init__(self, inputs: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(inputs))

    def forward(self, *xs):
        w = torch.sigmoid(self.weight)
        out = xs[0] * w[0]
        for k in range(1, len(xs)):
            out = out + xs[k] * w[k]
        return out
