"""A grammar-aware fuzzer: random programs drawn from the Lark grammar itself (grammars/netdsl.lark),
mixed with mutants of the bundled specs (mutations.py). Every case must compile or fail with
netdsl's own error type, within a per-case CPU-time budget.

The generator walks the grammar's rules (as lark expanded them), choosing expansions at random and,
past a depth or size, the cheapest one so every program terminates. Terminals come from pools that
favour the language's own vocabulary (ops, patterns, argument names) and hostile values (huge and
negative numbers, reserved names, markup and paths in strings), so generated programs reach
lowering, not only the parser. Case ``n`` of seed ``s`` is always the same text.

    python -m fuzz.grammar 20000 --seed 0     (from tests/; what the slow test runs)

>>> a = generate(random.Random(3)); b = generate(random.Random(3))
>>> a == b and isinstance(a, str)
True
"""

from __future__ import annotations

import random
import sys
import time
from functools import lru_cache
from pathlib import Path

from netdsl.progress import TaskProgress

from .mutations import ROOT, Report, cpu_alarm, mutate, run_within, spec_files

NAMES = [
    "conv",
    "bn",
    "relu",
    "gap",
    "linear",
    "maxpool",
    "avgpool",
    "dropout",
    "identity",
    "se",
    "sigmoid",
    "block",
    "residual",
    "parallel",
    "branch",
    "repeat",
    "use",
    "add",
    "mul",
    "concat",
    "input",
    "output",
    "dense",
    "path",
    "window",
    "split",
    "rule",
    "floor",
    "ceil",
    "min",
    "max",
    "len",
    "ispow2",
    "int",
    "i",
    "j",
    "k",
    "n",
    "x",
    "unit",
    "channels",
    "height",
    "width",
    "all",
    "new",
    "last",
    "next",
    "out",
    "kernel",
    "stride",
    "pad",
    "groups",
    "output",
    "aggregate",
    "far",
    "near",
    "g",
    "scale",
    "mode",
    "p",
    "bypass",
    "stage",
    "bottleneck",
    "transition",
    "head",
] * 3 + [
    "None",
    "class",
    "forward",
    "input_shape",
    "spec_name",
    "memory_format",
    "f",
    "F",
    "squeeze_excite",
    "self",
    "torch",
    "_x",
    "__class__",
    "training",
    "a" * 300,
]
INTS = [
    "0",
    "1",
    "1",
    "2",
    "2",
    "3",
    "4",
    "4",
    "8",
    "8",
    "16",
    "32",
    "100",
    "2000",
    "100000000",
    "99999999999999999999",
    "9" * 5000,
]
FLOATS = ["0.5", "1e-5", "2.5", "1e308", "0.0"]
STRINGS = [
    '""',
    '"a"',
    '"[bold]x[/bold]"',
    '"[link=http://x]y"',
    '"$x$"',
    '"lib/densenet.net"',
    '"/etc/passwd"',
    '"../../x.net"',
    '"lib/seqconv.net"',
    '"x.txt"',
]
POOLS = {
    "NAME": NAMES,
    "INT": INTS,
    "FLOAT": FLOATS,
    "STRING": STRINGS,
    "COMP_OP": ["==", "!=", "<", "<=", ">", ">="],
    "ADD_OP": ["+", "-"],
    "MUL_OP": ["*", "/", "//", "%"],
}
MAX_DEPTH = 7
MAX_TOKENS = 300


@lru_cache(maxsize=1)
def _grammar():
    """(rules by nonterminal, terminal patterns, cheapest-expansion cost of each symbol)."""
    from netdsl.frontend.parser import _parser

    parser = _parser()
    rules: dict[str, list[list[str]]] = {}
    for r in parser.rules:
        rules.setdefault(r.origin.name, []).append([s.name for s in r.expansion])
    literal = {t.name: t.pattern.value for t in parser.terminals if t.pattern.type == "str"}
    cost: dict[str, float] = {name: float("inf") for name in rules}
    changed = True
    while changed:  # fixed point: the fewest terminals each nonterminal can derive
        changed = False
        for name, expansions in rules.items():
            best = min(sum(cost.get(s, 1) if s in rules else 1 for s in e) for e in expansions)
            if best < cost[name]:
                cost[name], changed = best, True
    return rules, literal, cost


