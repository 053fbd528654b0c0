"""The offline spool: pure eviction / ordering / batching, and SQLite persistence across reopen and crash."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.bandwidth import BandwidthMeter, kbps, roll_up, ws_overhead
from agent.outbox import Outbox, Pending, take_batch
from agent.spool import (
    RingEntry,
    Spool,
    SpoolError,
    choose_evictions,
    purpose_of,
    settle_gap,
    spool_path,
    upload_order,
)
from agent.uploader import chunk_offsets
from core.rate import Bucket, take_tokens
from tests.conftest import ROOT

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def ring(*purposes: str) -> list[RingEntry]:
    return [RingEntry(i + 1, f"img{i + 1}", p) for i, p in enumerate(purposes)]  # type: ignore[arg-type]


def image(n: int) -> bytes:
    return f"jpeg-{n}".encode() * 50


# ------------------------------------------------------------------------- pure


def test_no_eviction_while_the_ring_has_room() -> None:
    """Below capacity nothing is overwritten."""
    assert choose_evictions(ring("periodic", "incident"), capacity=3) == []


def test_periodic_images_are_evicted_first_oldest_first() -> None:
    """A full ring drops the oldest periodic image even when an incident image is older."""
    entries = ring("incident", "periodic", "incident", "periodic")
    assert choose_evictions(entries, capacity=4) == ["img2"]
    assert choose_evictions(entries, capacity=4, incoming=2) == ["img2", "img4"]


def test_incident_images_go_only_when_no_periodic_is_left() -> None:
    """After every periodic image, the oldest incident images go."""
    entries = ring("incident", "periodic", "incident", "incident")
    assert choose_evictions(entries, capacity=4, incoming=3) == ["img2", "img1", "img3"]
    assert choose_evictions(ring("incident", "incident"), capacity=2) == ["img1"]


def test_eviction_rejects_a_zero_capacity() -> None:
    """Capacity must be at least one image."""
    with pytest.raises(ValueError, match=r"^capacity: expected >= 1, got 0$"):
        choose_evictions([], capacity=0)


def test_upload_order_is_incidents_first_then_periodic_oldest_first() -> None:
    """Incident evidence is uploaded before periodic evidence; skipped images are left out."""
    entries = ring("periodic", "incident", "periodic", "incident")
    assert upload_order(entries) == ["img2", "img4", "img1", "img3"]
    assert upload_order(entries, frozenset({"img2", "img3"})) == ["img4", "img1"]


def test_gap_settles_only_when_the_gap_event_is_acked() -> None:
    """The overwritten count drops by the reported count once the gap event's seq is acked."""
    assert settle_gap(7, gap_seq=10, gap_count=5, acked=9) == (7, 10, 5)
    assert settle_gap(7, gap_seq=10, gap_count=5, acked=10) == (2, 0, 0)
    assert settle_gap(3, gap_seq=0, gap_count=0, acked=99) == (3, 0, 0)


def test_purpose_from_the_evidence_reason() -> None:
    """incident_* reasons are incident evidence; anything else is periodic."""
    assert purpose_of("incident_start:peeking") == "incident"
    assert purpose_of("periodic") == "periodic"


def test_flush_batches_keep_order_and_limits() -> None:
    """take_batch cuts in order by count and frame size, always at least one event."""
    items = [Pending(i, "x" * 100) for i in range(1, 8)]
    assert [p.seq for p in take_batch(items, 0, 3, 10_000)] == [1, 2, 3]
    assert [p.seq for p in take_batch(items, 5, 3, 10_000)] == [6, 7]
    assert [p.seq for p in take_batch(items, 2, 10, 250)] == [3, 4]
    assert [p.seq for p in take_batch(items, 0, 10, 10)] == [1]


def test_restored_outbox_resends_the_spooled_events_in_order() -> None:
    """An outbox rebuilt from a spool continues its numbering and sends the old events first."""
    box = Outbox.restore(next_seq=8, stored=4, items=[Pending(5, "a"), Pending(6, "b"), Pending(7, "c")])
    assert (box.acked, box.take_seq()) == (4, 8)
    box.push(8, "d")
    assert [p.text for p in box.next_batch(10, 10_000, 100)] == ["a", "b", "c", "d"]


