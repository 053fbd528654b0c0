"""The agent's offline spool: one SQLite file ``spool-v1.sqlite3`` in the agent's data folder.

* **Events**: every event is written (``synchronous=FULL``, WAL) before it is queued for
  sending, and deleted only when the server says the database holds it (a cumulative ``stored``
  watermark covers its seq; :meth:`Spool.ack` is called with it). The next seq and that
  watermark (meta ``acked``, the name kept for existing files) are stored with it, so after a
  crash or a restart numbering continues and the events not yet stored are flushed again in
  their original order.
* **Images**: a ring of at most ``capacity`` evidence images (camera and screen together).
  When it is full the oldest *periodic* image is overwritten first; incident evidence only once
  no periodic image is left (then the oldest incident image). Every overwritten image is
  counted; the count is reported upstream as a ``gap`` event, and it is reduced only when that
  event is stored. An image leaves the ring otherwise only when the server confirmed storing it.
  Face images enrolled at the PC (purpose ``enrollment``, :mod:`agent.face_upload`) share the
  ring: evicted like incident evidence, uploaded before everything else, and also dropped when
  the server's face gate refuses them (:mod:`agent.uploader`).

The format version is in the file name: a future incompatible layout gets a new file.
The choices (which images to evict, in which order to upload) are pure functions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from agent.config import AgentConfig, agent_data_dir
from agent.outbox import Pending

log = logging.getLogger(__name__)

SPOOL_FORMAT = 1
Kind = Literal["camera", "screen"]
Purpose = Literal["periodic", "incident", "enrollment"]  # enrollment: a face image for the server
KINDS: tuple[str, ...] = ("camera", "screen")
PURPOSES: tuple[str, ...] = ("periodic", "incident", "enrollment")
UPLOAD_RANK = {"enrollment": 0, "incident": 1, "periodic": 2}  # which purpose is sent first

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    ring INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    purpose TEXT NOT NULL,
    taken_at TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
"""
META_DEFAULTS = {"next_seq": 1, "acked": 0, "overwritten": 0, "gap_seq": 0, "gap_count": 0}


def spool_path(data_dir: Path) -> Path:
    return data_dir / f"spool-v{SPOOL_FORMAT}.sqlite3"


def purpose_of(reason: str) -> Purpose:
    """The ring class of an evidence capture from its reason (``incident_start:peeking``, ``periodic``)."""
    return "incident" if reason.startswith("incident") else "periodic"


# ---------------------------------------------------------------------- pure


@dataclass(frozen=True)
class RingEntry:
    ring: int  # insertion order: lower is older
    sha256: str
    purpose: Purpose


def choose_evictions(entries: Sequence[RingEntry], capacity: int, incoming: int = 1) -> list[str]:
    """The images to overwrite so that ``incoming`` new ones fit in ``capacity``.

    Periodic images go first, oldest first; incident images only when no periodic one is left,
    again oldest first.
    """
    if capacity < 1:
        raise ValueError(f"capacity: expected >= 1, got {capacity}")
    excess = len(entries) + incoming - capacity
    if excess <= 0:
        return []
    order = sorted(entries, key=lambda e: (e.purpose != "periodic", e.ring))
    return [e.sha256 for e in order[:excess]]


def upload_order(entries: Sequence[RingEntry], skip: frozenset[str] = frozenset()) -> list[str]:
    """Images to upload: enrollment images first (the user waits for them), then incident evidence,
    then periodic, each oldest first; ``skip`` left out."""
    order = sorted(entries, key=lambda e: (UPLOAD_RANK[e.purpose], e.ring))
    return [e.sha256 for e in order if e.sha256 not in skip]


def settle_gap(overwritten: int, gap_seq: int, gap_count: int, acked: int) -> tuple[int, int, int]:
    """State after an ack up to ``acked``; an acked gap event settles its count."""
    if gap_seq and acked >= gap_seq:
        return max(0, overwritten - gap_count), 0, 0
    return overwritten, gap_seq, gap_count


