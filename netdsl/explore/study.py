"""The search itself: an Optuna study whose trials are ordinary ``netdsl train`` runs.

Each worker loops: (under the folder's ask lock) count the trials, ask Optuna for one; sample its
point; cost it exactly from the IR; skip it untrained when over budget (told to Optuna as PRUNED,
``over_budget`` set), else write its spec and train it in ``trials/trial-NNNN``, reporting the
validation accuracy per epoch to the pruner. A failure (a point the compiler refuses, a NaN loss)
is told as FAIL with its reason; the study goes on.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NetdslError
from ..fmt import format_text
from ..io import write_atomic
from .budget import Budget, human
from .costs import CostModel
from .folder import (
    DB,
    SPACE_ATTR,
    STUDY_NAME,
    SearchError,
    ask_lock,
    default_storage,
    folder_lock,
    open_storage,
    read_record,
    write_record,
)
from .space import Point, Space

OBJECTIVES = {"accuracy": "maximize", "params": "minimize", "flops": "minimize"}
SAMPLERS = ("tpe", "nsga2", "random", "grid")
PRUNERS = ("median", "none")
MAX_SKIPS = 100  # proposals over budget in a row before the search says the budget is out of reach
# netdsl train options applied to every trial (TrainConfig fields); the rest are the search's own.
TRAIN_FIELDS = (
    "data",
    "recipe",
    "epochs",
    "batch_size",
    "lr",
    "val_split",
    "fit",
    "limit_train",
    "accelerator",
    "devices",
    "num_nodes",
    "precision",
    "channels_last",
    "compile",
    "threads",
    "curves",
)


@dataclass
class SearchConfig:
    spec: str
    space: dict = field(default_factory=dict)  # --space NAME=DOMAIN
    budget: list = field(default_factory=list)  # --budget EXPR
    objectives: list = field(default_factory=lambda: ["accuracy", "params"])
    trials: int = 20
    out: Path | None = None
    seed: int = 0
    storage: str | None = None
    workers: int = 1
    resume: bool = False
    sampler: str | None = None  # None: tpe for one objective, nsga2 for several
    pruner: str = "median"
    overrides: dict = field(default_factory=dict)  # --set, shared by every point
    train: dict = field(default_factory=dict)  # TRAIN_FIELDS values
    progress: bool = True
    verbose: bool = True
    limits: object = None
    worker_id: int | None = None  # set in a worker process started by --workers

    def validate(self) -> SearchConfig:
        if self.workers < 1:
            raise SearchError(f"--workers must be 1 or more, got {self.workers}")
        if self.trials < 1:
            raise SearchError(f"--trials must be 1 or more, got {self.trials}")
        if self.seed < 0:
            raise SearchError(f"--seed must be 0 or more, got {self.seed}")
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise SearchError(f"unknown objective '{o}'", None, "objectives: " + ", ".join(OBJECTIVES))
        if len(set(self.objectives)) != len(self.objectives) or not self.objectives:
            raise SearchError("--objective: name each objective once")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise SearchError(f"unknown sampler '{self.sampler}'", None, "samplers: " + ", ".join(SAMPLERS))
        if self.pruner not in PRUNERS:
            raise SearchError(f"unknown pruner '{self.pruner}'", None, "pruners: " + ", ".join(PRUNERS))
        clash = sorted(set(self.overrides) & set(self.space))
        if clash:
            raise SearchError(f"'{clash[0]}' is given both --set and --space: fix it or search it, not both")
        Budget.parse(self.budget)
        return self

    @property
    def folder(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / f"search-{Path(self.spec).stem}"

    @property
    def remote(self) -> bool:
        return self.storage is not None

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage(self.folder)


class Search:
    """One search's space, costs and study (opened by :func:`open_search`)."""

    def __init__(self, cfg: SearchConfig):
        self.cfg = cfg
        self.out = cfg.folder
        self.space = Space(cfg.spec, cfg.space)
        self.budget = Budget.parse(cfg.budget)
        self.fixed = fixed_values(cfg, self.space)
        self.costs = CostModel(cfg.spec, self.fixed, cfg.limits)  # type: ignore[arg-type]  # a Limits or None
        self.ignored = self.space.unread  # parameters the body never reads do not change the costs
        self.timings: list[dict] = []  # this process's trials: wall time of each, told to Optuna included
        self.study: Any = None  # the optuna.Study, once opened
        self.storage: Any = None

    def cost(self, point: Point) -> dict:
        return self.costs.costs({k: v for k, v in point.values.items() if k not in self.ignored})

    # ---- the study
    def open_study(self, *, create: bool):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.cfg.storage_url, remote=self.cfg.remote)
        directions: list = [OBJECTIVES[o] for o in self.cfg.objectives]
        signature = self.space.signature()
        try:
            study = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=self.sampler())
        except KeyError:
            if not create:
                raise SearchError(f"{self.cfg.storage_url}: holds no netdsl search study") from None
            study = optuna.create_study(
                study_name=STUDY_NAME,
                storage=storage,
                directions=directions,
                sampler=self.sampler(),
                load_if_exists=True,
            )
            study.set_user_attr(SPACE_ATTR, signature)
            study.set_user_attr("objectives", self.cfg.objectives)
            study.set_user_attr("budget", [b.text for b in self.budget.bounds])
        owner = study.user_attrs.get(SPACE_ATTR)
        if owner is None and not study.trials:  # another machine created it a moment ago and is labelling it
            study.set_user_attr(SPACE_ATTR, signature)
            study.set_user_attr("objectives", self.cfg.objectives)
            owner = signature
        if owner != signature:
            raise SearchError(
                f"the study in {_where(self.cfg)} belongs to another spec or space ({owner}); it was left as it is",
                None,
                f"this search is {signature}; choose another --out or --storage",
            )
        if study.user_attrs.get("objectives") != self.cfg.objectives:
            raise SearchError(
                f"the study in {_where(self.cfg)} optimizes {study.user_attrs.get('objectives')}, "
                f"not {self.cfg.objectives}",
                None,
                "give the same --objective as when it started",
            )
        self.storage, self.study = storage, study
        return study

    def sampler(self):
        import optuna

        seed = self.cfg.seed + (self.cfg.worker_id or 0)  # workers of one search propose different points
        kind = self.cfg.sampler or ("tpe" if len(self.cfg.objectives) == 1 else "nsga2")
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, self.cfg.trials // 3)))
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, self.cfg.trials // 2)))
        return optuna.samplers.RandomSampler(seed=seed)  # random, and grid's leftovers (none when listed)

    def pruner(self):
        import optuna

        if self.cfg.pruner == "none" or len(self.cfg.objectives) > 1:  # Optuna prunes single-objective studies only
            return None
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)

    # ---- one trial
    def counted(self) -> int:
        """Trials that count towards --trials: those asked for (queued ones not yet), but the skipped
        (over budget) and the interrupted (queued again)."""
        import optuna

        assert self.study is not None
        return sum(
            1
            for t in self.study.get_trials(deepcopy=False)
            if t.state != optuna.trial.TrialState.WAITING
            and not t.user_attrs.get("over_budget")
            and not t.user_attrs.get("interrupted")
        )

    def run_trial(self, trial) -> str:
        """Sample, cost, and train one trial; returns its state's name."""
        import optuna

        from ..train import TrainConfig, TrainingInterrupted, train

        assert self.study is not None
        started = time.perf_counter()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        point = self.space.sample(trial)
        trial.set_user_attr("values", point.values)
        trial.set_user_attr("point", {k: v for k, v in point.params.items()})
        try:
            costs = self.cost(point)
        except NetdslError as err:
            return self._fail(trial, f"the compiler refuses this point: {_first_line(err)}")
        trial.set_user_attr("params", costs["params"])
        trial.set_user_attr("flops", costs["flops"])
        broken = self.budget.broken(costs)
        if broken:
            trial.set_user_attr("over_budget", broken)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return "SKIPPED"
        run = self.out / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run", str(run))
        write_atomic(run / f"{self.space.net.name}.net", trial_spec(self.space, point, self.fixed))
        pruner_on = self.pruner() is not None

        def on_epoch(epoch: int, row: dict) -> None:
            if not math.isfinite(row.get("train_loss", 0.0)):
                raise NetdslError(f"training diverged: the loss is {row['train_loss']} after epoch {epoch + 1}")
            acc = row.get("val_acc")
            if pruner_on and acc is not None:
                trial.report(float(acc), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: validation accuracy {acc:.4f}")

        cfg = TrainConfig(
            target=self.cfg.spec,
            out=run,
            overrides={**self.fixed, **point.values},
            seed=self.cfg.seed,
            progress=False,
            verbose=False,
            force=True,  # an interrupted trial's folder is trained again from scratch
            limits=self.cfg.limits,
            **self.cfg.train,
        )
        trial.set_user_attr("overhead_s", round(time.perf_counter() - started, 4))
        trained = time.perf_counter()
        try:
            result = train(cfg, on_epoch=on_epoch)
        except optuna.TrialPruned as pruned:
            trial.set_user_attr("reason", str(pruned))
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return "PRUNED"
        except TrainingInterrupted:
            raise KeyboardInterrupt from None
        except NetdslError as err:
            return self._fail(trial, _first_line(err))
        except (RuntimeError, ValueError, MemoryError) as err:  # torch's own failures: recorded, the study goes on
            return self._fail(trial, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        history = _history(run)
        vals = [r["val_acc"] for r in history if r.get("val_acc") is not None]
        val_acc = max(vals) if vals else None
        test_acc = float(result["best"]["top1"])
        trial.set_user_attr("val_acc", val_acc)
        trial.set_user_attr("test_acc", test_acc)
        trial.set_user_attr("epochs", result.get("epochs"))
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
        trial.set_user_attr("train_s", round(time.perf_counter() - trained, 3))  # inside netdsl train's train()
        accuracy = val_acc if val_acc is not None else test_acc  # chosen on validation data when there is some
        values = [accuracy if o == "accuracy" else costs[o] for o in self.cfg.objectives]
        self.study.tell(trial, values)
        return "COMPLETE"

    def _fail(self, trial, reason: str) -> str:
        import optuna

        assert self.study is not None
        trial.set_user_attr("reason", reason)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return "FAIL"

    def interrupted(self, trial) -> None:
        """A trial stopped by Ctrl-C (or found RUNNING by --resume): failed, marked, and queued again."""
        import optuna

        assert self.study is not None
        self.storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        self.storage.set_trial_user_attr(trial._trial_id, "reason", "interrupted; queued again")
        if trial.params:
            self.study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
        self.storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)

    def recover_running(self) -> int:
        """--resume: a trial left RUNNING by a killed search is marked interrupted and queued again.
        With the folder's own storage (its lock held) no trial can really be running; on a shared
        storage only this machine's trials whose process is gone are."""
        import optuna

        from ..train.rundir import _pid_alive

        assert self.study is not None
        here = socket.gethostname()
        stale = [
            t
            for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if not self.cfg.remote
            or (t.user_attrs.get("host") == here and not _pid_alive(int(t.user_attrs.get("pid", 0))))
        ]
        for t in stale:
            self.interrupted(t)
        return len(stale)

    def grid(self) -> int:
        """--sampler grid: every point of the (finite) space that fits the budget, queued in order."""
        assert self.study is not None
        queued = 0
        for point in self.space.points():
            try:
                fits = self.budget.fits(self.cost(point))
            except NetdslError:
                fits = True  # queued: the trial records the compiler's refusal
            if fits:
                self.study.enqueue_trial(point.params, skip_if_exists=True)
                queued += 1
        return queued


def fixed_values(cfg: SearchConfig, space: Space) -> dict:
    """The values every point shares, as ``netdsl train`` would set them: --set, the data's class
    count and the recipe's spec parameters (so the costs are those of the trained networks)."""
    from ..train.data import open_source
    from ..train.model import run_overrides
    from ..train.recipe import default_recipe_name, load_recipe

    declared = tuple(p.name for p in space.net.params)
    recipe = load_recipe(cfg.train.get("recipe") or default_recipe_name(space.net.name))
    source = open_source(cfg.train.get("data") or "digits")
    fixed = run_overrides(declared, dict(cfg.overrides), source.classes, recipe, lambda _m: None)
    return {k: v for k, v in fixed.items() if k not in {p.name for p in space.params}}


def trial_spec(space: Space, point: Point, fixed: dict) -> str:
    """The trial's spec: the original file with each searched (and fixed) parameter's default
    replaced by its value and the domains dropped, in canonical layout."""
    from ..frontend.evaluate import fmt_value

    text = space.text
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)

    def offset(line: int, col: int) -> int:
        return starts[line - 1] + col - 1

    edits = []
    for p in space.net.params:
        if p.name in point.values:
            value = point.values[p.name]
        elif p.name in fixed:
            v = fixed[p.name]
            value = v if isinstance(v, str) else fmt_value(v)
        elif p.domain is not None:  # not searched (cannot happen: every domain is) -- keep the default
            value = None
        else:
            continue
        span = p.span
        assert span.end_line is not None and span.end_column is not None
        if value is None:
            assert p.default is not None and p.default.span.end_line is not None
            stop = offset(p.default.span.end_line, p.default.span.end_column or 1)
            edits.append(
                (
                    offset(span.line, span.column),
                    offset(span.end_line, span.end_column),
                    text[offset(span.line, span.column) : stop],
                )
            )
        else:
            edits.append((offset(span.line, span.column), offset(span.end_line, span.end_column), f"{p.name}={value}"))
    for start, stop, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[stop:]
    values = ", ".join(f"{k}={v}" for k, v in point.values.items())
    return format_text(f"# netdsl search trial: {values}\n" + text, "trial.net")


