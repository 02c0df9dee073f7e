"""In-process PyTorch backend: an ``nn.Module`` that interprets the IR graph.

Submodules are named by the node ids (``block1.unit3.conv1``), so the state_dict keys are the
spec's own names. Concatenations are materialized per unit here (``opt=0``); the concat
placement pass swaps in a planned executor.
"""

from __future__ import annotations

import networkx as nx
import torch
from torch import nn

from ..ir.graph import topo_nodes
from .torch_ops import build_module, stateless_fn


def _attach(root: nn.Module, node_id: str, module: nn.Module) -> None:
    parts = node_id.split(".")
    parent = root
    for p in parts[:-1]:
        child = parent._modules.get(p)
        if child is None:
            child = nn.Module()
            parent.add_module(p, child)
        parent = child
    parent.add_module(parts[-1], module)


def schedule(graph: nx.DiGraph) -> tuple[list[str], dict[str, int]]:
    """Topological order and, per node, the step index after which its value is dead."""
    order = topo_nodes(graph)
    pos = {n: k for k, n in enumerate(order)}
    last_use = {}
    for n in order:
        for src in graph.nodes[n]["inputs"]:
            last_use[src] = max(last_use.get(src, -1), pos[n])
    return order, last_use


def stateful_modules(graph: nx.DiGraph, order: list[str]) -> dict[str, nn.Module]:
    mods = {}
    for n in order:
        d = graph.nodes[n]
        m = build_module(d["kind"], d["attrs"], [graph.nodes[i]["shape"] for i in d["inputs"]])
        if m is not None:
            mods[n] = m
    return mods


def setup_module(module: nn.Module, graph: nx.DiGraph):
    """Give ``module`` the spec's submodules (named by node id) and return the schedule and modules;
    shared by the naive and planned executors so their state_dicts are interchangeable."""
    order, last_use = schedule(graph)
    module.spec_name = graph.graph.get("name", "net")
    module.input_shape = tuple(graph.nodes[graph.graph["input"]]["shape"])
    mods = stateful_modules(graph, order)
    for n, m in mods.items():
        _attach(module, n, m)
    return order, last_use, mods


class NetdslModule(nn.Module):
    """The network of a compiled spec. ``forward(x)`` takes ``(N, C, H, W)``."""

    def __init__(self, graph: nx.DiGraph):
        super().__init__()
        order, last_use, mods = setup_module(self, graph)
        index = {n: k for k, n in enumerate(order)}
        steps = []
        for k, n in enumerate(order):
            d = graph.nodes[n]
            if d["kind"] == "input":
                continue
            fn = mods.get(n) or stateless_fn(d["kind"], d["attrs"])
            free = tuple(index[s] for s, last in last_use.items() if last == k and s != graph.graph["output"])
            steps.append((k, fn, tuple(index[i] for i in d["inputs"]), free))
        self._steps = steps
        self._n = len(order)
        self._input = index[graph.graph["input"]]
        self._output = index[graph.graph["output"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vals: list = [None] * self._n
        vals[self._input] = x
        for k, fn, ins, free in self._steps:
            vals[k] = fn(*[vals[i] for i in ins])
            for f in free:
                vals[f] = None
        return vals[self._output]

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}, input={self.input_shape}"


def init_weights(module: nn.Module, seed: int | None = None) -> nn.Module:
    """torchvision's DenseNet initialization: He-normal convs, BN weight 1 / bias 0, linear bias 0."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            with torch.no_grad():
                m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return module
