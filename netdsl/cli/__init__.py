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
    "eval",
    "bench",
    "export-weights",
]


class OneLineParser(argparse.ArgumentParser):
    """argparse with a bad argument answered in one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, shown(f"{self.prog}: error: {message} (see '{self.prog} --help')") + "\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = OneLineParser(prog="netdsl", description="Compile connectivity-described CNNs.")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".cmd_{name.replace('-', '_')}", __name__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed in one line
        return stop.code if isinstance(stop.code, int) else 2
    try:
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
