"""The training loop: Lightning Fabric for devices, precision and DDP; everything else explicit.

One process or many (``torchrun --nproc-per-node N -m netdsl train ...``, or ``--devices N``):
each process takes its contiguous slice of every global batch and DDP averages the gradients,
so with equal slices an update equals the single-process update on the whole batch (exactly so
for networks without batch norm; with it, statistics are per process unless CUDA's
SyncBatchNorm is on, as torchvision's reference scripts do with ``--sync-bn``).

Randomness that decides results is a function of (seed, epoch, step): the data order, the
augmentation, the dropout seed of each epoch. A resumed run therefore continues exactly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .. import __version__
from ..errors import NetdslError
from ..io import write_atomic
from .augment import derive_seed, epoch_batches, generator, normalize, shard
from .checkpoint import load_checkpoint, load_model_state, rng_states, save_checkpoint, set_rng_states
from .data import DataError, ImageSet, channel_stats, fit_images, load_data, split_validation
from .metrics import correct_topk, plot_curves, write_metrics
from .progress import EpochProgress
from .recipe import Recipe, default_recipe_name, load_recipe, recipe_from_dict


@dataclass
class TrainConfig:
    target: str
    data: str = "digits"
    out: Path = Path("runs/net")
    overrides: dict = field(default_factory=dict)
    recipe: str | None = None  # a name, a .json path, or None for the network's default
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    val_split: float | None = None
    seed: int = 0
    fit: str = "resize"  # or "refuse": how data of another shape than the spec's input is handled
    limit_train: int | None = None  # use only the first N training images (smoke runs)
    resume: bool = False
    accelerator: str = "auto"  # auto | cpu | cuda
    devices: int = 1
    num_nodes: int = 1
    precision: str = "auto"  # auto | 32 | bf16 | fp16
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    eval_batch_size: int = 500
    progress: bool = True
    verbose: bool = True
    limits: object = None  # netdsl.frontend.Limits for every compile of the spec


class TrainingInterrupted(Exception):
    """Ctrl-C during training: the checkpoint at ``path`` holds the run up to the last full step."""

    def __init__(self, path: Path, epoch: int, batch: int):
        super().__init__(f"interrupted; saved {path} (epoch {epoch + 1}, after batch {batch}); "
                         "continue with --resume")
        self.path = path


class StepFactors:
    """LambdaLR's multiplier for a step schedule (a class, so its state_dict is plain data)."""

    def __init__(self, recipe: Recipe, epochs: int):
        self.factors = [recipe.lr_factor(e, epochs) for e in range(epochs + 1)]

    def __call__(self, epoch: int) -> float:
        return self.factors[min(epoch, len(self.factors) - 1)]


# --- set-up ---------------------------------------------------------------------------------------

def make_fabric(cfg: TrainConfig):
    from lightning_fabric import Fabric

    accelerator = cfg.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    devices, nodes = cfg.devices, cfg.num_nodes
    if "LOCAL_WORLD_SIZE" in os.environ:  # started by torchrun: it decides the process count
        devices = int(os.environ["LOCAL_WORLD_SIZE"])
        nodes = int(os.environ.get("WORLD_SIZE", devices)) // devices
    precision = {"auto": "bf16-mixed" if accelerator == "cuda" and torch.cuda.is_bf16_supported() else
                 "16-mixed" if accelerator == "cuda" else "32-true",
                 "32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}.get(cfg.precision)
    if precision is None:
        raise NetdslError(f"unknown precision {cfg.precision!r}", None, "use auto, 32, bf16 or fp16")
    strategy = "ddp" if devices * nodes > 1 else "auto"
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=nodes, strategy=strategy,
                    precision=precision)
    fabric.launch()
    return fabric, precision


