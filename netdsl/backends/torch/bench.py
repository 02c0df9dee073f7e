"""Measurements shared by ``netdsl bench`` and ``benchmarks/``: medians of repeated timings and
the activation memory autograd saves, measured with saved-tensor hooks deduplicated by storage.

>>> import torch
>>> from netdsl.api import build_model
>>> m = build_model("specs/densenet_bc.net", depth=10)
>>> saved_bytes(m, torch.randn(2, 3, 32, 32)) > 0
True
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(
    fn: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
    done: Callable[[], None] = lambda: None,
) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs; ``done()`` is
    called after each run, outside the timed span (a progress bar's step)."""
    for _ in range(warmup):
        fn()
        done()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        done()
    return statistics.median(times)


def allocator() -> str:
    """The allocator this process runs under, as benchmark headers name it: ``LD_PRELOAD`` (else
    glibc malloc) and any ``MALLOC_CONF``. It moves CPU timings a lot (docs/performance.md)."""
    name = os.environ.get("LD_PRELOAD") or "glibc malloc"
    conf = os.environ.get("MALLOC_CONF")
    return f"{name} MALLOC_CONF={conf}" if conf else name


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd saves for backward in one training forward, each storage counted once
    (views of one buffer share it; parameters are not activations and are excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(storages.values())


def forward_fn(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return model(x)

    return run


def train_step_fn(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """One SGD step (forward, a loss, backward, update): cross-entropy against fixed labels; for a
    network with several outputs (a detector's heads: forward returns a tuple) the sum of their
    mean squares, which runs backward through every head."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    training = model.training
    with torch.no_grad():  # the output widths, in eval mode: batch 1 may reach a 1x1 map, which BN cannot train on
        probe = model.eval()(x[:1])
    model.train(training)
    if isinstance(probe, tuple):

        def loss_of(out) -> torch.Tensor:
            return sum((o.float().square().mean() for o in out), torch.zeros((), device=x.device))

    else:
        labels = torch.arange(x.shape[0], device=x.device) % probe.shape[1]

        def loss_of(out) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(out, labels)

    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model(x))
        loss.backward()
        opt.step()

    return run
