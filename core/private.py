"""Private files: written for their owner only (0600, folders 0700), and tightened when too open.

:func:`write_private` replaces a file in one step with a file made 0600 (whatever the umask, and
whatever mode an older file had). :func:`tightened` is the pure rule: the mode without its group
and other bits; :func:`tighten` applies it to a file or folder tree without following links.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077  # new files 0600 (or 0700 for folders and executables): owner only
OPEN_BITS = 0o077  # group and other: what a private file must not grant


def tightened(mode: int) -> int | None:
    """Pure: the permission bits of ``mode`` without group and other, or None when already private."""
    bits = stat.S_IMODE(mode)
    return None if not bits & OPEN_BITS else bits & ~OPEN_BITS


def write_private(path: Path, data: str | bytes) -> Path:
    """Write ``path`` (0600) in one step: a reader sees the old content or the new, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def tighten(path: Path, *, recursive: bool = True) -> list[Path]:
    """Take group and other permissions off ``path`` and, for a folder (``recursive``), everything in
    it; links are neither followed nor changed. Returns what was changed; what vanished is skipped."""
    changed: list[Path] = []
    pending = [path]
    while pending:
        current = pending.pop()
        try:
            info = current.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            continue
        mode = tightened(info.st_mode)
        if mode is not None:
            current.chmod(mode)
            changed.append(current)
        if recursive and stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(FileNotFoundError):
                pending.extend(current.iterdir())
    return sorted(changed)
