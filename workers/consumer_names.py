"""Stable consumer names, and which consumers of a group are stale.

With ``worker_name`` unset a consumer is named ``{hostname}-{group}-{slot}``: the slot
is the first of 1, 2, 3, ... whose lock file ``data_dir/consumers/{group}-{slot}.lock``
(mode 0600, in a 0700 folder) this process can lock (``fcntl.flock``, exclusive,
non-blocking). The lock is held while the consumer runs. The kernel drops it when the
process ends, even on SIGKILL, so a restarted worker takes the same slot (the same
name) at once and finds its own pending entries under it (re-read at start, without
waiting ``claim_idle_ms`` for another consumer to claim them); two workers on one host
hold different slots. An explicit ``worker_name`` (``TELEWORK_WORKER_NAME``,
``telework worker --name``, what ``telework up`` passes) is used as it is.

:func:`consumer_name`, :func:`lock_path` and :func:`stale_consumers` are pure;
:func:`take_slot` is the I/O.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from core.errors import OperatorError
from workers.dead_letter import text_of

LOCK_FOLDER = "consumers"  # in data_dir
MAX_SLOTS = 1024  # consumers of one group on one host with one data folder
GROUP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class NoConsumerSlot(OperatorError):
    """No consumer name could be taken: the lock folder is unusable, or every slot is held."""


def consumer_name(hostname: str, group: str, slot: int) -> str:
    """``{hostname}-{group}-{slot}``: the name of a consumer without an explicit ``worker_name``."""
    return f"{hostname}-{group}-{slot}"


def lock_path(data_dir: Path, group: str, slot: int) -> Path:
    """The lock file of one slot: ``data_dir/consumers/{group}-{slot}.lock``."""
    if not GROUP_RE.match(group):
        raise ValueError(f"expected a consumer group name of letters, digits, '_', '.', '-', got {group!r}")
    if slot < 1:
        raise ValueError(f"expected a slot from 1, got {slot}")
    return data_dir / LOCK_FOLDER / f"{group}-{slot}.lock"


class ConsumerSlot:
    """A slot this process holds: the consumer name and the locked file (unlocked by :meth:`release`)."""

    def __init__(self, name: str, path: Path, fd: int) -> None:
        self.name = name
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlock the slot (closing the file drops the lock); a second call does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _lock_folder(data_dir: Path) -> Path:
    folder = data_dir / LOCK_FOLDER
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_mode & 0o777 != 0o700:
            folder.chmod(0o700)
    except OSError as exc:
        raise NoConsumerSlot(
            f"consumer name: expected a writable folder {folder} for the name locks, got {exc}; "
            "fix the data folder or set TELEWORK_WORKER_NAME"
        ) from exc
    return folder


def take_slot(data_dir: Path, group: str, hostname: str, max_slots: int = MAX_SLOTS) -> ConsumerSlot:
    """Lock the first free slot of ``group`` under ``data_dir``; its consumer name goes with it."""
    _lock_folder(data_dir)
    for slot in range(1, max_slots + 1):
        path = lock_path(data_dir, group, slot)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise NoConsumerSlot(
                f"consumer name: expected to open the lock file {path}, got {exc}; "
                "fix the data folder or set TELEWORK_WORKER_NAME"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except OSError:
            os.close(fd)
            raise
        name = consumer_name(hostname, group, slot)
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.write(fd, f"{name} pid {os.getpid()}\n".encode())
        return ConsumerSlot(name, path, fd)
    raise NoConsumerSlot(
        f"consumer name: expected a free slot for group {group!r} in {data_dir / LOCK_FOLDER}, "
        f"all {max_slots} are held; set TELEWORK_WORKER_NAME"
    )


def stale_consumers(consumers: Iterable[Mapping[str, Any]], me: str, stale_ms: float) -> list[str]:
    """The consumers (XINFO CONSUMERS replies) to delete: idle past ``stale_ms``, nothing pending, not ``me``.

    One with pending entries is left alone: XAUTOCLAIM takes its entries first, and a later
    pass deletes it once it holds none.
    """
    stale: list[str] = []
    for info in consumers:
        name = text_of(info.get("name", ""))
        if name == me:
            continue
        if int(info.get("pending", 0)) == 0 and int(info.get("idle", 0)) > stale_ms:
            stale.append(name)
    return sorted(stale)
