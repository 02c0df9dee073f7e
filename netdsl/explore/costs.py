"""Exact costs of a point before training: the IR's parameter and FLOP counts, without a torch module.

The spec and its includes are parsed once; each point is lowered and counted (shapes and counts
passes only), and a point seen before is answered from the cache.
"""

from __future__ import annotations

from pathlib import Path

from ..frontend import Limits
from ..frontend.load import collect_templates, load_module, lower_module
from ..passes import default_passes, run_pipeline
from .budget import METRICS


class CostModel:
    def __init__(
        self, spec: str | Path, fixed: dict | None = None, limits: Limits | None = None, text: str | None = None
    ):
        self.module, self.path = load_module(spec, text)
        self.templates = collect_templates(self.module, self.path)
        self.fixed = dict(fixed or {})  # values every point shares (--set, the data's class count)
        self.limits = limits
        self.cache: dict[tuple, dict] = {}
        self.hits = 0

    def costs(self, values: dict[str, str]) -> dict:
        """``{"params": n, "flops": n}`` of the network at ``values`` (spec text per parameter).
        A point the compiler refuses raises its located :class:`~netdsl.errors.NetdslError`."""
        key = tuple(sorted(values.items()))
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        graph = lower_module(self.module, self.path, self.templates, {**self.fixed, **values}, self.limits)
        graph = run_pipeline(graph, default_passes())
        out = {name: int(graph.graph[attr]) for name, attr in METRICS.items()}
        self.cache[key] = out
        return out
