"""The ``netdsl`` command line. Each subcommand lives in its own module with ``register(sub)``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from ..display import shown
from ..errors import IncludeError, NetdslError, Span, SpecNameError

# Subcommand modules, in the order `netdsl --help` lists them.
COMMANDS = [
    "compile",
    "summary",
    "check",
    "fmt",
    "list",
    "run",
    "viz",
    "report",
    "train",
    "search",
    "eval",
    "bench",
    "export-weights",
    "lsp",
]


class OneLineParser(argparse.ArgumentParser):
    """argparse with a bad argument answered in one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, shown(f"{self.prog}: error: {message} (see '{self.prog} --help')") + "\n")


# Flags every command takes, before or after its name (`netdsl --debug check x` and `netdsl check x
# --debug`): the main parser and each subparser define them with a SUPPRESS default, so an absent
# flag sets nothing and the subparser never overwrites a value given before the command name;
# main() fills in the defaults. Commands get them from build_parser, so a new cmd_*.py needs nothing.
GLOBAL_DEFAULTS = {"debug": False, "threads": None}


def add_global_flags(p: argparse.ArgumentParser) -> None:
    from .common import positive_int

    known = p._option_string_actions  # a command that defines one of these itself keeps its own
    group = p.add_argument_group("global options (before or after the command)")
    if "--debug" not in known:
        group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    if "--threads" not in known:
        group.add_argument(
            "--threads",
            type=positive_int,
            default=argparse.SUPPRESS,
            metavar="N",
            help="CPU threads for torch and onnxruntime (default: theirs; one is often fastest on a loaded machine)",
        )


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = OneLineParser(prog="netdsl", description="Compile connectivity-described CNNs.")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    add_global_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".cmd_{name.replace('-', '_')}", __name__).register(sub)
    for p in {id(p): p for p in sub.choices.values()}.values():  # aliases share a parser
        add_global_flags(p)
    return parser


def apply_threads(threads: int | None) -> None:
    """``--threads N``: torch's intra-op threads (onnxruntime's are passed to its session)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed in one line
        return stop.code if isinstance(stop.code, int) else 2
    for key, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, default)
    try:
        apply_threads(args.threads)
        return int(args.func(args) or 0)
    except NetdslError as err:
        if args.debug:
            raise
        target = getattr(args, "target", None)
        if err.span is None and isinstance(target, str) and isinstance(err, (SpecNameError, IncludeError)):
            # an unknown preset or an unreadable spec file: the mistake is the target argument
            err.span = Span("<command line>", 1, 1, 1, len(target) + 1, text=target)
        print(str(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
