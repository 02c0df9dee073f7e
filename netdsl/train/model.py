"""The network of a run: its spec values chosen, compiled once through the pipeline, instantiated,
and put on the devices (Lightning Fabric) with its optimizer and learning-rate schedule."""

from __future__ import annotations

import functools
import os
import time

import torch

from .. import pipeline
from ..errors import NetdslError
from .augment import derive_seed
from .recipe import Recipe


def make_fabric(accelerator: str, devices: int, num_nodes: int, precision: str):
    """A launched Fabric and its precision string. Under torchrun, torchrun decides the process count."""
    from lightning_fabric import Fabric

    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if "LOCAL_WORLD_SIZE" in os.environ:
        devices = int(os.environ["LOCAL_WORLD_SIZE"])
        num_nodes = int(os.environ.get("WORLD_SIZE", devices)) // devices
    if precision == "auto" and accelerator != "cuda":  # on a CPU bf16 where its measured step is faster
        precision = "bf16" if accelerator == "cpu" and cpu_bf16_is_faster() else "32"
    chosen = {
        "auto": "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed",  # CUDA
        "32": "32-true",
        "bf16": "bf16-mixed",
        "fp16": "16-mixed",
    }.get(precision)
    if chosen is None:
        raise NetdslError(f"unknown precision {precision!r}", None, "use auto, 32, bf16 or fp16")
    strategy = "ddp" if devices * num_nodes > 1 else "auto"
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=chosen)  # type: ignore[arg-type]  # one of Fabric's literals, chosen above
    fabric.launch()
    return fabric, chosen


@functools.cache
def cpu_bf16_is_faster(threshold: float = 0.8) -> bool:
    """Whether this CPU runs a bf16-autocast training step at most ``threshold`` times the time of
    an fp32 one, measured once per process on a channels_last 3x3 convolution (forward, backward):
    true where the CPU has bf16 matrix units (AMX: about 8x here), false where bf16 is emulated."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format
    x = torch.randn(16, 64, 16, 16).contiguous(memory_format=torch.channels_last)

    def step(dtype: torch.dtype | None) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = conv(x)
        out.float().sum().backward()
        return time.perf_counter() - t0

    times: dict[torch.dtype | None, list[float]] = {None: [], torch.bfloat16: []}
    for _ in range(4):  # interleaved; the first of each is a warm-up
        for dtype, ts in times.items():
            ts.append(step(dtype))
    return min(times[torch.bfloat16][1:]) <= threshold * min(times[None][1:])


def run_overrides(declared: tuple[str, ...], user: dict, classes: int, recipe: Recipe, log) -> dict:
    """The user's values, plus the data's class count and the recipe's spec parameters where the
    spec declares them (``declared``: its parameter names)."""
    out = dict(user)
    if "classes" in declared and "classes" not in out:
        out["classes"] = classes
    for k, v in recipe.spec_params.items():
        if k in declared:
            out.setdefault(k, v)
        else:
            log(f"note: recipe {recipe.name} sets {k}={v}, but the spec declares no parameter {k!r}")
    return out


def compile_network(source: dict | str, overrides: dict, limits=None) -> pipeline.Compiled:
    """The run's one compile: a checkpoint's embedded source record, or a target for a new run."""
    if isinstance(source, dict):
        compiled = pipeline.compile_source(source, overrides, limits=limits)
    else:
        compiled = pipeline.compile_target(source, overrides, limits=limits)
    require_one_output(compiled, "train")
    check_classifier(compiled)
    return compiled


def require_one_output(compiled: pipeline.Compiled, command: str) -> None:
    """Training and evaluation fit and score a classifier: one output of class scores. A network
    with several outputs (``output(a, b)``: a detector's class and box heads) is refused before
    any data is read, naming its outputs."""
    outputs = compiled.graph.graph.get("outputs") or ()
    if len(outputs) > 1:
        names = ", ".join(name for name, _ in outputs)
        raise NetdslError(
            f"'{compiled.graph.graph['name']}' has {len(outputs)} outputs ({names}); "
            f"netdsl {command} trains and scores classifiers, which have one",
            None,
            "train a multi-output network from Python (netdsl.build_model returns a module whose forward "
            "returns a tuple) with a loss of your own",
        )


def check_classifier(compiled: pipeline.Compiled) -> None:
    """Training fits class scores to image labels: a network whose output is a map (FC-DenseNet's
    per-pixel classes) is refused before the run folder is made or any epoch runs."""
    shape = compiled.output_shape
    if len(shape) != 1:
        raise NetdslError(
            f"netdsl train trains classifiers (one vector of class scores per image), but this network's output "
            f"is a {'x'.join(map(str, shape))} map per image",
            None,
            "a per-pixel class map needs per-pixel labels: train it from Python (netdsl.build_model), "
            "or end the spec in gap and linear(classes) to train it as a classifier",
        )


def check_classes(compiled: pipeline.Compiled, classes: int, source: str) -> None:
    width = compiled.output_shape[0]
    if width != classes:
        raise NetdslError(
            f"the network ends in {width} outputs but {source} has {classes} classes", None, f"--set classes={classes}"
        )


def memory_format(graph, channels_last: bool | None, device: torch.device) -> torch.memory_format:
    """The layout of a run: ``--channels-last``/``--no-channels-last`` where given, pinned in the
    module (on the graph, before the module is generated); else the compiler's choice for the
    module; for a module without one (no spatial input), channels_last on CUDA."""
    from ..backends.torch.decisions import memory_format as chosen

    if channels_last is not None:
        graph.graph["memory_format"] = "channels_last" if channels_last else "contiguous"
    fmt = chosen(graph)
    if fmt is not None:
        channels_last = fmt == "channels_last"
    elif channels_last is None:
        channels_last = device.type == "cuda"
    return torch.channels_last if channels_last else torch.contiguous_format


def build_network(compiled: pipeline.Compiled, seed: int) -> torch.nn.Module:
    # instantiate's seed covers every initial tensor; the global generator is seeded as well because
    # the loop's first draws come from it, and they must not depend on what ran before train().
    torch.manual_seed(derive_seed(seed, 1 << 21))
    return pipeline.instantiate(compiled.graph, seed)


class StepFactors:
    """LambdaLR's multiplier for a step schedule (a class, so its state_dict is plain data)."""

    def __init__(self, recipe: Recipe, epochs: int):
        self.factors = [recipe.lr_factor(e, epochs) for e in range(epochs + 1)]

    def __call__(self, epoch: int) -> float:
        return self.factors[min(epoch, len(self.factors) - 1)]


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    o = recipe.optimizer
    return torch.optim.SGD(
        model.parameters(),
        lr=o["lr"],
        momentum=o.get("momentum", 0.0),
        nesterov=o.get("nesterov", False),
        weight_decay=o.get("weight_decay", 0.0),
    )


def make_scheduler(optimizer, recipe: Recipe):
    if recipe.schedule["kind"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=recipe.schedule.get("factor", 0.1),
            patience=recipe.schedule.get("patience", 10),
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, StepFactors(recipe, recipe.epochs))


def restore_schedule(optimizer, scheduler, ckpt: dict, recipe: Recipe) -> None:
    """Load a checkpoint's optimizer and schedule; a step schedule is rescaled to the (maybe longer) run."""
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        scheduler.lr_lambdas[0] = StepFactors(recipe, recipe.epochs)
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * scheduler.lr_lambdas[0](ckpt["epoch"])
