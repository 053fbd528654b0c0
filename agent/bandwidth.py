"""Bandwidth of one agent's session: measured, rolled up per minute, and paced.

* :class:`BandwidthMeter` counts the bytes of every WebSocket message sent and received
  (payload plus WebSocket framing; TCP/IP and TLS headers are not visible here and add a
  few percent) into 1-second buckets of wall-clock time. :meth:`BandwidthMeter.drain`
  returns the completed minutes as :class:`realtime.protocol.UsageMinute` values (bytes each
  way, and the peak of the 1 s windows in kbps); the session reports them upstream as a
  ``usage`` event every ``usage_report_s``.
* :class:`Pacer` is a token bucket (rate in kbps, burst = one chunk) that image uploads wait
  on; events and heartbeats are never delayed but draw on the same bucket, so images only use
  what is left. With burst B bytes and rate r bytes/s no 1 s window carries more than B + r
  bytes of uploads: the defaults (160 kbps, 8 KiB chunks) give at most 225 kbps.

The arithmetic is in pure functions (:func:`ws_overhead`, :func:`kbps`, :func:`roll_up`,
:func:`core.rate.take_tokens`, the one token bucket).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from pydantic import ValidationError

from core.rate import Bucket, take_tokens
from realtime.protocol import UsageMinute

Clock = Callable[[], float]


def ws_overhead(size: int, masked: bool) -> int:
    """Bytes of WebSocket framing around a ``size``-byte message (RFC 6455; agents mask their frames)."""
    if size < 0:
        raise ValueError(f"size: expected >= 0, got {size}")
    header = 2 if size < 126 else 4 if size < 65536 else 10
    return header + (4 if masked else 0)


def kbps(nbytes: int, seconds: float = 1.0) -> float:
    """Kilobits per second of ``nbytes`` over ``seconds``."""
    if seconds <= 0:
        raise ValueError(f"seconds: expected > 0, got {seconds}")
    return nbytes * 8 / 1000 / seconds


def roll_up(sent: Mapping[int, int], received: Mapping[int, int], before_minute: int) -> list[UsageMinute]:
    """Per-second byte counts (keyed by Unix second) -> one UsageMinute per minute before ``before_minute``.

    Minutes without traffic are left out; the result is sorted by minute. A minute the protocol
    cannot carry (a PC clock set to 1970, say) is left out too: the server would refuse it.
    """
    minutes = {s // 60 for s in (*sent, *received) if s // 60 < before_minute}
    out = []
    for minute in sorted(minutes):
        seconds = range(minute * 60, minute * 60 + 60)
        up = [sent.get(s, 0) for s in seconds]
        down = [received.get(s, 0) for s in seconds]
        try:
            usage = UsageMinute(
                start=datetime.fromtimestamp(minute * 60, UTC),
                sent=sum(up),
                received=sum(down),
                peak_sent_kbps=round(kbps(max(up)), 3),
                peak_received_kbps=round(kbps(max(down)), 3),
            )
        except ValidationError:
            continue
        out.append(usage)
    return out


class BandwidthMeter:
    """Bytes each way per wall-clock second; totals and the overall peak since start."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._sent: dict[int, int] = {}
        self._received: dict[int, int] = {}
        self.total_sent = 0
        self.total_received = 0
        self.peak_sent_bytes = 0  # highest bytes sent in one 1 s window since start

    def sent(self, message_bytes: int) -> None:
        """An agent -> gateway message of ``message_bytes`` (framing added here)."""
        n = message_bytes + ws_overhead(message_bytes, masked=True)
        second = int(self.clock())
        self._sent[second] = self._sent.get(second, 0) + n
        self.total_sent += n
        self.peak_sent_bytes = max(self.peak_sent_bytes, self._sent[second])

    def received(self, message_bytes: int) -> None:
        n = message_bytes + ws_overhead(message_bytes, masked=False)
        second = int(self.clock())
        self._received[second] = self._received.get(second, 0) + n
        self.total_received += n

    @property
    def peak_sent_kbps(self) -> float:
        return kbps(self.peak_sent_bytes)

    def reset_peak(self) -> None:
        """Start measuring the peak afresh (e.g. per phase of a benchmark)."""
        self.peak_sent_bytes = 0

    def drain(self) -> list[UsageMinute]:
        """The completed minutes not drained yet (the current minute stays until it ends)."""
        current = int(self.clock()) // 60
        minutes = roll_up(self._sent, self._received, current)
        self._sent = {s: n for s, n in self._sent.items() if s // 60 >= current}
        self._received = {s: n for s, n in self._received.items() if s // 60 >= current}
        return minutes


class Pacer:
    """Token bucket shared by a session's traffic; ``await pace(n)`` before an image chunk."""

    def __init__(self, rate_kbps: float, burst_bytes: int, clock: Clock = time.monotonic) -> None:
        if rate_kbps <= 0:
            raise ValueError(f"rate_kbps: expected > 0, got {rate_kbps}")
        if burst_bytes < 1:
            raise ValueError(f"burst_bytes: expected >= 1, got {burst_bytes}")
        self.rate = rate_kbps * 1000 / 8  # bytes per second
        self.burst = float(burst_bytes)
        self.clock = clock
        self._bucket = Bucket(float(burst_bytes), clock())

    def charge(self, nbytes: int) -> None:
        """Traffic that was not paced (events, heartbeats) uses up tokens too."""
        b, now = self._bucket, self.clock()
        tokens = min(self.burst, b.tokens + (now - b.at) * self.rate) if now > b.at else b.tokens
        self._bucket = Bucket(tokens - nbytes, max(now, b.at))

    async def pace(self, nbytes: int) -> None:
        self._bucket, wait = take_tokens(self._bucket, nbytes, self.clock(), self.rate, self.burst)
        if wait > 0:
            await asyncio.sleep(wait)  # pacing is waiting for time to pass, not for a condition
