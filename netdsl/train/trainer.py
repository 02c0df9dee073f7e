"""``train()``: the run folder, the one compile, the data, the epochs, the final test.

The parts live in their own modules: :mod:`.config` (the request and its checks), :mod:`.rundir`
(folder, lock), :mod:`.data`, :mod:`.model` (overrides, compile, network, optimizer, Fabric),
:mod:`.loop` (an epoch), :mod:`.checkpoint` and :mod:`.report`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .. import pipeline
from .._version import __version__
from ..errors import NetdslError
from . import loop, model, rundir
from .checkpoint import Checkpointer, load_checkpoint, load_model_state, set_rng_states, spec_source
from .config import TrainConfig
from .data import RunData, Source, open_source, prepare_data
from .loop import Stepper, StopRequested, StopSignal, TrainingInterrupted
from .recipe import Recipe, default_recipe_name, load_recipe, recipe_from_dict
from .report import Reporter


def train(
    cfg: TrainConfig,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> dict:
    """Train ``cfg.target`` on ``cfg.data``; returns the test metrics of the best and the last weights
    (``"best"``, ``"last"``) and the final network (``"model"``, the weights of ``last.pt``).

    ``on_step(epoch, batch)`` runs after every optimizer step (tests use it to send Ctrl-C);
    ``on_epoch(epoch, row)`` after each epoch's checkpoint, with its metrics row (``netdsl search``
    reports the validation accuracy to its pruner there; an exception it raises ends the run).
    """
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out) if cfg.out is not None else rundir.numbered_folder(Path("runs"), Path(cfg.target).stem)
    primary = _primary_process()
    if primary:  # decided before Fabric starts other processes, which do not touch the folder
        rundir.check_folder(out, resume=cfg.resume, force=cfg.force)
    with rundir.run_lock(out) if primary else contextlib.nullcontext():
        if primary:
            rundir.remove_stale_temporaries(out)
            if cfg.force:
                rundir.clear_run_files(out)
        group_was_up = torch.distributed.is_available() and torch.distributed.is_initialized()
        fabric, precision = model.make_fabric(cfg.accelerator, cfg.devices, cfg.num_nodes, cfg.precision)
        try:
            if fabric.world_size > 1:  # a numbered folder is chosen by rank 0
                out = Path(fabric.broadcast(str(out), src=0))
            result = _run(cfg, out, fabric, precision, on_step, on_epoch)
            if fabric.world_size > 1:
                fabric.barrier()  # no rank leaves while another is still in a collective
            return result
        finally:
            # A process group Fabric started is ended here: left to the interpreter's exit, gloo's
            # threads are destroyed still running and the process aborts ("terminate called without
            # an active exception"), failing a finished run. A group the caller started stays up.
            if not group_was_up and torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


def _primary_process() -> bool:
    """Rank 0, or the process that will become it (before Fabric or torchrun set the ranks)."""
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


@dataclass
class Plan:
    """What a run trains: its network compiled once, its recipe, and where its data comes from."""

    compiled: pipeline.Compiled
    recipe: Recipe
    seed: int
    user_overrides: dict
    data_source: str
    fit: str
    limit: int | None
    stats: tuple[list[float], list[float]] | None  # a resumed run keeps its normalization

    def load_data(self, source: Source | None = None) -> RunData:
        source = source or open_source(self.data_source)
        data = prepare_data(
            source,
            self.compiled.input_shape,
            fit=self.fit,
            val_split=self.recipe.val_split,
            seed=self.seed,
            limit=self.limit,
            stats=self.stats,
        )
        model.check_classes(self.compiled, data.info["classes"], source.name)
        return data


def resume_plan(cfg: TrainConfig, ckpt: dict, where: Path) -> Plan:
    """A resumed run: everything from its checkpoint, compiled from the stored spec text; only the
    length (``--epochs``) may change."""
    recipe = recipe_from_dict(ckpt["recipe"], ckpt["recipe"]["name"]).with_overrides(epochs=cfg.epochs)
    info = ckpt["data"]
    compiled = model.compile_network(spec_source(ckpt, where), ckpt["overrides"], cfg.limits)
    return Plan(
        compiled,
        recipe,
        ckpt["seed"],
        ckpt["user_overrides"],
        info["source"],
        info["fit"],
        info["limit_train"],
        (info["mean"], info["std"]),
    )


def new_plan(cfg: TrainConfig, log) -> tuple[Plan, Source]:
    """A new run: the recipe and the data's class count decide the spec values, then the one compile."""
    header = pipeline.spec_header(cfg.target)
    recipe = load_recipe(cfg.recipe or default_recipe_name(header.name))
    recipe = recipe.with_overrides(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr)
    if cfg.val_split is not None:
        recipe = replace(recipe, val_split=cfg.val_split)
    source = open_source(cfg.data)
    overrides = model.run_overrides(header.params, cfg.overrides, source.classes, recipe, log)
    compiled = model.compile_network(cfg.target, overrides, cfg.limits)
    return Plan(compiled, recipe, cfg.seed, dict(cfg.overrides), cfg.data, cfg.fit, cfg.limit_train, None), source


