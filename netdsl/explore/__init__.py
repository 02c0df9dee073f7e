"""``netdsl search``: explore the parameter domains a spec declares under a cost budget.

The package: :mod:`.space` (domains, points), :mod:`.budget` (``params<=1.2M``), :mod:`.costs`
(exact counts from the IR, cached), :mod:`.dryrun`, :mod:`.study` (the Optuna study and its
trials), :mod:`.folder` (search folder, lock, storage), :mod:`.results` (table, front, JSON, CSV),
:mod:`.scatter` (the report's accuracy-against-cost picture).

``netdsl.search(spec, ...)`` (:func:`search`, re-exported by the package root) runs a search from
Python and returns the Optuna study. The package is not named ``search`` so that the function can
be: a submodule import would otherwise replace ``netdsl.search`` with the package.
"""

from __future__ import annotations

from pathlib import Path


def search(
    spec: str | Path,
    *,
    space: dict[str, str] | None = None,
    budget: list[str] | tuple[str, ...] = (),
    objectives: list[str] | tuple[str, ...] = ("accuracy", "params"),
    trials: int = 20,
    out: str | Path | None = None,
    seed: int = 0,
    storage: str | None = None,
    workers: int = 1,
    resume: bool = False,
    sampler: str | None = None,
    pruner: str = "median",
    overrides: dict | None = None,
    progress: bool = False,
    verbose: bool = False,
    **train,
):
    """Run (or resume) a search and return its ``optuna.Study``. ``train`` takes ``netdsl train``'s
    options as :class:`netdsl.train.TrainConfig` fields (``data``, ``recipe``, ``epochs``,
    ``limit_train``, ``batch_size``, ``accelerator``, ...), applied to every trial.

    ``workers`` above 1 is the command line's (``netdsl search --workers N``): from Python, run
    several processes each calling this function on the same ``out`` (they share its study)."""
    from .study import TRAIN_FIELDS, SearchConfig, run_search

    unknown = sorted(set(train) - set(TRAIN_FIELDS))
    if unknown:
        raise TypeError(f"search() got an unexpected keyword argument '{unknown[0]}'")
    if workers != 1:
        raise ValueError("search(workers=N) is the command line's; see the docstring")
    cfg = SearchConfig(
        spec=str(spec),
        space=dict(space or {}),
        budget=list(budget),
        objectives=list(objectives),
        trials=trials,
        out=Path(out) if out is not None else None,
        seed=seed,
        storage=storage,
        workers=1,
        resume=resume,
        sampler=sampler,
        pruner=pruner,
        overrides=dict(overrides or {}),
        train=dict(train),
        progress=progress,
        verbose=verbose,
    )
    return run_search(cfg, log=(print if verbose else lambda *_a: None))
