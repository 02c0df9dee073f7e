"""Batches and augmentation whose randomness is a pure function of (seed, epoch, step).

Nothing here draws from a global generator, so a resumed run and a distributed run see exactly
the images (and flips, shifts, holes) that an uninterrupted single-process run sees: every
process draws the parameters of the whole global batch and keeps its own contiguous slice.

>>> [b.tolist() for b in epoch_batches(6, 4, seed=0, epoch=0, drop_last=False)]
[[1, 4, 5, 3], [2, 0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy's SeedSequence hashing: no correlated streams)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator(*keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*keys))


def epoch_batches(n: int, batch: int, *, seed: int, epoch: int, drop_last: bool = True) -> list[torch.Tensor]:
    """The global batches of one epoch: a seeded permutation of ``range(n)`` cut into ``batch``-sized rows."""
    order = torch.randperm(n, generator=generator(seed, epoch, 0))
    stop = n - n % batch if drop_last else n
    return list(order[:stop].split(batch))


def shard(index: torch.Tensor, rank: int, world: int) -> slice:
    """This process's contiguous slice of a global batch (sizes differ by at most one)."""
    base, extra = divmod(len(index), world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


@dataclass(frozen=True)
class Augment:
    """Standard CIFAR augmentation (mirror + zero-padded shift) and cutout (DeVries & Taylor)."""

    mirror: bool = True
    shift: int = 4
    cutout_holes: int = 0
    cutout_size: int = 8

    @property
    def active(self) -> bool:
        return self.mirror or self.shift > 0 or self.cutout_holes > 0

    def draw(self, n: int, h: int, w: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Random parameters for ``n`` images, drawn in a fixed order from ``gen``."""
        p = {
            "flip": torch.rand(n, generator=gen) < 0.5,
            "dy": torch.randint(0, 2 * self.shift + 1, (n,), generator=gen),
            "dx": torch.randint(0, 2 * self.shift + 1, (n,), generator=gen),
        }
        for i in range(self.cutout_holes):
            p[f"cy{i}"] = torch.randint(0, h, (n,), generator=gen)
            p[f"cx{i}"] = torch.randint(0, w, (n,), generator=gen)
        return p

    def apply(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment normalized images ``x`` (N, C, H, W); cutout's holes become 0 (the mean)."""
        n, c, h, w = x.shape
        p = {k: v.to(x.device) for k, v in p.items()}
        if self.mirror:
            x = torch.where(p["flip"][:, None, None, None], x.flip(3), x)
        if self.shift > 0:
            s = self.shift
            padded = torch.nn.functional.pad(x, (s, s, s, s))
            rows = (p["dy"][:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (p["dx"][:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chans = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[batch, chans, rows, cols]
        if self.cutout_holes:
            ys = torch.arange(h, device=x.device)[None, :, None]
            xs = torch.arange(w, device=x.device)[None, None, :]
            half = self.cutout_size // 2
            keep = torch.ones(n, h, w, dtype=torch.bool, device=x.device)
            for i in range(self.cutout_holes):
                cy, cx = p[f"cy{i}"][:, None, None], p[f"cx{i}"][:, None, None]
                hole = (ys >= cy - half) & (ys < cy + half) & (xs >= cx - half) & (xs < cx + half)
                keep &= ~hole
            x = x * keep[:, None].to(x.dtype)
        return x


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float, per-channel standardized (mean/std on the 0..1 scale)."""
    return (images.float().div_(255) - mean[:, None, None]) / std[:, None, None]