def resolve_overrides(target: str, overrides: dict, classes: int, recipe: Recipe, log, limits=None) -> dict:
    """The user's values, plus the data's class count and the recipe's spec parameters where declared."""
    from ..api import compile_spec

    declared = compile_spec(target, overrides, limits=limits).graph["params"]
    out = dict(overrides)
    if "classes" in declared and "classes" not in out:
        out["classes"] = classes
    for k, v in recipe.spec_params.items():
        if k in declared:
            out.setdefault(k, v)
        else:
            log(f"note: recipe {recipe.name} sets {k}={v}, but the spec declares no parameter {k!r}")
    return out


def _fit(images: torch.Tensor, shape, policy: str, source: str) -> torch.Tensor:
    try:
        return fit_images(images, shape, policy)
    except DataError as e:
        e.message = f"{source}: {e.message}"
        raise


# --- the loop -------------------------------------------------------------------------------------

def train(cfg: TrainConfig, on_step: Callable[[int, int], None] | None = None) -> dict:
    """Train ``cfg.target`` on ``cfg.data``; returns the test metrics of the best and the last weights
    (``"best"``, ``"last"``) and the final network (``"model"``, the weights of ``last.pt``).

    ``on_step(epoch, batch)`` runs after every optimizer step (tests use it to send Ctrl-C).
    """
    from ..api import build_model, compile_spec

    out = Path(cfg.out)
    fabric, precision = make_fabric(cfg)
    rank, world = fabric.global_rank, fabric.world_size
    console = None
    if rank == 0 and cfg.verbose:
        from rich.console import Console

        console = Console()
    log = console.print if console is not None else (lambda *a, **k: None)

    ckpt = load_checkpoint(out / "last.pt") if cfg.resume else None
    if ckpt is not None:  # the run's identity comes from the checkpoint; only the length may change
        target, seed, source = ckpt["spec"]["target"], ckpt["seed"], ckpt["data"]["source"]
        recipe = recipe_from_dict(ckpt["recipe"], ckpt["recipe"]["name"]).with_overrides(epochs=cfg.epochs)
        fit, limit, user_overrides = ckpt["data"]["fit"], ckpt["data"]["limit_train"], ckpt["user_overrides"]
    else:
        target, seed, source, fit, limit, user_overrides = (cfg.target, cfg.seed, cfg.data, cfg.fit,
                                                            cfg.limit_train, dict(cfg.overrides))
        recipe = None

    graph = compile_spec(target, user_overrides, limits=cfg.limits)
    shape = tuple(graph.nodes[graph.graph["input"]]["shape"])
    splits = load_data(source, size=shape[1:])
    if recipe is None:
        recipe = load_recipe(cfg.recipe or default_recipe_name(graph.graph["name"]))
        recipe = recipe.with_overrides(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr)
        if cfg.val_split is not None:
            recipe = replace(recipe, val_split=cfg.val_split)
    overrides = resolve_overrides(target, user_overrides, splits.classes, recipe, log, cfg.limits)
    # build_model's seed covers the convolutions; layers it leaves at torch's default init
    # (nn.Linear's weight) draw from the global generator, so seed that too.
    torch.manual_seed(derive_seed(seed, 1 << 21))
    model = build_model(target, seed=seed, limits=cfg.limits, **overrides)
    final = compile_spec(target, overrides, limits=cfg.limits)
    out_width = final.nodes[final.graph["output"]]["shape"][0]
    if out_width != splits.classes:
        raise NetdslError(f"the network ends in {out_width} outputs but {source} has {splits.classes} classes",
                          None, f"--set classes={splits.classes}")
    if shape != splits.train.shape and fit == "resize":
        log(f"note: {source} images are {'x'.join(map(str, splits.train.shape))}; resized to the spec's input "
            f"{'x'.join(map(str, shape))} (bilinear"
            + (", grey repeated to 3 channels)" if splits.train.shape[0] == 1 < shape[0] else ")"))
    train_set = ImageSet(_fit(splits.train.images, shape, fit, source), splits.train.labels)
    test_set = ImageSet(_fit(splits.test.images, shape, fit, source), splits.test.labels)
    train_set, val_set = split_validation(train_set, recipe.val_split, seed)
    if limit:
        train_set = train_set.subset(slice(0, limit))
    B = recipe.batch_size
    if B % world:
        raise NetdslError(f"batch size {B} does not split evenly over {world} processes", None,
                          f"use a multiple of {world}, e.g. --batch-size {B - B % world or world}")
    if len(train_set) < B:
        raise NetdslError(f"{len(train_set)} training images are fewer than one batch of {B}")

    mean, std = (ckpt["data"]["mean"], ckpt["data"]["std"]) if ckpt else channel_stats(train_set.images)
    data_info = {"source": source, "mean": mean, "std": std, "classes": splits.classes, "input": list(shape),
                 "fit": fit, "limit_train": limit, "sizes": [len(train_set), len(val_set or []), len(test_set)]}
    device = fabric.device
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    mem = torch.channels_last if channels_last else torch.contiguous_format
    mean_t, std_t = torch.tensor(mean, device=device), torch.tensor(std, device=device)
    train_x, train_y = train_set.images.to(device), train_set.labels.to(device)
    aug = recipe.augmentation()

    opt_cfg = recipe.optimizer
    optimizer = torch.optim.SGD(model.parameters(), lr=opt_cfg["lr"], momentum=opt_cfg.get("momentum", 0.0),
                                nesterov=opt_cfg.get("nesterov", False),
                                weight_decay=opt_cfg.get("weight_decay", 0.0))
    raw = model.to(memory_format=mem)
    if ckpt is not None:
        load_model_state(raw, ckpt["model"], out / "last.pt")
    net = torch.compile(raw) if cfg.compile else raw
    net, optimizer = fabric.setup(net, optimizer)
    if recipe.schedule["kind"] == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=recipe.schedule.get("factor", 0.1),
            patience=recipe.schedule.get("patience", 10))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, StepFactors(recipe, recipe.epochs))
    state = {"best": None, "best_loss": None, "best_epoch": None, "min_val_loss": math.inf, "bad_epochs": 0, "partial": None}
    history: list[dict] = []
    start_epoch, start_batch = 0, 0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):  # a longer run rescales the steps
            scheduler.lr_lambdas[0] = StepFactors(recipe, recipe.epochs)
            for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base * scheduler.lr_lambdas[0](ckpt["epoch"])
        state, history = ckpt["state"], list(ckpt["history"])
        start_epoch, start_batch = ckpt["epoch"], ckpt["batch"]

    meta = {"spec": {"target": str(target), "file": graph.graph["file"], "name": graph.graph["name"]},
            "overrides": overrides, "user_overrides": user_overrides, "recipe": recipe.to_dict(),
            "data": data_info, "seed": seed, "netdsl_version": __version__}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "run.json", json.dumps({**meta, "world_size": world, "device": str(device),
                                                   "precision": precision,
                                                   "channels_last": channels_last, "compile": cfg.compile},
                                                  indent=2, default=str))
        log(f"{graph.graph['name']}: {sum(p.numel() for p in raw.parameters()):,} parameters; "
            f"{source}: {len(train_set)} train / {len(val_set or [])} val / {len(test_set)} test; "
            f"recipe {recipe.name}, {recipe.epochs} epochs, batch {B}; {world} x {device.type}")

    def checkpoint(path: Path, epoch: int, batch: int) -> None:
        if rank == 0:
            save_checkpoint(path, {**meta, "model": raw.state_dict(), "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(), "epoch": epoch, "batch": batch,
                                   "rng": rng_states(), "state": state, "history": history})
        fabric.barrier()

    stop = {"requested": False}
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if stop["requested"]:  # a second Ctrl-C: the user does not want to wait for the step
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        stop["requested"] = True

    signal.signal(signal.SIGINT, on_sigint)
    progress = EpochProgress(cfg.progress and rank == 0, console)
    try:
        if ckpt is not None and start_batch:
            set_rng_states(ckpt["rng"])
        for epoch in range(start_epoch, recipe.epochs):
            batches = epoch_batches(len(train_set), B, seed=seed, epoch=epoch)
            if start_batch == 0:
                torch.manual_seed(derive_seed(seed, epoch, 1 << 20, rank))  # this epoch's dropout draws
                state["partial"] = None
            sums = state["partial"] or [0.0, 0, 0]  # loss * n, correct, n (this process)
            local = torch.tensor(sums[:1], dtype=torch.float64, device=device)
            correct = torch.tensor(sums[1:], dtype=torch.int64, device=device)  # [correct, n]
            net.train()
            progress.start(epoch, recipe.epochs, len(batches), start_batch)
            for step in range(start_batch, len(batches)):
                idx = batches[step]
                part = shard(idx, rank, world)
                params = {k: v[part] for k, v in aug.draw(len(idx), shape[1], shape[2],
                                                          generator(seed, epoch, step + 1)).items()}
                mine = idx[part].to(device)
                x = normalize(train_x[mine], mean_t, std_t)
                x = (aug.apply(x, params) if aug.active else x).contiguous(memory_format=mem)
                y = train_y[mine]
                logits = net(x)
                loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                fabric.backward(loss)
                optimizer.step()
                with torch.no_grad():
                    local += loss.detach().double() * len(y)
                    correct += torch.stack([(logits.argmax(1) == y).sum(), torch.tensor(len(y), device=device)])
                if progress.enabled:
                    progress.update(len(y) * world, float(local) / int(correct[1]),
                                    100.0 * int(correct[0]) / int(correct[1]))
                else:
                    progress.update(len(y) * world, 0.0, 0.0)
                if on_step is not None:
                    on_step(epoch, step)
                requested = torch.tensor(int(stop["requested"]), device=device)
                if world > 1:
                    requested = fabric.all_reduce(requested, reduce_op="sum")
                if int(requested):
                    state["partial"] = [float(local), int(correct[0]), int(correct[1])]
                    progress.stop()
                    checkpoint(out / "last.pt", epoch, step + 1)
                    raise TrainingInterrupted(out / "last.pt", epoch, step + 1)
            seconds, images = progress.stop()
            start_batch = 0
            totals = torch.cat([local, correct.double()])
            if world > 1:
                totals = fabric.all_reduce(totals, reduce_op="sum")
                for b in raw.buffers():  # BN statistics: rank 0's, so every process holds the same model
                    torch.distributed.broadcast(b, 0)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": float(totals[0] / totals[2]), "train_acc": float(100 * totals[1] / totals[2]),
                   "val_loss": None, "val_acc": None, "seconds": round(seconds, 3),
                   "images_per_s": round(images * world / max(seconds, 1e-9), 1)}
            if val_set is not None:
                v = evaluate(net, val_set, mean_t, std_t, device=device, batch_size=cfg.eval_batch_size,
                             memory_format=mem, rank=rank, world=world, fabric=fabric)
                row["val_loss"], row["val_acc"] = v["loss"], v["top1"]
            history.append(row)
            monitor = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(monitor)
            else:
                scheduler.step()
            improved = _improves(row, recipe.best, state)
            if improved:
                state["best"], state["best_epoch"] = row[recipe.best] if val_set is not None else None, epoch + 1
                state["best_loss"] = row["val_loss"]
            if monitor < state["min_val_loss"]:
                state["min_val_loss"], state["bad_epochs"] = monitor, 0
            else:
                state["bad_epochs"] += 1
            state["partial"] = None
            if improved:
                checkpoint(out / "best.pt", epoch + 1, 0)
            checkpoint(out / "last.pt", epoch + 1, 0)
            if rank == 0:
                write_metrics(out, history)
                log(_epoch_line(row, recipe.epochs, improved and val_set is not None))
            patience = (recipe.early_stopping or {}).get("patience")
            if patience and state["bad_epochs"] >= patience:
                log(f"early stopping: no new validation-loss minimum for {patience} epochs")
                break
    except TrainingInterrupted:
        if rank == 0 and history:
            plot_curves(history, out / "curves.png", f"{graph.graph['name']} on {source}")
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.stop()

    results = {"epochs": len(history), "best_epoch": state["best_epoch"]}
    test_kw = dict(device=device, batch_size=cfg.eval_batch_size, memory_format=mem, rank=rank, world=world,
                   fabric=fabric)
    results["last"] = evaluate(net, test_set, mean_t, std_t, **test_kw)
    if (out / "best.pt").exists() and val_set is not None:
        last = {k: v.clone() for k, v in raw.state_dict().items()}
        load_model_state(raw, load_checkpoint(out / "best.pt")["model"], out / "best.pt")
        results["best"] = evaluate(net, test_set, mean_t, std_t, **test_kw)
        raw.load_state_dict(last)  # the returned model is the final one, as in last.pt
    else:
        results["best"] = results["last"]
    if rank == 0:
        write_atomic(out / "results.json", json.dumps(results, indent=2))
        plot_curves(history, out / "curves.png", f"{graph.graph['name']} on {source}")
        b = results["best"]
        log(f"test ({len(test_set)} images, best epoch {state['best_epoch']}): loss {b['loss']:.4f}  "
            f"top-1 {b['top1']:.2f}%" + (f"  top-5 {b['top5']:.2f}%" if "top5" in b else "")
            + f"   -> {out}/best.pt, last.pt, metrics.csv, curves.png")
    results["model"] = raw
    return results


