"""``netdsl report``: one self-contained HTML page (summary, memory, drawings, run, spec)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ..display import shown
from ..errors import SpecValueError
from ..io import write_atomic
from .common import add_target, compile_target, existing_file, non_negative_int, writable_output


def register(sub) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML page about a network (and a training run)")
    add_target(p, optional=True)
    p.add_argument("-o", "--output", required=True, help="the HTML file to write (e.g. report.html)")
    p.add_argument("--run", metavar="RUN_DIR", help="a 'netdsl train' run folder: curves, final metrics, heat map")
    p.add_argument(
        "--search",
        metavar="SEARCH_DIR",
        help="a 'netdsl search' folder: accuracy against cost, the front, each trial's values and matrix "
        "(the target defaults to the search's spec)",
    )
    p.add_argument(
        "--weights",
        metavar="CKPT",
        help="heat map weights: a state_dict or checkpoint (default: RUN_DIR/best.pt)",
    )
    p.add_argument(
        "--max-units",
        type=non_negative_int,
        default=4,
        metavar="N",
        help="drawing: blocks with more units keep the first and last N/2 (0 = every unit; default 4, "
        "so that a whole network fits a screen or two)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import STEPS, ReportInput, render_report, spec_sources

    if Path(args.output).suffix.lower() not in (".html", ".htm"):
        raise SpecValueError(f"-o {args.output}: a report is an HTML file; end the name in .html", None)
    writable_output(args.output)
    search_dir = Path(args.search) if args.search else None
    if search_dir is not None:
        from ..explore.folder import read_record

        record = read_record(search_dir)  # refuses a folder that holds no search
        if args.target is None:
            args.target = record["spec"]
    if args.target is None:
        raise SpecValueError("netdsl report needs a TARGET (a spec or preset), or --search DIR", None)
    run_dir = Path(args.run) if args.run else None
    if run_dir is not None:
        if not run_dir.is_dir():
            raise SpecValueError(f"--run {args.run}: no such folder", None, "give a folder written by 'netdsl train'")
        existing_file(str(run_dir / "metrics.jsonl"), "--run")
    if args.weights:
        existing_file(args.weights, "--weights")
    with _progress(len(STEPS) + 1) as step:
        step("compile")
        graph = compile_target(args)
        spec = Path(graph.graph["file"])
        sources = spec_sources(spec, spec.read_bytes().decode("utf-8", errors="replace"))
        weights = Path(args.weights) if args.weights else None
        inp = ReportInput(graph, sources, run_dir, weights, args.max_units, search_dir)
        html = render_report(inp, step)
    write_atomic(args.output, html)
    print(f"wrote {shown(args.output)}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[str], None]]:
    """The report's steps as a progress bar (netdsl.progress) on a terminal; nothing when piped.
    Each call names the step about to run and counts the one before it."""
    from ..progress import TaskProgress

    with TaskProgress("report", total) as bar:
        started = False

        def step(name: str) -> None:
            nonlocal started
            if started:
                bar.advance()
            bar.advance(0, status=name)  # a new status is drawn at once
            started = True

        yield step
