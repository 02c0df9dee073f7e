"""``netdsl search SPEC``: explore the domains a spec declares under a cost budget (docs/search.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import SpecValueError
from .cmd_train import TRIAL_FIELDS, add_data_and_recipe, add_run_options
from .common import add_target, limits, overrides


def register(sub) -> None:
    from ..explore.study import OBJECTIVES, PRUNERS, SAMPLERS

    p = sub.add_parser(
        "search",
        help="search the parameter domains a spec declares: exact costs, Optuna trials, the Pareto front",
        description="Each trial is a 'netdsl train' run in DIR/trials/trial-NNNN; the study is an Optuna "
        "study in DIR/study.db (or --storage). See docs/search.md.",
    )
    add_target(p, optional=True)
    p.add_argument(
        "--space", action="append", default=[], metavar="NAME=DOMAIN", help="add or replace a domain: k=8..32 step 4"
    )
    p.add_argument(
        "--budget", action="append", default=[], metavar="EXPR", help="params<=1.2M, flops>=300M (repeatable)"
    )
    p.add_argument(
        "--objective",
        action="append",
        choices=tuple(OBJECTIVES),
        help="what the study optimizes (repeatable; default: accuracy and params)",
    )
    p.add_argument(
        "--trials", type=int, default=20, help="trials to train (default 20; over-budget points not counted)"
    )
    p.add_argument("--out", help="the search folder (default runs/search-NAME)")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed, and every trial's training seed")
    p.add_argument("--storage", metavar="URL", help="an Optuna storage URL shared by several machines (PostgreSQL)")
    p.add_argument("--workers", type=int, default=1, help="trial processes on this machine (default 1)")
    p.add_argument("--sampler", choices=SAMPLERS, help="default: tpe for one objective, nsga2 for several")
    p.add_argument("--pruner", choices=PRUNERS, default="median", help="stop poor trials early (one objective only)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out (an interrupted trial reruns)")
    p.add_argument("--dry-run", action="store_true", help="count the space and the points that fit; train nothing")
    p.add_argument("--json", action="store_true", help="--dry-run / --show: machine-readable output")
    p.add_argument("--show", metavar="DIR", help="print the trials of the search in DIR, the Pareto front marked")
    p.add_argument("--csv", metavar="FILE", help="--show: also write the trials as CSV (DIR/trials.csv is kept anyway)")
    p.add_argument("--worker-id", type=int, help=argparse.SUPPRESS)
    add_data_and_recipe(p)
    add_run_options(p)
    p.set_defaults(func=run)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SpecValueError(
                f"{flag} expects NAME=DOMAIN, got {item!r}", None, "for example --space k=8..32 step 4"
            )
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def config(args):
    from ..explore.study import SearchConfig

    train = {field: getattr(args, attr) for field, attr in TRIAL_FIELDS}
    train["curves"] = not args.no_curves
    if args.threads:
        train["threads"] = args.threads
    return SearchConfig(
        spec=args.target,
        space=_pairs(args.space, "--space"),
        budget=list(args.budget),
        objectives=list(args.objective or ["accuracy", "params"]),
        trials=args.trials,
        out=Path(args.out) if args.out else None,
        seed=args.seed,
        storage=args.storage,
        workers=args.workers,
        resume=args.resume,
        sampler=args.sampler,
        pruner=args.pruner,
        overrides=overrides(args),
        train=train,
        progress=not args.no_progress,
        limits=limits(args),
        worker_id=args.worker_id,
    ).validate()


def run(args) -> int:
    if args.show:
        return show(args)
    if not args.target:
        raise SpecValueError("netdsl search needs a SPEC (or --show DIR)", None, "netdsl search SPEC --trials 20")
    cfg = config(args)
    if args.dry_run:
        return dry(cfg, args.json)
    from ..explore.study import run_search

    argv = sys.argv[sys.argv.index("search") + 1 :] if "search" in sys.argv else []
    try:
        study = run_search(cfg, argv, log=lambda m: print(m, file=sys.stderr))
    except KeyboardInterrupt:
        print(
            f"interrupted: the finished trials are kept in {cfg.folder}; the interrupted one is marked and "
            f"reruns with: netdsl search {args.target} --out {cfg.folder} --resume",
            file=sys.stderr,
        )
        return 130
    from ..explore.results import show_text

    print(show_text(cfg.folder, study))
    return 0


def dry(cfg, as_json: bool) -> int:
    from ..explore.dryrun import dry_run, dry_run_text, no_fit_error
    from ..explore.study import Search

    r = dry_run(Search(cfg))
    if as_json:
        print(json.dumps(r, indent=2))
    else:
        print(dry_run_text(r))
    if r["fit"] == 0:
        raise no_fit_error(r)
    return 0


def show(args) -> int:
    from ..explore.results import csv_text, show_json, show_text
    from ..explore.study import open_existing

    out = Path(args.show)
    study = open_existing(out, args.storage)
    print(show_json(out, study) if args.json else show_text(out, study))
    if args.csv:
        from ..io import write_atomic

        write_atomic(args.csv, csv_text(study))
    return 0
