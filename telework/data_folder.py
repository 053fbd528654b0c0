"""The data folder of ``telework up``: made private, and held by one `up` at a time.

:func:`prepare_data_folder` makes the folder 0700; :func:`make_private` takes group and other
permissions off what `up` keeps in it (database, embedded Redis, keys, URL and token files, logs,
evidence) when an older release or another umask left them open. `up` runs with umask 077, so
everything it and its children create later is 0600 (folders 0700).

:func:`lock_data_folder` holds an exclusive ``flock`` on ``DATA_DIR/up.lock`` (0600, the holder's
pid inside) for as long as `up` lives: the kernel releases it however `up` ends, even killed. A
second `up` on the folder stops with one line naming the folder and the pid of the first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from core.errors import OperatorError
from core.private import tighten

LOCK_FILE = "up.lock"  # in the data folder: held (flock) by the `up` running on it, names its pid


class DataFolderBusy(OperatorError):
    """Another `telework up` runs on the data folder."""


def prepare_data_folder(data_dir: Path) -> Path:
    """The data folder as an absolute path (the children get it), created private (0700) if missing."""
    folder = data_dir.resolve()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def make_private(data_dir: Path, entries: Iterable[str]) -> list[Path]:
    """The data folder 0700 and each of ``entries`` in it (files, folders with all they hold)
    without group or other permissions; links are left alone. Returns what was changed.
    OperatorError naming the file when one cannot be changed (another user's)."""
    try:
        changed = tighten(data_dir, recursive=False)
        for name in entries:
            changed += tighten(data_dir / name)
    except OSError as exc:
        raise OperatorError(
            f"cannot make {exc.filename} private (expected a file of this user, readable by it only): "
            f"{exc.strerror or exc}"
        ) from None
    return changed


def lock_data_folder(data_dir: Path, undo: contextlib.ExitStack) -> None:
    """Hold ``data_dir/up.lock`` (0600, an exclusive flock, our pid inside) until ``undo`` runs;
    DataFolderBusy naming the folder and the holder's pid when another `up` holds it."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):  # a file made by an older release, or by another user
        os.fchmod(fd, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            raise OperatorError(f"cannot lock {path}: {exc.strerror or exc}") from None
        raise DataFolderBusy(
            f"another `telework up` (pid {holder}) is running on the data folder {data_dir}; "
            "stop it first, or give this one another --data-dir"
        ) from None
    undo.callback(os.close, fd)  # closing the file releases the lock
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