def _finished(ckpt: dict, epochs: int) -> bool:
    """A run whose last epoch (or early stop) is done, and that ``epochs`` does not extend."""
    done = ckpt["state"].get("finished", ckpt["batch"] == 0 and ckpt["epoch"] >= ckpt["recipe"]["epochs"])
    return bool(done) and epochs <= ckpt["epoch"]


def _run(cfg: TrainConfig, out: Path, fabric, precision: str, on_step, on_epoch=None) -> dict:
    ckpt: dict | None = load_checkpoint(out / "last.pt") if cfg.resume else None
    report = Reporter(out, rank=fabric.global_rank, verbose=cfg.verbose, progress=cfg.progress, curves=cfg.curves)
    finished = ckpt is not None and _finished(ckpt, cfg.epochs or ckpt["recipe"]["epochs"])
    if ckpt is not None and finished and (out / "results.json").is_file():
        return _already_finished(cfg, ckpt, out, report)
    plan, data = _plan_and_data(cfg, ckpt, out, report, fabric.world_size)
    live = _set_up(cfg, plan, ckpt, fabric, out, finished)
    recipe, graph, device = plan.recipe, plan.compiled.graph, fabric.device
    meta = {
        "spec": plan.compiled.source(),
        "overrides": plan.compiled.overrides,
        "user_overrides": plan.user_overrides,
        "recipe": recipe.to_dict(),
        "data": data.info,
        "seed": plan.seed,
        "precision": precision,  # what `netdsl eval` reproduces the run's figures in
        "netdsl_version": __version__,
    }
    report.started(
        {
            **meta,
            "world_size": fabric.world_size,
            "device": str(device),
            "precision": precision,
            "channels_last": live.memory_format == torch.channels_last,
            "compile": cfg.compile,
        },
        f"{graph.graph['name']}: {sum(p.numel() for p in live.raw.parameters()):,} parameters; "
        f"{data.info['source']}: {len(data.train)} train / {len(data.val or [])} val / "
        f"{len(data.test)} test; recipe {recipe.name}, {recipe.epochs} epochs, "
        f"batch {recipe.batch_size}; {fabric.world_size} x {device.type}",
    )
    checkpoints = Checkpointer(meta, live.raw, live.optimizer, live.scheduler, fabric, fabric.global_rank)
    stepper = Stepper(
        fabric, live.net, live.optimizer, data, recipe, plan.seed, live.memory_format, cfg.eval_batch_size
    )
    try:
        _epochs(stepper, live, checkpoints, report, out, ckpt, on_step, on_epoch)
    except TrainingInterrupted:
        report.curves(live.history)
        raise
    finally:
        report.progress.stop()
    return _final_test(stepper, live.raw, out, live.state, live.history, report)


def _already_finished(cfg: TrainConfig, ckpt: dict, out: Path, report: Reporter) -> dict:
    report.log(
        f"{out}: the run is finished ({ckpt['epoch']} epochs); nothing to do "
        f"(--epochs above {ckpt['epoch']} extends it)"
    )
    net = model.build_network(resume_plan(cfg, ckpt, out / "last.pt").compiled, ckpt["seed"])
    load_model_state(net, ckpt["model"], out / "last.pt")
    return {**json.loads((out / "results.json").read_text(encoding="utf-8")), "model": net}


def _plan_and_data(
    cfg: TrainConfig, ckpt: dict | None, out: Path, report: Reporter, world: int
) -> tuple[Plan, RunData]:
    if ckpt is not None:
        plan = resume_plan(cfg, ckpt, out / "last.pt")
        data = plan.load_data()
    else:
        plan, source = new_plan(cfg, report.log)
        data = plan.load_data(source)
    report.title = f"{plan.compiled.graph.graph['name']} on {data.info['source']}"
    if data.note:
        report.log(data.note)
    B = plan.recipe.batch_size
    if B % world:
        raise NetdslError(
            f"batch size {B} does not split evenly over {world} processes",
            None,
            f"use a multiple of {world}, e.g. --batch-size {B - B % world or world}",
        )
    if len(data.train) < B:
        raise NetdslError(f"{len(data.train)} training images are fewer than one batch of {B}")
    return plan, data


