"""Reading spec files safely: which files netdsl may read, and how much of them.

A spec is input from strangers (papers' repositories, issues, chats), so reading one must not
become a way to read other files or to hang:

* only regular files ending in ``.net`` are read; a FIFO, device or folder is refused by
  ``stat`` before it is opened, and so is a file over :data:`MAX_SPEC_BYTES`;
* an ``include`` resolves against the including file's folder and the bundled spec library
  only, and the file it names (symlinks followed) must lie inside the root spec's folder or the
  library: absolute paths, ``..`` leaving the root's folder and symlinks pointing out are refused;
* a refused file is never opened, so its content cannot appear in a message.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import IncludeError, Span

MAX_SPEC_BYTES = 1 << 20  # 1 MiB: a .net file describes a network in tens of lines
SPEC_SUFFIX = ".net"
BOM = "\ufeff"

# The unsaved text of files open in an editor (the language server, netdsl/lsp), by resolved path:
# read instead of the file on disk, after the same checks (the file must still pass them), so an
# include sees the buffer the user is typing in. Empty outside the language server.
OPEN_BUFFERS: ContextVar[Mapping[Path, str]] = ContextVar("OPEN_BUFFERS", default={})  # noqa: B039 -- never mutated


def library_dirs() -> list[Path]:
    """The bundled spec library: where ``include "lib/x.net"`` looks after the including file's folder."""
    here = Path(__file__).resolve().parent.parent
    return [d.resolve() for d in (here / "specs", here.parent / "specs") if d.is_dir()]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def check_spec_file(path: Path, span: Span | None = None, what: str = "spec file") -> None:
    """Refuse, before opening it, anything but a regular ``.net`` file of at most 1 MiB."""
    if path.suffix != SPEC_SUFFIX:
        raise IncludeError(f"{what} '{path}' does not end in {SPEC_SUFFIX}", span, "netdsl reads only .net spec files")
    try:
        st = os.stat(path)  # follows symlinks: the file that would be read
    except OSError as exc:
        raise IncludeError(f"cannot read {what} '{path}': {exc.strerror or exc}", span) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise IncludeError(f"{what} '{path}' is {kind}", span, "a spec is a regular .net file")
    if st.st_size > MAX_SPEC_BYTES:  # an IncludeError: the file cannot be read as a spec, like a missing one
        raise IncludeError(
            f"{what} '{path}' is {st.st_size:,} bytes, more than the limit of {MAX_SPEC_BYTES:,}",
            span,
            "a .net file describes a network in tens of lines; check that this is a spec",
        )


def read_spec_text(path: Path, span: Span | None = None, what: str = "spec file") -> str:
    """The text of a spec file, checked first (see :func:`check_spec_file`); a UTF-8 BOM is dropped."""
    check_spec_file(path, span, what)
    buffers = OPEN_BUFFERS.get()
    if buffers:
        text = buffers.get(path.resolve())
        if text is not None:
            if len(text.encode("utf-8", errors="replace")) > MAX_SPEC_BYTES:
                raise IncludeError(f"{what} '{path}' is larger than the limit of {MAX_SPEC_BYTES:,} bytes", span)
            return strip_bom(text)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # bounded even if the file grew since stat
    except OSError as exc:
        raise IncludeError(f"cannot read {what} '{path}': {exc.strerror or exc}", span) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise IncludeError(f"{what} '{path}' is larger than the limit of {MAX_SPEC_BYTES:,} bytes", span)
    return strip_bom(raw.decode("utf-8", errors="replace"))


def strip_bom(text: str) -> str:
    return text[1:] if text.startswith(BOM) else text


def _is_absolute(text: str) -> bool:
    return (
        PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or bool(PureWindowsPath(text).drive)
        or text.startswith(("\\", "~"))
    )


def resolve_include(written: str, including: Path, root_dir: Path, span: Span) -> Path:
    """The file ``include "written"`` in ``including`` names, confined to ``root_dir`` (the root
    spec's folder, resolved) and the bundled library. Returned as written (joined to the folder
    it was found in) so messages show the path the user wrote."""
    if not written or "\x00" in written:
        raise IncludeError("empty include path", span)
    if _is_absolute(written):
        raise IncludeError(
            f"include '{written}' is an absolute path",
            span,
            "includes are relative to the including file's folder or the bundled specs/ library",
        )
    if not written.endswith(SPEC_SUFFIX):
        raise IncludeError(
            f"include '{written}' does not end in {SPEC_SUFFIX}", span, "only .net spec files can be included"
        )
    library = library_dirs()
    allowed = [root_dir] + library
    escaped = False
    for base in [including.parent] + library:
        candidate = base / written
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            continue
        if not _inside(real, allowed):
            escaped = True
            continue
        if not os.path.lexists(candidate):
            continue
        check_spec_file(candidate, span, "include file")
        return candidate
    if escaped:
        raise IncludeError(
            f"include '{written}' leaves the spec's folder",
            span,
            "includes must stay inside the root spec's folder or the bundled specs/ library",
        )
    raise IncludeError(
        f"include file '{written}' not found", span, f"looked in {including.parent} and the bundled specs/ library"
    )