# ------------------------------------------------------------------------ I/O


@dataclass(frozen=True)
class SpooledImage:
    ring: int
    sha256: str
    kind: Kind
    purpose: Purpose
    taken_at: datetime
    size: int

    @property
    def entry(self) -> RingEntry:
        return RingEntry(self.ring, self.sha256, self.purpose)


@dataclass(frozen=True)
class ImageAdded:
    sha256: str
    evicted: tuple[str, ...]  # sha256 of the images overwritten to make room
    duplicate: bool = False  # the same image was already in the ring


class SpoolError(RuntimeError):
    """The spool file cannot be used (not a spool, or from an unknown format)."""


class Spool:
    """One agent's spool file. All methods are synchronous and commit before returning."""

    def __init__(self, path: Path | str, capacity: int = 500) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: expected >= 1, got {capacity}")
        self.path = Path(path)
        self.capacity = capacity
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path.parent.chmod(0o700)  # the agent's folder: events, images, tokens: the user's only
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))  # SQLite makes -wal, -shm alike
        self.path.chmod(0o600)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            with self._tx():
                for key, value in META_DEFAULTS.items():
                    self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
        except sqlite3.DatabaseError as exc:
            expected = f"expected a telework spool (format {SPOOL_FORMAT})"
            raise SpoolError(f"{self.path}: {expected}, {exc}") from exc
        self._meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        log.info(
            "spool open",
            extra={
                "path": str(self.path),
                "next_seq": self.next_seq,
                "acked": self.acked,
                "pending_events": self.pending_count(),
                "images": self.image_count(),
                "overwritten": self.overwritten,
            },
        )

    @classmethod
    def in_dir(cls, data_dir: Path, capacity: int = 500) -> Spool:
        return cls(spool_path(data_dir), capacity)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One IMMEDIATE transaction: committed, or rolled back (and the cached meta reloaded) on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            raise
        self._db.execute("COMMIT")

    def _set(self, **values: int) -> None:
        for key, value in values.items():
            self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
        self._meta.update(values)

    # ----------------------------------------------------------------- events

    @property
    def next_seq(self) -> int:
        return int(self._meta["next_seq"])

    @property
    def acked(self) -> int:
        return int(self._meta["acked"])

    @property
    def overwritten(self) -> int:
        """Images overwritten and not yet covered by an acked gap event."""
        return int(self._meta["overwritten"])

    @property
    def gap_in_flight(self) -> tuple[int, int] | None:
        """(seq, count) of the gap event queued and not yet acked, if any."""
        seq = int(self._meta["gap_seq"])
        return (seq, int(self._meta["gap_count"])) if seq else None

    def add_event(self, seq: int, event_id: str, text: str, gap_count: int = 0) -> None:
        """Keep an event (durably) and move ``next_seq`` past it; ``gap_count``: it is a gap event."""
        if seq < self.next_seq:
            raise ValueError(f"seq: expected >= {self.next_seq} (next unused), got {seq}")
        with self._tx():
            self._db.execute("INSERT INTO events VALUES (?, ?, ?)", (seq, event_id, text))
            self._set(next_seq=seq + 1)
            if gap_count:
                self._set(gap_seq=seq, gap_count=gap_count)

    def reserve(self, next_seq: int) -> None:
        """Continue numbering at ``next_seq`` (after the server's last seq for a fresh spool)."""
        if next_seq > self.next_seq:
            with self._tx():
                self._set(next_seq=next_seq, acked=max(self.acked, next_seq - 1))

    def pending_events(self) -> list[Pending]:
        """Every unacked event, in seq order."""
        rows = self._db.execute("SELECT seq, text FROM events ORDER BY seq").fetchall()
        return [Pending(int(seq), str(text)) for seq, text in rows]

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def ack(self, seq: int) -> int:
        """The database holds every event up to ``seq``: forget them (and settle a stored gap event);
        returns how many went."""
        acked = min(seq, self.next_seq - 1)
        if acked <= self.acked:
            return 0
        with self._tx():
            dropped = self._db.execute("DELETE FROM events WHERE seq <= ?", (acked,)).rowcount
            overwritten, gap_seq, gap_count = settle_gap(
                self.overwritten, int(self._meta["gap_seq"]), int(self._meta["gap_count"]), acked
            )
            self._set(acked=acked, overwritten=overwritten, gap_seq=gap_seq, gap_count=gap_count)
        return int(dropped)

    # ----------------------------------------------------------------- images

    def add_image(
        self, data: bytes, kind: Kind, purpose: Purpose, taken_at: datetime | None = None
    ) -> ImageAdded:
        """Keep an evidence image in the ring, overwriting others if it is full."""
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        if purpose not in PURPOSES:
            raise ValueError(f"purpose: expected one of {', '.join(PURPOSES)}, got {purpose!r}")
        if not data:
            raise ValueError("data: expected image bytes, got 0 bytes")
        when = taken_at or datetime.now(UTC)
        if when.tzinfo is None:
            raise ValueError(f"taken_at: expected an aware timestamp, got {when.isoformat()}")
        sha = hashlib.sha256(data).hexdigest()
        with self._tx():
            if self._db.execute("SELECT 1 FROM images WHERE sha256 = ?", (sha,)).fetchone():
                return ImageAdded(sha, (), duplicate=True)
            full = self.image_count() >= self.capacity
            evicted = choose_evictions(self.ring_entries(), self.capacity) if full else []
            self._db.executemany("DELETE FROM images WHERE sha256 = ?", [(s,) for s in evicted])
            self._db.execute(
                "INSERT INTO images (sha256, kind, purpose, taken_at, size, data) VALUES (?, ?, ?, ?, ?, ?)",
                (sha, kind, purpose, when.astimezone(UTC).isoformat(), len(data), data),
            )
            if evicted:
                self._set(overwritten=self.overwritten + len(evicted))
        if evicted:
            log.warning(
                "image ring full: images overwritten",
                extra={"evicted": len(evicted), "overwritten": self.overwritten, "capacity": self.capacity},
            )
        return ImageAdded(sha, tuple(evicted))

    def ring_entries(self) -> list[RingEntry]:
        """What eviction and upload order need: ring position, sha256 and purpose, oldest first."""
        rows = self._db.execute("SELECT ring, sha256, purpose FROM images ORDER BY ring").fetchall()
        return [RingEntry(int(r), str(s), p) for r, s, p in rows]

    def images(self) -> list[SpooledImage]:
        """The images in the ring (metadata only), oldest first."""
        rows = self._db.execute(
            "SELECT ring, sha256, kind, purpose, taken_at, size FROM images ORDER BY ring"
        ).fetchall()
        return [
            SpooledImage(int(r), str(s), k, p, datetime.fromisoformat(t), int(n)) for r, s, k, p, t, n in rows
        ]

    def image(self, sha256: str) -> tuple[SpooledImage, bytes] | None:
        row = self._db.execute(
            "SELECT ring, sha256, kind, purpose, taken_at, size, data FROM images WHERE sha256 = ?", (sha256,)
        ).fetchone()
        if row is None:
            return None
        r, s, k, p, t, n, data = row
        return SpooledImage(int(r), str(s), k, p, datetime.fromisoformat(t), int(n)), bytes(data)

    def image_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM images").fetchone()[0])

    def remove_image(self, sha256: str) -> bool:
        """Delete an image the server confirmed (not counted as overwritten); False if already gone."""
        with self._tx():
            gone = self._db.execute("DELETE FROM images WHERE sha256 = ?", (sha256,)).rowcount
        return bool(gone)


def open_spool(config: AgentConfig) -> Spool:
    """The spool of ``telework agent``: ``spool-v1.sqlite3`` in TELEWORK_AGENT_DATA_DIR."""
    return Spool.in_dir(agent_data_dir(config), config.agent_spool_images)
