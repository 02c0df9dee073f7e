"""A mutation fuzzer over the bundled specs: each case is a spec with one deliberate defect
(tokens deleted, duplicated or swapped, random bytes, huge or negative numbers, deep nesting,
very long or hostile names). Netdsl must answer every case with a spec that compiles or with
its own error type; anything else is a *foreign* exception, a bug.

Used by tests/test_fuzz_mutation.py (a few hundred cases in CI) and benchmarks/fuzz_mutation.py
(thousands). Cases are reproducible: case ``n`` of seed ``s`` is always the same text.

>>> m = mutate('network n() { input(3, 8, 8); conv(8) }', random.Random(1))
>>> isinstance(m.text, str) and m.kind in KINDS
True
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from netdsl.errors import IRError, NetdslError, PassError
from netdsl.frontend import Limits
from netdsl.progress import TaskProgress

ROOT = Path(__file__).resolve().parents[2]

# Tokens of the .net language, coarse: enough to cut a spec at meaningful places.
_TOKEN = re.compile(
    r'#[^\n]*|/\*.*?\*/|"[^"\n]*"|[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?'
    r"|\*\*|//|\.\.|==|!=|<=|>=|\s+|.",
    re.S,
)

HUGE_NUMBERS = [
    "0",
    "-1",
    "-12",
    "1000000",
    "99999999999999999999999",
    "1e308",
    "2 ** 62",
    "2 ** 64",
    "123456789",
    "0.0001",
    "-0.5",
    "65536",
    "1e-300",
    "9" * 400,
]
HOSTILE_NAMES = [
    "__import__('os').system('true')",
    "forward",
    "training",
    "__class__",
    "self",
    "x",
    "torch",
    "nn",
    "F",
    "None",
    "class",
    "\u0441onv",
    "con\u200bv",
    "a\nb",
    "a'b",
    'a"b',
    "_" * 5000,
    "n" * 100_000,
    "\U0001d41c\U0001d428\U0001d427\U0001d42f",
]
RANDOM_CHARS = "{}()[],;:=+-*/%<>!.#\"'\\\n\t\x00\x7f\u00e9\u200b\ufeff\U0001f600\ud800abz019_ "


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _solid(toks: list[str]) -> list[int]:
    """Indices of the tokens that are not whitespace or comments."""
    return [k for k, t in enumerate(toks) if t.strip() and not t.startswith(("#", "/*"))]


def _m_delete(toks, rng):
    k = rng.choice(_solid(toks))
    del toks[k]


def _m_duplicate(toks, rng):
    k = rng.choice(_solid(toks))
    toks.insert(k, toks[k])


def _m_swap(toks, rng):
    solid = _solid(toks)
    a = rng.choice(solid)
    b = rng.choice(solid) if rng.random() < 0.5 else solid[min(len(solid) - 1, solid.index(a) + 1)]
    toks[a], toks[b] = toks[b], toks[a]


def _m_replace(toks, rng):
    solid = _solid(toks)
    k = rng.choice(solid)
    others = [toks[j] for j in solid if toks[j] != toks[k]]  # a token replaced by its twin is no mutant
    if others:
        toks[k] = rng.choice(others)


def _m_bytes(toks, rng):
    k = rng.randrange(len(toks) + 1)
    toks.insert(k, "".join(rng.choice(RANDOM_CHARS) for _ in range(rng.randint(1, 8))))


def _m_number(toks, rng):
    nums = [k for k, t in enumerate(toks) if t[:1].isdigit()]
    if not nums:
        return _m_bytes(toks, rng)
    toks[rng.choice(nums)] = rng.choice(HUGE_NUMBERS)


def _m_nesting(toks, rng):
    solid = _solid(toks)
    k = rng.choice(solid)
    depth = rng.choice([30, 63, 65, 120, 1000, 20000])
    style = rng.randrange(5)
    if style == 0:
        toks[k] = "(" * depth + toks[k] + ")" * depth
    elif style == 1:
        toks[k] = "-" * depth + toks[k]
    elif style == 2:
        toks[k] = "+".join([toks[k]] * depth)
    elif style == 3:
        toks[k] = "if true { " * min(depth, 70) + toks[k] + " }" * min(depth, 70)
    else:
        toks[k] = "not " * depth + toks[k]


def _m_name(toks, rng):
    names = [k for k, t in enumerate(toks) if t[:1].isalpha() or t[:1] == "_"]
    if not names:
        return _m_bytes(toks, rng)
    toks[rng.choice(names)] = rng.choice(HOSTILE_NAMES)


def _m_truncate(toks, rng):
    del toks[rng.randrange(len(toks)) :]


def _m_label(toks, rng):
    """Label a statement with a hostile or long name: names reach the emitted Python."""
    solid = _solid(toks)
    starts = [
        k
        for i, k in enumerate(solid)
        if (toks[k][:1].isalpha() or toks[k][:1] == "_")
        and (i == 0 or toks[solid[i - 1]] in "{;" or "\n" in "".join(toks[solid[i - 1] + 1 : k]))
    ]
    toks.insert(rng.choice(starts or solid), rng.choice(HOSTILE_NAMES) + ": ")


MUTATORS = {
    "delete": _m_delete,
    "duplicate": _m_duplicate,
    "swap": _m_swap,
    "replace": _m_replace,
    "bytes": _m_bytes,
    "number": _m_number,
    "nesting": _m_nesting,
    "name": _m_name,
    "truncate": _m_truncate,
    "label": _m_label,
}
KINDS = tuple(MUTATORS)
# Mutations that usually still parse reach lowering, shapes and the backend: draw them more often.
WEIGHTS = {"number": 4, "label": 3, "name": 2, "duplicate": 2}


@dataclass
class Mutant:
    kind: str
    text: str


def mutate(text: str, rng: random.Random, rounds: int = 1) -> Mutant:
    toks = tokens(text)
    kinds = []
    for _ in range(rounds):
        kind = rng.choices(KINDS, [WEIGHTS.get(k, 1) for k in KINDS])[0]
        if not _solid(toks):  # an earlier round left nothing to cut
            kind = "bytes"
        MUTATORS[kind](toks, rng)
        kinds.append(kind)
    return Mutant("+".join(kinds), "".join(toks))


def spec_files() -> list[Path]:
    """The bundled specs and library files: the fuzzer's seeds."""
    specs = ROOT / "specs"
    return sorted(specs.glob("*.net")) + sorted((specs / "lib").glob("*.net"))


