"""``netdsl fmt``: rewrite specs in the canonical layout (netdsl/fmt.py), like black or ruff format."""

from __future__ import annotations

import difflib
import os
import stat
import sys
from pathlib import Path

from ..display import shown
from ..errors import IncludeError, NetdslError, SpecValueError
from ..fmt import format_text
from ..frontend.source import MAX_SPEC_BYTES, SPEC_SUFFIX, check_spec_file, strip_bom
from ..io import write_atomic


def register(sub) -> None:
    p = sub.add_parser(
        "fmt",
        help="format .net specs in the canonical layout (in place)",
        description="Rewrite .net specs in place in the canonical layout (docs/language.md, 'Formatting'). "
        "Folders are searched for *.net files; '-' formats standard input to standard output. "
        "Exit code: 0 done, 1 with --check/--diff when a file would change, 2 when a file cannot be read or parsed.",
    )
    p.add_argument("paths", nargs="*", default=["."], metavar="PATH", help="spec files or folders (default: .)")
    p.add_argument("--check", action="store_true", help="write nothing; list files that would change (exit 1 if any)")
    p.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of the changes")
    p.set_defaults(func=run)


def spec_paths(paths: list[str]) -> list[Path]:
    """The files named, and the ``*.net`` files under the folders named (hidden folders skipped),
    each once, in the order given (a folder's files sorted by path)."""
    found: list[Path] = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            inside = []
            for folder, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                inside += [Path(folder) / f for f in files if f.endswith(SPEC_SUFFIX)]
            found += sorted(inside)
        elif path.exists():
            found.append(path)
        else:
            raise SpecValueError(f"{arg}: no such file or folder", None)
    seen: set[Path] = set()
    unique = []
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def read_exact(path: Path) -> str:
    """A spec file's text, undamaged: a file that is not UTF-8 is refused, not 'repaired' and
    written back."""
    check_spec_file(path)
    with open(path, "rb") as f:
        raw = f.read(MAX_SPEC_BYTES + 1)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IncludeError(f"spec file '{path}' is not UTF-8 text (byte {exc.start})", None) from None


def run(args) -> int:
    if args.paths == ["-"]:
        return _stdin(args)
    dry = args.check or args.diff
    changed = unchanged = failed = 0
    for path in spec_paths(args.paths):
        try:
            text = read_exact(path)
            new = format_text(text, str(path))
            if new == text:
                unchanged += 1
                continue
            changed += 1
            if args.diff:
                sys.stdout.writelines(_diff(strip_bom(text), new, str(path)))
            if dry:
                print(shown(f"would reformat {path}"), file=sys.stderr)
            else:
                target = path.resolve()  # a symlinked spec: rewrite the file it points to, keep the link
                if not os.access(target, os.W_OK):
                    raise SpecValueError(f"{path}: not writable", None)
                mode = stat.S_IMODE(os.stat(target).st_mode)
                write_atomic(target, new)
                os.chmod(target, mode)  # the rewritten file keeps its permissions
                print(shown(f"reformatted {path}"), file=sys.stderr)
        except NetdslError as err:
            if getattr(args, "debug", False):
                raise
            failed += 1
            print(str(err), file=sys.stderr)
    print(_summary(changed, unchanged, failed, dry), file=sys.stderr)
    if failed:
        return 2
    return 1 if dry and changed else 0


def _stdin(args) -> int:
    text = sys.stdin.read()
    new = format_text(text, "<stdin>")
    if args.diff:
        sys.stdout.writelines(_diff(strip_bom(text), new, "<stdin>"))
    elif not args.check:
        sys.stdout.write(new)
    return 1 if (args.check or args.diff) and new != text else 0


def _diff(old: str, new: str, name: str) -> list[str]:
    lines = list(difflib.unified_diff(old.splitlines(True), new.splitlines(True), name, name))
    return [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines]


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _summary(changed: int, unchanged: int, failed: int, dry: bool) -> str:
    if dry:
        parts = [f"{_plural(changed, 'file')} would be reformatted", f"{unchanged} already formatted"]
    else:
        parts = [f"{_plural(changed, 'file')} reformatted", f"{unchanged} left unchanged"]
    if failed:
        parts.append(f"{failed} could not be formatted")
    return ", ".join(parts)
