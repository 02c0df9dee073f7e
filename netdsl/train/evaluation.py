"""Evaluate trained weights: the checkpoint says how its data was fitted and normalized."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import pipeline
from ..errors import NetdslError
from .checkpoint import load_checkpoint, load_model_state, spec_source
from .data import ImageSet, fit_images, load_data, split_validation
from .loop import evaluate
from .model import require_one_output
from .names import SPLITS  # noqa: F401  (re-exported)


def evaluate_checkpoint(
    weights: str | Path,
    target: str | None = None,
    data: str | None = None,
    overrides: dict | None = None,
    split: str = "test",
    device: str = "auto",
    batch_size: int = 500,
    limits=None,
) -> dict:
    """Loss, top-1 and top-5 (in %) of a checkpoint on a split of a data source.

    ``target``, ``data`` and ``overrides`` default to the checkpoint's own; given ``overrides``
    are applied on top of the checkpoint's (a mismatch with the weights is a located error). Without
    ``target`` the network is compiled from the spec text embedded in the checkpoint. It runs in
    the run's precision (bf16/fp16 autocast where the run trained mixed), as the run evaluated.
    """
    ckpt = load_checkpoint(weights)
    values = {**ckpt["overrides"], **(overrides or {})}
    if target:
        compiled = pipeline.compile_target(target, values, limits=limits)
    else:
        compiled = pipeline.compile_source(spec_source(ckpt, weights), values, limits=limits)
        target = compiled.target
    require_one_output(compiled, "eval")
    shape = compiled.input_shape
    model = pipeline.instantiate(compiled.graph, seed=None)
    load_model_state(model, ckpt["model"], weights)
    info = ckpt["data"]
    source = data or info["source"]
    splits = load_data(source, size=shape[1:])
    chosen: ImageSet | None
    if split == "test":
        chosen = splits.test
    else:
        train, val = split_validation(splits.train, ckpt["recipe"]["val_split"], ckpt["seed"])
        chosen = train if split == "train" else val
        if chosen is None:
            raise NetdslError(f"{weights}: the run had no validation split", None, "use --split test")
    chosen = ImageSet(fit_images(chosen.images, shape, info["fit"]), chosen.labels)
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
    )
    model.to(dev)
    # the run's precision (Fabric's autocast in its evaluations too, and its input cast to the
    # autocast dtype), so its figures are reproduced
    precision = ckpt.get("precision", "32-true")
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
        result = evaluate(
            model,
            chosen,
            torch.tensor(info["mean"], device=dev),
            torch.tensor(info["std"], device=dev),
            device=dev,
            batch_size=batch_size,
            input_dtype=dtype,
        )
    return {
        "weights": str(weights),
        "target": str(target),
        "data": source,
        "split": split,
        "epoch": ckpt["epoch"],
        "precision": precision,
        **result,
    }