# Limits kept low so a mutant asking for a big network is refused quickly; the flags raise them.
# The layer and edge limits keep a mutant such as blocks=[8, 12, 1616] (11,000 ops, 2 s to emit as
# torch source) within the per-case time budget even on a loaded machine.
FUZZ_LIMITS = Limits(
    max_params=50_000_000, max_nodes=20_000, max_map_elements=50_000_000, max_layers=1_000, max_edges=50_000
)


class _Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Timeout()


@contextlib.contextmanager
def cpu_alarm():
    """Route SIGPROF (the CPU-time interval timer of :func:`run_within`) to a _Timeout."""
    old = signal.signal(signal.SIGPROF, _alarm)
    try:
        yield
    finally:
        signal.signal(signal.SIGPROF, old)


def run_within(budget_s: float, spec: Path, text: str, emit: bool) -> tuple:
    """One case under :func:`cpu_alarm`: ("ok",), ("slow",) or ("raised", exception).

    The budget is this process's CPU time, not wall clock, so that other load on the machine does
    not count; a case over budget is run once more and is reported only if it is over budget
    again, so that one pause of the process (a page-in, a collector pass) is not mistaken for
    unbounded work, which is over budget every time."""
    outcome = _run_once(budget_s, spec, text, emit)
    return _run_once(budget_s, spec, text, emit) if outcome[0] == "slow" else outcome


def _run_once(budget_s: float, spec: Path, text: str, emit: bool) -> tuple:
    outcome: tuple = ()
    signal.setitimer(signal.ITIMER_PROF, budget_s)
    try:  # the alarm may fire anywhere, even in a handler: the outer try catches it there
        try:
            run_case(spec, text, emit)
            outcome = ("ok",)
        except _Timeout:
            outcome = ("slow",)
        except Exception as exc:  # any exception: classified by Report.record
            outcome = ("raised", exc)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _Timeout:
        outcome = outcome or ("slow",)
    return outcome


