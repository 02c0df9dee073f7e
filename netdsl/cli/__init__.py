"""The ``netdsl`` command line. Each subcommand lives in its own module with ``register(sub)``."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import IncludeError, NetdslError, Span, SpecNameError

# Subcommand modules, in the order `netdsl --help` lists them.
COMMANDS = ["compile", "summary", "check", "list", "run", "viz", "train", "eval", "bench"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="netdsl", description="Compile connectivity-described CNNs.")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".cmd_{name}", __name__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
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
