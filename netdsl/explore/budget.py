"""Cost budgets: ``params<=1.2M``, ``flops>=300M`` (several at once), decided from the IR's exact counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import Span, SpecValueError

METRICS = {"params": "total_params", "flops": "total_flops"}  # budget name -> the IR's graph attribute
_SUFFIX = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
_BOUND = re.compile(r"\s*([a-z]+)\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKMGBT]?)\s*\Z")


@dataclass(frozen=True)
class Bound:
    metric: str  # params | flops
    op: str  # <=, >=, <, >
    value: float
    text: str

    def holds(self, costs: dict) -> bool:
        v = costs[self.metric]
        return {"<=": v <= self.value, ">=": v >= self.value, "<": v < self.value, ">": v > self.value}[self.op]


def parse_bound(text: str) -> Bound:
    """``params<=1.2M`` -> Bound; a located error on anything else.

    >>> parse_bound("flops>=300M").value
    300000000.0
    """
    m = _BOUND.match(text)
    if m is None or m.group(1) not in METRICS:
        name = re.match(r"\s*([A-Za-z_]*)", text)
        bad_name = name is not None and name.group(1) and name.group(1) not in METRICS
        raise SpecValueError(
            f"cannot read the budget {text!r}" + (f": no cost named '{name.group(1)}'" if bad_name and name else ""),
            Span("--budget", 1, 1, 1, len(text) + 1, text=text),
            "write COST<=N or COST>=N, COST one of " + ", ".join(METRICS) + ", N like 1.2M, 300M, 5e6",
        )
    return Bound(m.group(1), m.group(2), float(m.group(3)) * _SUFFIX[m.group(4)], text.strip())


@dataclass(frozen=True)
class Budget:
    bounds: tuple[Bound, ...] = ()

    @classmethod
    def parse(cls, texts: list[str] | tuple[str, ...] | None) -> Budget:
        return cls(tuple(parse_bound(t) for t in texts or ()))

    def fits(self, costs: dict) -> bool:
        return all(b.holds(costs) for b in self.bounds)

    def broken(self, costs: dict) -> list[str]:
        """The bounds ``costs`` breaks, as written."""
        return [b.text for b in self.bounds if not b.holds(costs)]

    def __str__(self) -> str:
        return ", ".join(b.text for b in self.bounds) or "none"


def human(n: float) -> str:
    """1234567 -> '1.23M' (costs in messages and tables)."""
    for div, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"