def test_chunk_offsets_cover_the_image() -> None:
    """An image is cut into consecutive chunks with a short last one."""
    assert chunk_offsets(20_000, 8192) == [(0, 8192), (8192, 16384), (16384, 20_000)]
    assert chunk_offsets(5, 8192) == [(0, 5)]


def test_bandwidth_arithmetic() -> None:
    """WebSocket framing, kbps and the token bucket's wait follow RFC 6455 and the rate."""
    assert [ws_overhead(n, True) for n in (10, 200, 70_000)] == [6, 8, 14]
    assert ws_overhead(10, False) == 2
    assert kbps(32_000) == 256.0
    bucket, wait = take_tokens(Bucket(8192, 0.0), 8192, 0.0, rate=20_000, burst=8192)
    assert (bucket, wait) == (Bucket(0.0, 0.0), 0.0)
    bucket, wait = take_tokens(bucket, 8000, 0.1, rate=20_000, burst=8192)
    assert (round(wait, 6), bucket.tokens) == (0.3, 0.0)  # 2,000 refilled by 0.1 s, 6,000 more take 0.3 s
    _, wait = take_tokens(bucket, 1000, 0.2, rate=20_000, burst=8192)  # the earlier taker waits until 0.4
    assert round(wait, 6) == 0.25


def test_meter_rolls_up_completed_minutes() -> None:
    """Bytes per second become per-minute totals with the peak 1 s window in kbps."""
    base = 1_800_000_000  # a minute boundary in 2027 (usage minutes must lie within 2000-9000)
    now = [base + 120.2]
    meter = BandwidthMeter(clock=lambda: now[0])
    meter.sent(992)  # + 8 bytes of framing (2 + 2-byte length + 4 mask)
    meter.sent(992)
    now[0] = base + 121.5
    meter.received(98)  # + 2
    now[0] = base + 185.0
    meter.sent(94)
    minutes = meter.drain()
    assert [(m.start, m.sent, m.received, m.peak_sent_kbps) for m in minutes] == [
        (datetime.fromtimestamp(base + 120, UTC), 2000, 100, 16.0)
    ]
    assert meter.drain() == []
    assert roll_up({200: 10}, {}, before_minute=3) == []
    assert roll_up({200: 10}, {}, before_minute=4) == []  # 1970: a minute the protocol cannot carry
    assert (meter.total_sent, meter.total_received, meter.peak_sent_kbps) == (2100, 100, 16.0)


# -------------------------------------------------------------------- SQLite


def test_spool_file_name_carries_the_format_version(tmp_path: Path) -> None:
    """The spool lives in <data dir>/spool-v1.sqlite3."""
    spool = Spool.in_dir(tmp_path)
    assert spool.path == spool_path(tmp_path) == tmp_path / "spool-v1.sqlite3"
    spool.close()


def test_events_persist_until_acked_across_reopen(tmp_path: Path) -> None:
    """Events and seq numbering survive a reopen; an ack removes only what it covers."""
    path = tmp_path / "spool-v1.sqlite3"
    first = Spool(path)
    for seq in (1, 2, 3):
        first.add_event(seq, f"id{seq}", f"text{seq}")
    assert first.ack(2) == 2
    second = Spool(path)  # opened while the first connection is still open: a crash, no close
    assert (second.next_seq, second.acked) == (4, 2)
    assert second.pending_events() == [Pending(3, "text3")]
    with pytest.raises(ValueError, match=r"^seq: expected >= 4 \(next unused\), got 3$"):
        second.add_event(3, "again", "text")
    first.close()
    second.close()


def test_spool_survives_a_killed_process(tmp_path: Path) -> None:
    """A process killed right after add_event (no close, no cleanup) lost nothing."""
    script = (
        "import os, sys\n"
        "from agent.spool import Spool\n"
        "s = Spool(sys.argv[1], capacity=3)\n"
        "for i in range(1, 51):\n"
        "    s.add_event(i, f'id{i}', f'event{i}')\n"
        "s.add_image(b'periodic-image', 'camera', 'periodic')\n"
        "s.ack(10)\n"
        "os._exit(9)\n"
    )
    path = tmp_path / "spool-v1.sqlite3"
    done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, timeout=60)
    assert done.returncode == 9
    spool = Spool(path, capacity=3)
    assert (spool.next_seq, spool.acked) == (51, 10)
    assert [p.seq for p in spool.pending_events()] == list(range(11, 51))
    assert [i.sha256 for i in spool.images()] == [hashlib.sha256(b"periodic-image").hexdigest()]
    spool.close()