def _history(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _first_line(err: BaseException) -> str:
    if isinstance(err, NetdslError):
        where = f"{err.span}: " if err.span is not None else ""
        return where + err.message if hasattr(err, "message") else str(err).splitlines()[0]
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _where(cfg: SearchConfig) -> str:
    return str(cfg.folder / DB) if not cfg.remote else "--storage"


# ---- the top level --------------------------------------------------------------------------
def record_of(cfg: SearchConfig, space: Space) -> dict:
    return {
        "spec": str(Path(cfg.spec).resolve()) if Path(cfg.spec).exists() else cfg.spec,
        "network": space.net.name,
        "space": space.describe(),
        "signature": space.signature(),
        "budget": list(cfg.budget),
        "objectives": list(cfg.objectives),
        "trials": cfg.trials,
        "seed": cfg.seed,
        "sampler": cfg.sampler or ("tpe" if len(cfg.objectives) == 1 else "nsga2"),
        "storage": _safe(cfg.storage) if cfg.storage else "study.db",  # never a password on disk
        "overrides": cfg.overrides,
        "train": cfg.train,
    }


def run_search(cfg: SearchConfig, argv: list[str] | None = None, log=print):
    """Run (or resume, or join) a search; returns the Optuna study."""
    cfg.validate()
    out = cfg.folder
    if cfg.worker_id is not None:
        return _worker(cfg)
    if not cfg.resume and not cfg.remote and (out / DB).exists():
        raise SearchError(
            f"{out}: holds a search already (its study.db)", None, "continue it with --resume, or choose another --out"
        )
    if cfg.resume and not cfg.remote and not (out / DB).exists():
        raise SearchError(f"{out}: no search to resume (no {DB})", None, "start it without --resume")
    with folder_lock(out):
        s = Search(cfg)
        study = s.open_study(create=True)
        if cfg.resume and (out / "search.json").exists():
            old = read_record(out)
            if old.get("signature") != s.space.signature():
                raise SearchError(
                    f"{out}: the search there belongs to another spec or space ({old.get('signature')})",
                    None,
                    "choose another --out",
                )
        write_record(out, record_of(cfg, s.space))
        if cfg.resume:
            again = s.recover_running()
            if again:
                log(f"{again} interrupted trial(s) queued again")
        _refuse_unreachable_budget(s)
        if (cfg.sampler or "") == "grid" and not cfg.resume:
            queued = s.grid()
            if queued == 0:
                raise SearchError("no point of the space fits the budget " + str(s.budget))
            cfg.trials = min(cfg.trials, queued)
        from .results import write_csv

        try:
            if cfg.workers == 1:
                _loop(s, cfg, log)
            else:
                _spawn_workers(cfg, argv or [], s, log)
        finally:
            write_csv(study, out / "trials.csv")
        return study


SMALL_SPACE = 2000  # a finite space this small is costed whole before a search, to refuse a budget no point meets


def _refuse_unreachable_budget(s: Search) -> None:
    if not s.budget.bounds:
        return
    size = s.space.size()
    if size is None or size > SMALL_SPACE:
        return  # found while searching: MAX_SKIPS proposals over budget in a row
    from .dryrun import dry_run, no_fit_error

    r = dry_run(s)
    if r["fit"] == 0 and r["refused"] < r["points_costed"]:
        raise no_fit_error(r)


def _loop(s: Search, cfg: SearchConfig, log) -> None:
    from ..progress import TaskProgress
    from .results import best_text

    study = s.study
    assert study is not None
    skips = 0
    with TaskProgress("trials", cfg.trials, enabled=cfg.progress, done=min(s.counted(), cfg.trials)) as bar:
        while True:
            with ask_lock(s.out):
                if s.counted() >= cfg.trials:
                    break
                trial = study.ask()
            began = time.perf_counter()
            try:
                state = s.run_trial(trial)
            except KeyboardInterrupt:
                s.interrupted(trial)
                raise
            s.timings.append({"number": trial.number, "state": state, "wall_s": round(time.perf_counter() - began, 3)})
            write_atomic(s.out / f"timings-{os.getpid()}.json", json.dumps(s.timings, indent=1))
            if state == "SKIPPED":
                skips += 1
                if skips >= MAX_SKIPS:
                    raise SearchError(_out_of_budget(s))
                continue
            skips = 0
            if cfg.verbose and not bar.enabled:
                t = study.trials[trial.number]
                log(_trial_line(t))
            bar.advance(1, status=best_text(study))


def _worker(cfg: SearchConfig):
    """A process started by --workers: the loop alone (the parent holds the folder)."""
    s = Search(cfg)
    study = s.open_study(create=False)
    _loop(s, cfg, log=lambda *_a: None)
    return study


def _spawn_workers(cfg: SearchConfig, argv: list[str], s: Search, log) -> None:
    from ..progress import TaskProgress
    from .results import best_text

    if not argv:
        raise SearchError("--workers N starts 'netdsl search' processes: use it from the command line")
    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    base = [a for a in argv if a != "--resume"]
    procs = []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for w in range(cfg.workers):
        cmd = [sys.executable, "-m", "netdsl", "search", *base, "--worker-id", str(w), "--no-progress"]
        if "--threads" not in base:
            cmd += ["--threads", str(threads)]
        procs.append(subprocess.Popen(cmd, env=env))
    assert s.study is not None
    try:
        shown = 0
        with TaskProgress("trials", cfg.trials, enabled=cfg.progress) as bar:
            while any(p.poll() is None for p in procs):
                time.sleep(1.0)
                if bar.enabled:  # reading the study costs a query: only for a bar someone sees
                    done = min(s.counted(), cfg.trials)
                    bar.advance(done - shown, status=best_text(s.study))
                    shown = done
    except KeyboardInterrupt:
        for p in procs:
            p.wait()
        raise
    bad = [p.returncode for p in procs if p.returncode not in (0, None)]
    if bad:
        raise SearchError(
            f"{len(bad)} of {cfg.workers} worker processes failed (exit {bad[0]}); see their messages above"
        )


def _out_of_budget(s: Search) -> str:
    import optuna

    assert s.study is not None
    seen = [
        t.user_attrs
        for t in s.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
        if t.user_attrs.get("over_budget")
    ]
    cheapest = min(seen, key=lambda a: (a["params"], a["flops"])) if seen else None
    where = (
        f"; the cheapest point proposed has params={human(cheapest['params'])}, flops={human(cheapest['flops'])}"
        if cheapest
        else ""
    )
    return (
        f"{MAX_SKIPS} points in a row are over the budget {s.budget}{where}: "
        "no point may fit (netdsl search --dry-run counts them)"
    )


def _trial_line(t) -> str:
    a = t.user_attrs
    values = ", ".join(f"{k}={v}" for k, v in a.get("values", {}).items())
    acc = a.get("val_acc")
    cost = f"params {human(a['params'])}, flops {human(a['flops'])}" if "params" in a else ""
    tail = f"val acc {acc:.4f}" if isinstance(acc, float) else a.get("reason", "")
    return f"trial {t.number}: {t.state.name.lower()}: {values}; {cost}; {tail}"


def config_dict(cfg: SearchConfig) -> dict:
    return asdict(cfg)


def open_existing(out: Path, storage: str | None = None):
    """The study of the search folder ``out`` (read only: --show and reports)."""
    import optuna

    rec = read_record(out)
    url = storage or (rec["storage"] if rec.get("storage") not in (None, "study.db") else default_storage(out))
    if "***" in url:
        raise SearchError(f"{out}: its study is in {url}", None, "give its URL with the password: --storage URL")
    if url == default_storage(out) and not (out / DB).is_file():
        raise SearchError(f"{out}: no {DB} here")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = open_storage(url, remote=False)
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=st)
    except KeyError:
        raise SearchError(f"{_safe(url)}: holds no netdsl search study") from None


def _safe(url: str) -> str:
    from .folder import _safe_url

    return _safe_url(url)