@dataclass
class Report:
    cases: int = 0
    ok: int = 0
    errors: Counter = field(default_factory=Counter)  # netdsl error class -> count
    internal: list = field(default_factory=list)  # IRError/PassError: netdsl's own type, but a bug
    foreign: list = field(default_factory=list)  # (case id, mutation, exception text)
    slow: list = field(default_factory=list)  # cases past the per-case time limit

    def summary(self) -> str:
        lines = [
            f"cases: {self.cases}",
            f"compiled: {self.ok}",
            "netdsl errors: " + ", ".join(f"{k} {v}" for k, v in self.errors.most_common()),
            f"internal errors (IRError/PassError): {len(self.internal)}",
            f"foreign exceptions: {len(self.foreign)}",
            f"slow cases: {len(self.slow)}",
        ]
        for case, kind, exc in (self.foreign + self.internal)[:20]:
            lines.append(f"  {case} [{kind}]: {exc}")
        for case, kind in self.slow[:20]:
            lines.append(f"  {case} [{kind}]: over the time limit")
        return "\n".join(lines)

    def progress_status(self) -> str:
        """The progress bar's running count."""
        bad = len(self.internal) + len(self.foreign) + len(self.slow)
        return f"{self.ok} compiled, {sum(self.errors.values())} netdsl errors, {bad} problems"

    def record(self, case_id: str, kind: str, outcome: tuple) -> None:
        """Count one :func:`run_within` outcome."""
        self.cases += 1
        if outcome[0] == "ok":
            self.ok += 1
        elif outcome[0] == "slow":
            self.slow.append((case_id, kind))
        elif isinstance(outcome[1], (IRError, PassError)):
            self.internal.append((case_id, kind, f"{type(outcome[1]).__name__}: {outcome[1].message}"))
        elif isinstance(outcome[1], NetdslError):
            self.errors[type(outcome[1]).__name__] += 1
        else:
            exc = outcome[1]
            last = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(last.filename).name}:{last.lineno}"
            self.foreign.append((case_id, kind, f"{type(exc).__name__} at {where}: {str(exc)[:200]}"))


def run_case(spec: Path, text: str, emit: bool) -> None:
    """Compile one mutated text as if it were ``spec`` (so its includes resolve) and, if it
    compiles, emit its torch source and check the emitted file is valid Python."""
    from netdsl.api import compile_spec

    graph = compile_spec(spec, limits=FUZZ_LIMITS, text=text, check=True)
    if emit:
        from netdsl.backends.torch.codegen import generate

        compile(generate(graph), "<emitted>", "exec")  # parses only; never executed


def fuzz(
    cases: int,
    seed: int = 0,
    emit: bool = True,
    budget_s: float = 20.0,
    rounds=(1, 1, 1, 2, 3),
    progress: bool = False,
) -> Report:
    """Run ``cases`` mutants round-robin over :func:`spec_files`; case ``n`` uses seed ``seed + n``;
    ``progress``: a bar on a terminal (nothing in a pipe)."""
    report = Report()
    seeds = [(p, p.read_text()) for p in spec_files()]
    with cpu_alarm(), TaskProgress("fuzz", cases, enabled=progress) as bar:
        for n in range(cases):
            spec, text = seeds[n % len(seeds)]
            rng = random.Random(seed + n)
            m = mutate(text, rng, rng.choice(rounds))
            report.record(f"{spec.name}#{seed + n}", m.kind, run_within(budget_s, spec, m.text, emit))
            bar.advance(1, report.progress_status())
    return report


def replay(case_id: str) -> str:
    """The text of a reported case (``sparsenet.net#1234``), to reproduce it by hand."""
    name, n = case_id.split("#")
    spec = next(p for p in spec_files() if p.name == name)
    rng = random.Random(int(n))
    return mutate(spec.read_text(), rng, rng.choice((1, 1, 1, 2, 3))).text
