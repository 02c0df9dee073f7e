"""``netdsl search SPEC --dry-run``: the space's size, how many points fit the budget, and the
distribution of their exact costs, from the IR alone (nothing is built or trained)."""

from __future__ import annotations

import time

from ..errors import NetdslError
from .budget import Budget, human
from .folder import SearchError
from .space import Point, Space

SAMPLED = 1000  # points costed from a space too large (or continuous) to list


def dry_run(search, samples: int = SAMPLED, list_limit: int = 100_000) -> dict:
    """Cost every point of a finite space up to ``list_limit`` points, else ``samples`` sampled ones."""
    space: Space = search.space
    budget: Budget = search.budget
    started, cpu = time.perf_counter(), time.process_time()
    size = space.size()
    listed = size is not None and size <= list_limit
    points = list(space.points()) if listed else _sample(space, search.cfg.seed, samples)
    fits: list[tuple[Point, dict]] = []
    over: list[tuple[Point, dict]] = []
    refused: list[tuple[Point, str]] = []
    for p in points:
        try:
            c = search.cost(p)
        except NetdslError as err:
            refused.append((p, str(err).splitlines()[0]))
            continue
        (fits if budget.fits(c) else over).append((p, c))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    costed = [c for _, c in fits + over]
    cheapest = min(fits + over, key=lambda pc: (pc[1]["params"], pc[1]["flops"]), default=None)
    return {
        "space": space.describe(),
        "size": size,
        "listed": listed,
        "points_costed": len(points),
        "distinct_networks": len({tuple(sorted(c.items())) for c in costed}),
        "fit": len(fits),
        "over_budget": len(over),
        "refused": len(refused),
        "refused_example": refused[0][1] if refused else None,
        "budget": str(budget),
        "params": _distribution([c["params"] for _, c in fits]),
        "flops": _distribution([c["flops"] for _, c in fits]),
        "cheapest": {"values": cheapest[0].values, **cheapest[1]} if cheapest else None,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),  # this process's CPU time: what the costing needs on an idle machine
        "cache_hits": search.costs.hits,
    }


def _sample(space: Space, seed: int, n: int) -> list[Point]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.sample(trial))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return out


def _distribution(values: list[int]) -> dict | None:
    if not values:
        return None
    v = sorted(values)

    def q(f: float) -> int:
        return v[min(len(v) - 1, int(f * (len(v) - 1) + 0.5))]

    return {"min": v[0], "p10": q(0.1), "median": q(0.5), "p90": q(0.9), "max": v[-1]}


def dry_run_text(r: dict) -> str:
    size = f"{r['size']:,} points" if r["size"] is not None else "continuous (a float range)"
    how = "every point costed" if r["listed"] else f"{r['points_costed']:,} sampled points costed"
    lines = [
        "space: " + "; ".join(r["space"]),
        f"size: {size}; {how} in {r['seconds']:.2f} s ({r['cpu_seconds']:.2f} s of CPU; "
        f"{r['distinct_networks']:,} distinct costs)",
        f"budget {r['budget']}: {r['fit']:,} fit, {r['over_budget']:,} over"
        + (f", {r['refused']:,} refused by the compiler (e.g. {r['refused_example']})" if r["refused"] else ""),
    ]
    for name in ("params", "flops"):
        d = r[name]
        if d:
            lines.append(
                f"{name} of the points that fit: min {human(d['min'])}, p10 {human(d['p10'])}, "
                f"median {human(d['median'])}, p90 {human(d['p90'])}, max {human(d['max'])}"
            )
    return "\n".join(lines)


def no_fit_error(r: dict) -> SearchError:
    c = r["cheapest"]
    where = (
        f"; the cheapest point has params={human(c['params'])}, flops={human(c['flops'])} "
        f"({', '.join(f'{k}={v}' for k, v in c['values'].items())})"
        if c
        else ""
    )
    return SearchError(
        f"no point of the space fits the budget {r['budget']}{where}", None, "loosen --budget or widen the space"
    )
