"""Random-graph generators for ``graph(...)`` block patterns (RandWire, Xie et al. 2019).

A generator is a networkx random-graph model called with a fixed seed: ``ws(n, k, p)`` is
``networkx.watts_strogatz_graph``, ``er(n, p)`` ``networkx.erdos_renyi_graph`` and ``ba(n, m)``
``networkx.barabasi_albert_graph``. Its undirected edges are oriented from the lower to the higher
node index, which makes the graph a DAG whose topological order is the node order (the paper's
convention, and its reference implementations'). networkx draws from Python's ``random.Random(seed)``,
so the same seed gives the same graph on every machine; ``tests/test_graph_pattern.py`` pins an edge
list, so a change of networkx's algorithms is caught.

The work a generator does is known before it runs (:func:`work`): lowering charges it to the
network's budget (``Limits``) first, so a hostile spec cannot ask for a graph of 10^9 nodes.

>>> edges("ws", (6, 2, 0.0), seed=0)
((0, 1), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5))
>>> predecessors("ws", (6, 2, 0.0), seed=0)
((), (0,), (1,), (2,), (3,), (0, 4))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import networkx as nx


@dataclass(frozen=True, slots=True)
class Generator:
    """One random-graph model: its spec name, its arguments (all required, in networkx's order), the
    paper's name, an example, the networkx function and an upper bound of the node pairs it visits."""

    name: str
    params: tuple[str, ...]
    title: str
    example: str
    build: Callable[..., nx.Graph]
    work: Callable[..., int]


GENERATORS: dict[str, Generator] = {
    g.name: g
    for g in (
        Generator(
            "ws",
            ("n", "k", "p"),
            "Watts-Strogatz small world (networkx.watts_strogatz_graph)",
            "ws(32, 4, 0.75)",
            nx.watts_strogatz_graph,
            lambda n, k, p: n * k // 2,  # the ring's n*k/2 edges, each rewired at most once
        ),
        Generator(
            "er",
            ("n", "p"),
            "Erdos-Renyi (networkx.erdos_renyi_graph)",
            "er(32, 0.2)",
            nx.erdos_renyi_graph,
            lambda n, p: n * (n - 1) // 2,  # every pair is tested
        ),
        Generator(
            "ba",
            ("n", "m"),
            "Barabasi-Albert (networkx.barabasi_albert_graph)",
            "ba(32, 5)",
            nx.barabasi_albert_graph,
            lambda n, m: (n - m) * m + m,  # m edges per node after the first m
        ),
    )
}


def check(name: str, args: dict[str, int | float]) -> tuple[str, str, str | None] | None:
    """Why these arguments are refused: ``(argument, message, hint)``, or None when they are valid.
    The argument types (n, k, m integers; p a number) are checked by the caller."""
    n = args["n"]
    if name == "ws":
        k = args["k"]
        if n < 3:
            return "n", f"ws() needs n >= 3 nodes, got {n}", "a Watts-Strogatz ring needs at least 3 nodes"
        if k < 2 or k % 2:
            return (
                "k",
                f"ws() needs an even k >= 2, got {k}",
                "each node starts joined to its k nearest ring neighbours, k/2 on each side",
            )
        if k >= n:
            return (
                "k",
                f"ws() needs k < n, got k={k}, n={n}",
                f"at most k = {n - 1 - (n - 1) % 2} for {n} nodes (RandWire: ws(32, 4, 0.75))",
            )
    elif name == "er":
        if n < 1:
            return (
                "n",
                f"er() needs n >= 1 nodes, got {n}",
                "for example er(32, 0.2): 32 nodes, each pair joined with probability 0.2",
            )
    elif name == "ba":
        m = args["m"]
        if n < 2:
            return (
                "n",
                f"ba() needs n >= 2 nodes, got {n}",
                "for example ba(32, 5): 32 nodes, each new one attached to 5",
            )
        if not 1 <= m < n:
            return "m", f"ba() needs 1 <= m < n, got m={m}, n={n}", "each new node attaches to m earlier nodes"
    if "p" in args and not 0.0 <= args["p"] <= 1.0:
        return (
            "p",
            f"{name}() needs a probability 0 <= p <= 1, got {args['p']}",
            "RandWire uses ws(32, 4, 0.75) and er(32, 0.2)",
        )
    return None


def work(name: str, args: tuple) -> int:
    """An upper bound of the node pairs the generator visits: what lowering charges to the edge budget
    before calling networkx."""
    return GENERATORS[name].work(*args)


@lru_cache(maxsize=64)
def edges(name: str, args: tuple, seed: int) -> tuple[tuple[int, int], ...]:
    """The generator's edges, each ``(u, v)`` with u < v (oriented low to high), sorted."""
    gen = GENERATORS[name]
    values = [float(v) if p == "p" else v for p, v in zip(gen.params, args, strict=True)]  # p: a probability
    g = gen.build(*values, seed=seed)
    return tuple(sorted((min(u, v), max(u, v)) for u, v in g.edges()))


@lru_cache(maxsize=64)
def predecessors(name: str, args: tuple, seed: int) -> tuple[tuple[int, ...], ...]:
    """For each node v, its predecessors in the oriented graph (the lower-indexed neighbours), ascending."""
    preds: list[list[int]] = [[] for _ in range(args[0])]
    for u, v in edges(name, args, seed):
        preds[v].append(u)
    return tuple(tuple(sorted(p)) for p in preds)