def test_ring_keeps_capacity_and_counts_overwrites_persistently(tmp_path: Path) -> None:
    """600 images into a 500 ring: 500 kept, periodic ones dropped first, 100 counted, across reopen."""
    path = tmp_path / "spool-v1.sqlite3"
    spool = Spool(path, capacity=500)
    incident = {i for i in range(600) if i % 10 == 0}  # 60 incident images among 540 periodic
    for i in range(600):
        spool.add_image(
            image(i),
            "camera" if i % 2 else "screen",
            "incident" if i in incident else "periodic",
            T0 + timedelta(seconds=i),
        )
    reopened = Spool(path, capacity=500)
    kept = reopened.images()
    assert (len(kept), reopened.overwritten) == (500, 100)
    periodic_kept = sorted(
        int(i.taken_at.timestamp() - T0.timestamp()) for i in kept if i.purpose == "periodic"
    )
    assert sum(1 for i in kept if i.purpose == "incident") == 60
    assert periodic_kept == [i for i in range(600) if i not in incident][100:]  # the 100 oldest went
    assert spool.add_image(image(599), "camera", "periodic").duplicate is True
    assert reopened.overwritten == 100
    spool.close()
    reopened.close()


def test_gap_count_resets_only_after_the_gap_event_is_acked(tmp_path: Path) -> None:
    """The gap event records its count; later overwrites stay counted after its ack."""
    spool = Spool(tmp_path / "spool-v1.sqlite3", capacity=1)
    spool.add_image(image(1), "camera", "periodic")
    spool.add_image(image(2), "camera", "periodic")
    spool.add_event(1, "gap-id", "{gap}", gap_count=spool.overwritten)
    assert spool.gap_in_flight == (1, 1)
    spool.add_image(image(3), "camera", "periodic")  # overwritten after the gap event was queued
    assert spool.overwritten == 2
    reopened = Spool(tmp_path / "spool-v1.sqlite3", capacity=1)
    reopened.ack(1)
    assert (reopened.overwritten, reopened.gap_in_flight) == (1, None)
    spool.close()
    reopened.close()


def test_images_leave_only_by_confirmation_or_overwrite(tmp_path: Path) -> None:
    """remove_image deletes one image (not counted as overwritten); bad input is refused clearly."""
    spool = Spool(tmp_path / "spool-v1.sqlite3")
    added = spool.add_image(image(1), "screen", "incident", T0)
    found = spool.image(added.sha256)
    assert found is not None and found[1] == image(1) and found[0].taken_at == T0
    assert (spool.remove_image(added.sha256), spool.remove_image(added.sha256)) == (True, False)
    assert (spool.image_count(), spool.overwritten) == (0, 0)
    with pytest.raises(ValueError, match=r"^kind: expected one of camera, screen, got 'webcam'$"):
        spool.add_image(image(1), "webcam", "periodic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^taken_at: expected an aware timestamp, got 2026-01-01T00:00:00$"):
        spool.add_image(image(1), "camera", "periodic", datetime(2026, 1, 1))
    spool.close()


def test_a_file_that_is_not_a_spool_is_refused(tmp_path: Path) -> None:
    """Opening a non-SQLite file says what was expected."""
    path = tmp_path / "spool-v1.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(SpoolError, match=r"expected a telework spool \(format 1\)"):
        Spool(path)


def test_the_spool_and_its_folder_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """A spool made under umask 022: its folder 0700, the database and its -wal and -shm files 0600."""
    old = os.umask(0o022)
    try:
        spool = Spool.in_dir(tmp_path / "agent")
        spool.add_event(1, "01a231c5-19a5-7944-9917-1e837569e543", '{"seq":1}')
        files = sorted((tmp_path / "agent").iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
        spool.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "agent").stat().st_mode) == 0o700
    assert modes and set(modes.values()) == {0o600}, modes