def _terminal(name: str, literal: dict, rng: random.Random) -> str:
    if name in literal:
        return literal[name]
    return rng.choice(POOLS[name])


def _expand(symbol: str, rng: random.Random, depth: int, out: list[str]) -> None:
    rules, literal, cost = _grammar()
    if symbol not in rules:
        out.append(_terminal(symbol, literal, rng))
        return
    expansions = rules[symbol]
    if depth > MAX_DEPTH or len(out) > MAX_TOKENS:
        choice = min(expansions, key=lambda e: sum(cost.get(s, 1) if s in rules else 1 for s in e))
    else:
        choice = rng.choice(expansions)
    for s in choice:
        _expand(s, rng, depth + 1, out)


def generate(rng: random.Random) -> str:
    """One program: either a whole file from ``start`` or, more often, a network whose body is
    drawn from ``stmt`` after a valid ``input(...)`` so that lowering is reached."""
    out: list[str] = []
    if rng.random() < 0.25:
        _expand("start", rng, 0, out)
        return " ".join(out) + "\n"
    prelude = rng.choice(["", 'include "lib/densenet.net"\n', "def t(k) { bn; relu; conv(k, 3) }\n"])
    for _ in range(rng.randint(1, 6)):
        _expand("stmt", rng, 1, out)
        out.append("\n")
    body = " ".join(out)
    return f"{prelude}network g() {{\n    input(3, 8, 8)\n    {body}}}\n"


GENERATED = ROOT / "specs" / "generated.net"  # not a file: cases compile as if there (includes resolve)


def case_text(n: int, seed: int, seeds: list[tuple[Path, str]]) -> tuple[str, Path, str, str]:
    """Case ``n``: (case id, spec path it compiles as, kind, text). Even cases are grammar
    programs, odd cases mutants of the bundled specs (round robin)."""
    rng = random.Random(seed * 1_000_003 + n)
    if n % 2 == 0:
        return f"grammar#{seed}:{n}", GENERATED, "grammar", generate(rng)
    spec, text = seeds[(n // 2) % len(seeds)]
    m = mutate(text, rng, rng.choice((1, 1, 1, 2, 3)))
    return f"{spec.name}#{seed}:{n}", spec, m.kind, m.text


def fuzz(cases: int, seed: int = 0, budget_s: float = 5.0, emit: bool = True, progress: bool = False) -> Report:
    """Run ``cases`` cases, each within ``budget_s`` seconds of CPU time (see run_within);
    ``progress``: a bar on a terminal (nothing in a pipe)."""
    report = Report()
    seeds = [(p, p.read_text()) for p in spec_files()]
    with cpu_alarm(), TaskProgress("fuzz", cases, enabled=progress) as bar:
        for n in range(cases):
            case_id, spec, kind, text = case_text(n, seed, seeds)
            report.record(case_id, kind, run_within(budget_s, spec, text, emit))
            bar.advance(1, report.progress_status())
    return report


def replay(case_id: str) -> str:
    """The text of a reported case (``grammar#0:1234`` or ``sparsenet.net#0:1235``)."""
    seed, n = case_id.split("#")[1].split(":")
    return case_text(int(n), int(seed), [(p, p.read_text()) for p in spec_files()])[3]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
    start = time.perf_counter()
    rep = fuzz(count, seed, progress=True)
    print(rep.summary())
    print(f"time: {time.perf_counter() - start:.1f} s")
    sys.exit(1 if rep.foreign or rep.internal or rep.slow else 0)
