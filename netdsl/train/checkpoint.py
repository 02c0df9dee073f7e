"""Checkpoints: one dict written atomically, read back only through torch's weights-only loader.

Layout (``FORMAT``, ``VERSION``)::

    model       state_dict of the generated module (keys are the spec's node names)
    optimizer   optimizer.state_dict()        scheduler  the schedule's state
    epoch       epochs completed              batch      batches done in epoch ``epoch`` (0 at a boundary)
    rng         torch / cuda / numpy / python generator states
    spec        {"target", "file", "name", "preset", "text"}: the root spec's source text itself, so
                resume and eval compile what was trained and never read a stored path
    overrides   every spec parameter value the network was built with (user's, classes, recipe's)
    recipe      the recipe as a dict          data       {"source", "mean", "std", "classes", "input", "fit"}
    state       best metric, plateau and early-stopping counters, partial epoch sums
    history     the per-epoch metrics rows    seed, netdsl_version

Other tools (ONNX export, viz) need only ``ckpt["model"]``, ``ckpt["spec"]`` and ``ckpt["overrides"]``.
``state["finished"]`` marks a run whose last epoch (or early stop) is done.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..errors import NetdslError
from ..io import write_atomic

FORMAT = "netdsl-checkpoint"
VERSION = 1
REQUIRED = ("model", "epoch", "spec", "overrides", "data")


class CheckpointError(NetdslError):
    """A checkpoint that is missing, truncated, foreign or does not match the network."""


def save_checkpoint(path: str | Path, ckpt: dict) -> Path:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **ckpt}, buf)
    return write_atomic(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    """Read and validate a netdsl checkpoint; any other file is a :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, a pickle with foreign classes, not torch at all
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'})",
            None,
            "the file may be truncated; 'last.pt' and 'best.pt' are written atomically",
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a netdsl checkpoint (no format marker {FORMAT!r})",
            None,
            "netdsl reads the checkpoints that 'netdsl train' writes (last.pt, best.pt)",
        )
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt.get('version')}, this netdsl reads {VERSION}")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict, path: str | Path) -> None:
    """``load_state_dict`` with a located error when the checkpoint is for another network."""
    own = model.state_dict()
    bad = [f"missing {k}" for k in own if k not in state] + [f"unexpected {k}" for k in state if k not in own]
    bad += [
        f"{k} is {list(v.shape)} in the checkpoint but {list(own[k].shape)} in the network"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if not bad:
        model.load_state_dict(state)
    if bad:
        raise CheckpointError(
            f"{path}: weights do not fit the network ({len(bad)} keys differ, e.g. {bad[0]})",
            None,
            "build the same spec and --set values that trained it",
        )


def rng_states() -> dict:
    """Every generator the loop touches, in types the weights-only loader accepts."""
    np_state = cast("tuple[Any, ...]", np.random.get_state())  # the legacy (MT19937) tuple
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def spec_source(ckpt: dict, where: str | Path) -> dict:
    """The checkpoint's spec as a :func:`netdsl.pipeline.compile_source` record.

    Checkpoints of older netdsl versions hold no spec text: a preset is then rebuilt from the
    bundled library by name; a stored file path is not followed (it may point anywhere)."""
    spec = ckpt["spec"]
    if isinstance(spec.get("text"), str):
        return spec
    from ..presets import presets

    target = str(spec.get("target", ""))
    if target in presets():
        return {"target": target, "file": target, "name": spec.get("name"), "preset": target, "text": None}
    raise CheckpointError(
        f"{where}: the checkpoint names its spec by path ({target}) without its text",
        None,
        "give the spec: netdsl eval SPEC --weights CKPT",
    )


class Checkpointer:
    """Writes a run's checkpoints: rank 0 writes, every process waits for it."""

    def __init__(self, meta: dict, model: torch.nn.Module, optimizer, scheduler, fabric, rank: int):
        self.meta, self.model, self.optimizer, self.scheduler = meta, model, optimizer, scheduler
        self.fabric, self.rank = fabric, rank

    def save(self, path: Path, epoch: int, batch: int, state: dict, history: list[dict]) -> None:
        if self.rank == 0:
            save_checkpoint(
                path,
                {
                    **self.meta,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "epoch": epoch,
                    "batch": batch,
                    "rng": rng_states(),
                    "state": state,
                    "history": history,
                },
            )
        self.fabric.barrier()
