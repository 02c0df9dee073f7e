"""The SeqConv networks' forward as the authors' code computes it, written out by hand for the tests.

A reading of GroupOfAlchemists/SeqConv (code/CIFAR/SeqResNet.py, SeqResNetB.py,
code/ImageNet/SeqResNet.py, SeqResNeXt.py), independent of netdsl: only torch. What it keeps
from the reference forward:

- every conv layer returns the pair (raw, activated): raw = conv(x) (+ the shortcut slice it is
  given), activated = ReLU(BN(raw)); convs have no bias (BN follows);
- a sequential layer's group y reads the layer input and the groups before it (windowed: the most
  recent input-width channels), and is given channel slice y of the incoming raw stream as its
  shortcut; the layer returns the concatenated raws and activations;
- a residual block: layer A without shortcut, then layer B with the incoming raw stream; the
  block hands on layer B's (raws, activations);
- a head layer's raws start the stream (CIFAR); on ImageNet a grouped stride-2 conv restarts it,
  and every down-sampling block restarts it from its stride-2 conv's raw output;
- SeqResNeXt's down-sampling conv reads [extension, extension] (``twice``): its extension layer
  pops the input groups off the list it was handed and appends its outputs to it, so that list
  holds the extension's outputs alone when the block appends them once more.

Dropout2d (CIFAR's DropRate) is left out: these modules are the reference with DropRate=0.
Modules are registered in forward order, the order netdsl creates its modules, so weights are
copied by position (:func:`copy_weights`).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x, shortcut=None):
        raw = self.conv(x)
        if shortcut is not None:
            raw = raw + shortcut
        return raw, torch.relu(self.bn(raw))


class Group(nn.Module):
    """One group of a sequential layer: [1x1 conv to k, BN, ReLU,] 3x3 conv (card subgroups), BN, ReLU."""

    def __init__(self, cin: int, k: int, bottleneck: bool, card: int):
        super().__init__()
        self.reduce = ConvBN(cin, k, 1) if bottleneck else None
        self.transform = ConvBN(k if bottleneck else cin, k, 3, groups=card)

    def forward(self, x, shortcut=None):
        if self.reduce is not None:
            x = self.reduce(x)[1]
        return self.transform(x, shortcut)


class SeqLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, windowed: bool, bottleneck: bool, card: int = 1):
        super().__init__()
        self.k, self.windowed = k, windowed
        self.groups = nn.ModuleList(
            Group(cin if windowed else cin + y * k, k, bottleneck, card) for y in range(cout // k)
        )

    def forward(self, x, shortcut=None):
        view, raws, acts = x, [], []
        for y, group in enumerate(self.groups):
            piece = None if shortcut is None else shortcut[:, y * self.k : (y + 1) * self.k]
            raw, act = group(view, piece)
            raws.append(raw)
            acts.append(act)
            view = torch.cat([view[:, self.k :] if self.windowed else view, act], 1)
        return torch.cat(raws, 1), torch.cat(acts, 1)


class Residual(nn.Module):
    def __init__(self, c: int, k: int, bottleneck: bool, card: int):
        super().__init__()
        self.a = SeqLayer(c, c, k, True, bottleneck, card)
        self.b = SeqLayer(c, c, k, True, bottleneck, card)

    def forward(self, act, raw):
        return self.b(self.a(act)[1], raw)


class Downsample(nn.Module):
    def __init__(self, cin, cout, k, bottleneck, card, k_next, card_next, twice):
        super().__init__()
        self.twice = twice
        self.extend = SeqLayer(cin, cout - cin, k, True, bottleneck, card)
        self.shrink = ConvBN(cout, cout, 3, 2, groups=cout // k_next * card_next)

    def forward(self, x):
        ext = self.extend(x)[1]
        return self.shrink(torch.cat([ext, ext] if self.twice else [x, ext], 1))


class _Net(nn.Module):
    """The stages in forward order: ``body`` holds stage 1's residual blocks, down-sampling block
    1, stage 2's blocks, ... (a residual block takes and returns the pair (raw, activated))."""

    def run_body(self, raw, act):
        for block in self.body:
            if isinstance(block, Downsample):
                raw, act = block(act)
            else:
                raw, act = block(act, raw)
        act = self.blender(act)[1]
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(act, 1), 1))


class SeqResNetCIFAR(_Net):
    """SeqResNet / SeqResNet-B for CIFAR: widths 16r, 32r, 48r (netdsl's seqresnet.net)."""

    def __init__(self, k: int, r: int, n: int, b: bool, classes: int = 10):
        super().__init__()
        widths = [16 * r, 32 * r, 48 * r]
        self.init = ConvBN(3, 16)
        self.head = SeqLayer(16, widths[0], k, False, b)
        self.body = nn.ModuleList()
        for s, w in enumerate(widths):
            self.body.extend(Residual(w, k, b, 1) for _ in range(n))
            if s < 2:
                self.body.append(Downsample(w, widths[s + 1], k, b, 1, k, 1, False))
        self.blender = ConvBN(widths[-1], widths[-1], 1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        raw, act = self.head(self.init(x)[1])
        return self.run_body(raw, act)


class SeqResNetImageNet(_Net):
    """SeqResNet-B / SeqResNeXt for ImageNet (netdsl's seqresnet_imagenet.net)."""

    def __init__(self, blocks, widen, ks, cards, classes=1000, twice=False):
        super().__init__()
        w0 = 64 * widen
        widths = [w0 * 2**s for s in range(4)]
        self.head0 = ConvBN(3, 32, stride=2)
        self.head1 = ConvBN(32, 32)
        self.head2 = SeqLayer(32, w0, ks[0], False, True, cards[0])
        self.shrink = ConvBN(w0, w0, 3, 2, groups=w0 // ks[0] * cards[0])
        self.body = nn.ModuleList()
        for s in range(4):
            self.body.extend(Residual(widths[s], ks[s], True, cards[s]) for _ in range(blocks[s]))
            if s < 3:
                self.body.append(
                    Downsample(widths[s], widths[s + 1], ks[s], True, cards[s], ks[s + 1], cards[s + 1], twice)
                )
        self.blender = ConvBN(widths[-1], widths[-1], 1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        act = self.head1(self.head0(x)[1])[1]
        raw, act = self.shrink(self.head2(act)[1])
        return self.run_body(raw, act)


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy ``src``'s state into ``dst`` by position (both register their modules in forward
    order), checking every shape."""
    theirs, mine = list(src.state_dict().items()), list(dst.state_dict().items())
    assert len(theirs) == len(mine), (len(theirs), len(mine))
    state = {}
    for (ks, v), (kd, w) in zip(theirs, mine, strict=True):
        assert v.shape == w.shape, (ks, tuple(v.shape), kd, tuple(w.shape))
        state[kd] = v.clone()
    dst.load_state_dict(state)
