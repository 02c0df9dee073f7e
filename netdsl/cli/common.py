"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import Span, SpecTypeError, SpecValueError
from ..frontend import Limits

# The work budget's command-line flags: Limits field (the flag is its name with dashes), what it refuses.
BUDGET_FLAGS = (
    ("max_params", "specs with more parameters"),
    ("max_nodes", "specs with more ops"),
    ("max_edges", "specs with more connections between ops"),
    ("max_layers", "specs with more block units in all"),
    ("max_loop_iterations", "specs whose loops run more iterations in all"),
    ("max_map_elements", "tensors with more values per sample"),
)


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """``--set NAME=VALUE`` (repeatable), read by :func:`overrides`."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE", help=help)


def add_target(p: argparse.ArgumentParser, optional: bool = False) -> None:
    """The target, ``--set``, the work budget and ``--opt`` (``optional``: the target may be left out)."""
    p.add_argument(
        "target", nargs="?" if optional else None, help="a .net spec file or a preset name (see 'netdsl list')"
    )
    add_overrides(p, "override a spec parameter, e.g. --set k=24 (repeatable)")
    lim = Limits()
    budget = p.add_argument_group("work budget", "limits checked before anything is built (docs/errors.md)")
    for field, what in BUDGET_FLAGS:
        default = getattr(lim, field)
        budget.add_argument(
            "--" + field.replace("_", "-"),
            type=positive_int,
            default=default,
            metavar="N",
            help=f"refuse {what} (default {default:,})",
        )
    p.add_argument(
        "--opt",
        type=int,
        default=1,
        choices=(0, 1),
        help="optimization level: 1 plans concat buffers (default), 0 is the naive reference",
    )


def overrides(args) -> dict:
    out = {}
    for item in args.overrides:
        if "=" not in item:
            raise SpecTypeError(
                f"--set expects NAME=VALUE, got {item!r}",
                Span("--set", 1, 1, 1, len(item) + 1, text=item),
                "for example --set k=24",
            )
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def limits(args) -> Limits:
    return Limits(**{field: getattr(args, field) for field, _ in BUDGET_FLAGS})


def writable_output(path: str, flag: str = "-o") -> None:
    """Refuse, before any work, an output path netdsl could not write: a folder, a file in a
    folder that does not exist or cannot be written, or a read-only file."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise SpecValueError(f"{flag} {path}: is a folder, not a file name", None)
    if not folder.is_dir():
        raise SpecValueError(f"{flag} {path}: the folder '{folder}' does not exist", None)
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise SpecValueError(f"{flag} {path}: not writable", None)


def existing_file(path: str, flag: str) -> None:
    """Refuse, before any work, an input file that is not there."""
    if not Path(path).is_file():
        raise SpecValueError(f"{flag} {path}: no such file", None)


def _int_at_least(low: int, what: str):
    """An argparse type: an integer >= ``low`` (argparse turns the error into a one-line usage
    error, exit 2)."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return check


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")


def compile_target(args, *, quiet: bool = False, **kw):
    """The pipeline on a subcommand's target, ``--set`` values, limits and ``--opt``; prints the
    spec's warnings on stderr (unless ``quiet``: a command that reports them itself) and returns
    the graph."""
    from .. import pipeline

    if getattr(args, "opt", None) is not None:
        kw.setdefault("opt", args.opt)
    graph = pipeline.compile_target(args.target, overrides(args), limits=limits(args), **kw).graph
    for warning in () if quiet else graph.graph.get("warnings", ()):
        print(str(warning), file=sys.stderr)
    return graph
