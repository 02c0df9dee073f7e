"""The report's training section, read from a ``netdsl train`` run folder: run.json (how it was
trained), results.json (final test metrics), metrics.jsonl (per epoch) drawn as curves."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import NetdslError
from .drawings import figure, svg_text
from .page import esc, table


def training(run: Path, name: str) -> str:
    from ..display import for_matplotlib
    from ..train.metrics import curves_image, read_metrics

    rows = read_metrics(run / "metrics.jsonl")
    if not rows:
        raise NetdslError(f"{run / 'metrics.jsonl'}: no epoch recorded yet", None)
    out = f"<p>run folder: {esc(run)}</p>"
    info = _json(run / "run.json")
    if info:
        spec, data, recipe = (_sub(info, k) for k in ("spec", "data", "recipe"))
        epochs, batch = recipe.get("epochs", "?"), recipe.get("batch_size", "?")
        device = f"{info.get('world_size', '')} x {info.get('device', '')}, precision {info.get('precision', '')}"
        facts = [
            ["spec", spec.get("preset") or spec.get("name") or ""],
            ["--set", ", ".join(f"{k}={v}" for k, v in _sub(info, "user_overrides").items())],
            ["data", data.get("source", "")],
            ["recipe", f"{recipe.get('name', '')}, {epochs} epochs, batch {batch}"],
            ["seed", info.get("seed")],
            ["device", device],
        ]
        out += table(["run", ""], facts)
    results = _json(run / "results.json")
    if results:
        metrics = []
        for which in ("best", "last"):
            r = results.get(which) or {}
            metrics.append([which, r.get("loss"), r.get("top1"), r.get("top5"), r.get("images")])
        out += (
            f"<p>Final metrics on the test set (best epoch {esc(results.get('best_epoch', '?'))} "
            f"of {esc(results.get('epochs', '?'))}):</p>"
        )
        out += table(["checkpoint", "loss", "top-1 (%)", "top-5 (%)", "images"], metrics, numeric={1, 2, 3, 4})
    else:
        out += "<p class=note>no results.json: the run has not finished.</p>"
    keys = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "images_per_s")
    epochs = table(list(keys), [[r.get(k) for k in keys] for r in rows], numeric=set(range(len(keys))))
    out += f"<details><summary>every epoch ({len(rows)} rows)</summary>{epochs}</details>"
    with svg_text():
        svg = curves_image(rows, for_matplotlib(f"{name}: {run.name}"), "svg")
    return out + figure(svg, "curves", fit=True)


def trained_as(run: Path) -> str | None:
    """``the run was trained as 'netdsl train TARGET --set k=v'; report it with the same`` (None:
    no run.json to tell)."""
    info = _json(run / "run.json")
    spec = _sub(info, "spec")
    target = spec.get("preset") or spec.get("target")
    if not target:
        return None
    sets = "".join(f" --set {k}={v}" for k, v in _sub(info, "user_overrides").items())
    return f"the run was trained as 'netdsl train {target}{sets}': report it with the same target and --set values"


def _sub(d: dict, key: str) -> dict:
    value = d.get(key)
    return value if isinstance(value, dict) else {}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise NetdslError(f"{path}: not valid JSON ({e})", None) from None
    return data if isinstance(data, dict) else {}