@dataclass
class Live:
    """The objects a run trains and the position it continues from."""

    raw: torch.nn.Module  # the network itself (its state_dict is what checkpoints hold)
    net: torch.nn.Module  # the same, compiled and wrapped by Fabric
    optimizer: Any
    scheduler: Any
    memory_format: torch.memory_format
    state: dict
    history: list[dict]
    start_epoch: int = 0
    start_batch: int = 0


def _set_up(cfg: TrainConfig, plan: Plan, ckpt: dict | None, fabric, out: Path, finished: bool) -> Live:
    """The network instantiated from the one compile, its optimizer and schedule, restored on resume."""
    mem = model.memory_format(plan.compiled.graph, cfg.channels_last, fabric.device)
    raw = model.build_network(plan.compiled, plan.seed)
    optimizer = model.make_optimizer(raw, plan.recipe)
    raw = raw.to(memory_format=mem)  # type: ignore[call-overload]  # torch's stubs omit memory_format
    if ckpt is not None:
        load_model_state(raw, ckpt["model"], out / "last.pt")
    net: torch.nn.Module = torch.compile(raw) if cfg.compile else raw  # type: ignore[assignment]
    net, optimizer = fabric.setup(net, optimizer)
    scheduler = model.make_scheduler(optimizer, plan.recipe)
    live = Live(raw, net, optimizer, scheduler, mem, loop.fresh_state(), [])
    if ckpt is not None:
        model.restore_schedule(optimizer, scheduler, ckpt, plan.recipe)
        live.state, live.history = {**loop.fresh_state(), **ckpt["state"]}, list(ckpt["history"])
        live.start_epoch, live.start_batch = ckpt["epoch"], ckpt["batch"]
        live.state["finished"] = finished  # a finished run given more epochs goes on
    return live


def _epochs(
    stepper: Stepper,
    live: Live,
    checkpoints: Checkpointer,
    report: Reporter,
    out: Path,
    ckpt: dict | None,
    on_step,
    on_epoch=None,
) -> None:
    """Train from ``live``'s position to the recipe's end (or an early stop); a Ctrl-C saves and raises."""
    recipe, state, history, start_batch = stepper.recipe, live.state, live.history, live.start_batch
    with StopSignal() as stop:
        if ckpt is not None and start_batch:
            set_rng_states(ckpt["rng"])
        for epoch in range(live.start_epoch, recipe.epochs):
            try:
                row = loop.train_epoch(
                    stepper,
                    epoch,
                    recipe.epochs,
                    start_batch=start_batch,
                    partial=state["partial"],
                    stop=stop,
                    progress=report.progress,
                    on_step=on_step,
                )
            except StopRequested as s:
                state["partial"] = s.partial
                checkpoints.save(out / "last.pt", epoch, s.batch, state, history)
                raise TrainingInterrupted(out / "last.pt", epoch, s.batch) from None
            start_batch = 0
            if stepper.data.val is not None:
                v = stepper.evaluate(stepper.data.val)
                row["val_loss"], row["val_acc"] = v["loss"], v["top1"]
            history.append(row)
            improved = loop.end_epoch(state, row, recipe, live.scheduler)
            early = loop.stops_early(state, recipe)
            state["finished"] = early or epoch + 1 >= recipe.epochs
            if improved:
                checkpoints.save(out / "best.pt", epoch + 1, 0, state, history)
            checkpoints.save(out / "last.pt", epoch + 1, 0, state, history)
            report.epoch(history, recipe.epochs, improved and stepper.data.val is not None)
            if on_epoch is not None:
                on_epoch(epoch, row)
            if early:
                report.log(
                    f"early stopping: no new validation-loss minimum for "
                    f"{(recipe.early_stopping or {}).get('patience')} epochs"
                )
                break


def _final_test(
    stepper: Stepper, raw: torch.nn.Module, out: Path, state: dict, history: list[dict], report: Reporter
) -> dict:
    """Test the last and the best weights; the returned model holds the last (as last.pt does)."""
    data = stepper.data
    results = {"epochs": len(history), "best_epoch": state["best_epoch"]}
    results["last"] = stepper.evaluate(data.test)
    if (out / "best.pt").exists() and data.val is not None:
        last = {k: v.clone() for k, v in raw.state_dict().items()}
        load_model_state(raw, load_checkpoint(out / "best.pt")["model"], out / "best.pt")
        results["best"] = stepper.evaluate(data.test)
        raw.load_state_dict(last)
    else:
        results["best"] = results["last"]
    report.finished(results, history, len(data.test))
    return {**results, "model": raw}