def _improves(row: dict, key: str, state: dict) -> bool:
    if row["val_loss"] is None or state["best"] is None:
        return True  # no validation split: the last epoch is the best one
    if key == "val_acc":  # equal accuracy (common on small validation sets): the lower loss wins
        return (row["val_acc"], -row["val_loss"]) > (state["best"], -state["best_loss"])
    return row[key] < state["best"]


def _epoch_line(row: dict, epochs: int, best: bool) -> str:
    val = "" if row["val_loss"] is None else f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:6.2f}%"
    return (f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:6.2f}%{val}  {row['images_per_s']:,.0f} img/s" + ("  *best" if best else ""))


@torch.no_grad()
def evaluate(model, data: ImageSet, mean: torch.Tensor, std: torch.Tensor, *, device, batch_size: int = 500,
             memory_format=torch.contiguous_format, rank: int = 0, world: int = 1, fabric=None) -> dict:
    """Mean loss, top-1 and (for more than 5 classes) top-5 accuracy in percent over ``data``.

    With several processes each evaluates its contiguous slice and the sums are all-reduced.
    """
    was_training = model.training
    model.eval()
    part = shard(torch.arange(len(data)), rank, world)
    images, labels = data.images[part], data.labels[part]
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss * n, top-1, top-5, n
    classes = 0
    for lo in range(0, len(labels), batch_size):
        x = normalize(images[lo:lo + batch_size].to(device), mean, std).contiguous(memory_format=memory_format)
        y = labels[lo:lo + batch_size].to(device)
        logits = model(x).float()
        classes = logits.shape[1]
        k5 = min(5, classes)
        top1, top5 = correct_topk(logits, y, (1, k5))
        sums += torch.tensor([float(F.cross_entropy(logits, y, reduction="sum")), top1, top5, len(y)],
                             dtype=torch.float64, device=device)
    if world > 1 and fabric is not None:
        sums = fabric.all_reduce(sums, reduce_op="sum")
    model.train(was_training)
    n = float(sums[3])
    out = {"loss": float(sums[0]) / n, "top1": 100.0 * float(sums[1]) / n, "images": int(n)}
    if classes > 5:
        out["top5"] = 100.0 * float(sums[2]) / n
    return out
