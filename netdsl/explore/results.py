"""A search's results for a person and for pandas: the trials table, the Pareto front, JSON, CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..io import write_atomic
from .budget import human
from .folder import read_record


def trial_rows(study) -> list[dict]:
    """One plain dict per trial (the ``--show --json`` record), the Pareto front marked."""
    objectives = study.user_attrs.get("objectives", ["accuracy"])
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        note = ""
        if a.get("over_budget"):
            note = "over budget: " + ", ".join(a["over_budget"])
        elif a.get("reason"):
            note = a["reason"]
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "values": dict(a.get("values", {})),
                "optuna_params": dict(t.params),
                "params": a.get("params"),
                "flops": a.get("flops"),
                "val_acc": a.get("val_acc"),
                "test_acc": a.get("test_acc"),
                "objectives": dict(zip(objectives, t.values, strict=True)) if t.values else None,
                "seconds": a.get("seconds"),
                "overhead_s": a.get("overhead_s"),
                "epochs": a.get("epochs"),
                "note": note,
                "run": a.get("run"),
                "front": False,
            }
        )
    for k in pareto_front(rows, objectives):
        rows[k]["front"] = True
    return rows


def pareto_front(rows: list[dict], objectives: list[str]) -> list[int]:
    """Indices of the complete trials no other complete trial dominates (at least as good in every
    objective, better in one): accuracy up, params and FLOPs down."""
    sign = {"accuracy": -1.0}  # minimize everything: accuracy negated

    def key(r: dict) -> tuple[float, ...]:
        return tuple(sign.get(o, 1.0) * float(r["objectives"][o]) for o in objectives)

    done = [(k, key(r)) for k, r in enumerate(rows) if r["state"] == "COMPLETE" and r["objectives"]]
    front = []
    for k, a in done:
        dominated = any(all(x <= y for x, y in zip(b, a, strict=True)) and b != a for _, b in done)
        if not dominated:
            front.append(k)
    return front


def best_text(study) -> str:
    """'best 0.9712 (trial 4)' for the progress bar."""
    rows = [r for r in trial_rows(study) if r["front"]]
    if not rows:
        return ""
    best = max(rows, key=lambda r: r["val_acc"] if r["val_acc"] is not None else r["test_acc"] or 0.0)
    acc = best["val_acc"] if best["val_acc"] is not None else best["test_acc"]
    return f"best {acc:.4f} (trial {best['number']})" if acc is not None else ""


def _values_text(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def show_text(out: Path, study) -> str:
    """The trials as a table, the front marked with '*'."""
    rec = read_record(out)
    rows = trial_rows(study)
    lines = [
        f"search {out}: {rec.get('network')} ({len(rows)} trials; objectives {', '.join(rec.get('objectives', []))}; "
        f"budget {', '.join(rec.get('budget') or []) or 'none'})",
    ]
    head = ("#", "state", "params", "flops", "val acc", "test acc", "time s", "values / note")
    table = [head]
    for r in rows:
        table.append(
            (
                ("*" if r["front"] else " ") + str(r["number"]),
                r["state"],
                human(r["params"]) if r["params"] is not None else "-",
                human(r["flops"]) if r["flops"] is not None else "-",
                _fmt(r["val_acc"]),
                _fmt(r["test_acc"]),
                _fmt(r["seconds"], 1),
                _values_text(r["values"]) + (f"  [{r['note']}]" if r["note"] else ""),
            )
        )
    widths = [max(len(row[c]) for row in table) for c in range(len(head) - 1)]
    for row in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    lines.append("* the Pareto front (" + ", ".join(_direction(o) for o in rec.get("objectives", [])) + ")")
    return "\n".join(lines)


def _direction(objective: str) -> str:
    return f"{objective} up" if objective == "accuracy" else f"{objective} down"


def show_json(out: Path, study) -> str:
    rec = read_record(out)
    return json.dumps({"search": str(out), **rec, "trials": trial_rows(study)}, indent=2, default=str)


def csv_text(study) -> str:
    rows = trial_rows(study)
    names = sorted({k for r in rows for k in r["values"]})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", "state", *names, "params", "flops", "val_acc", "test_acc", "seconds", "front", "note", "run"])
    for r in rows:
        w.writerow(
            [
                r["number"],
                r["state"],
                *(r["values"].get(n, "") for n in names),
                r["params"] if r["params"] is not None else "",
                r["flops"] if r["flops"] is not None else "",
                r["val_acc"] if r["val_acc"] is not None else "",
                r["test_acc"] if r["test_acc"] is not None else "",
                r["seconds"] if r["seconds"] is not None else "",
                int(r["front"]),
                r["note"],
                r["run"] or "",
            ]
        )
    return buf.getvalue()


def write_csv(study, path: Path) -> None:
    write_atomic(path, csv_text(study))
