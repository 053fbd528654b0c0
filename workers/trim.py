"""What the trim pass may cut from a tenant's Redis streams, and when it must warn. Pure.

Nothing is trimmed that a consumer still needs. The gateway XADDs without a MAXLEN; a tenant's
event stream is trimmed only by the persistence workers' trim pass (:mod:`workers.trim_store`,
the consumer's periodic hook ``trim``, every ``trim_interval_s``), with ``XTRIM MINID`` at the
lower of

* the **trim point** (:func:`realtime.stream_positions.trim_point`): below it every consumer
  group of the stream has acknowledged every entry; none while one of the
  :data:`realtime.keys.REQUIRED_GROUPS` (``persist``, ``build``) does not exist yet, so with the
  consumers stopped the stream only grows (and the gateway pushes agents back with
  ``store_full`` once it holds ``stream_maxlen`` entries);
* the **age cut-off** ``now - stream_keep_s`` (by the Redis server's clock, entry ids are its
  milliseconds): consumed entries stay that long for replay and inspection.

The trim is approximate (``~``: whole stream nodes only, so a few entries below the id may stay
until the next pass), except when the stream's oldest entry is older than ``retention_days``:
then it is exact, so a quiet tenant's last node cannot keep events past their retention.

Above ``stream_warn_ratio`` of ``stream_maxlen`` entries the pass warns (at most once a
minute per stream and worker) with each group's pending count and how far behind it is.

Dead-letter streams are trimmed here too, exactly, by age (:func:`workers.retention.dead_letter_cutoff`),
with a warning (at most hourly) when one holds more than ``dead_letter_warn`` letters. They sit
with the trim pass rather than the retention job because the pass holds a Redis connection and
runs all the time, while ``telework retention`` is daily and must work with Redis down.

Several workers may run the pass at once: the positions only move forward, so a pass working
from an older reading trims less, never more, and ``XTRIM MINID`` of the same id is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from realtime import keys
from realtime.stream_positions import GroupPosition, done_below, format_id, parse_id, trim_point
from workers.retention import RetentionPolicy, data_cutoff, dead_letter_cutoff

if TYPE_CHECKING:
    from core.settings import ServerSettings

WARN_EVERY_S = 60.0  # a stream's high-water warning at most this often (per worker)
DEAD_LETTER_WARN_EVERY_S = 3600.0  # a dead-letter stream's size warning at most this often


KEEP_YIELDS_AT = 0.5  # share of the capacity above which consumed entries are not kept


@dataclass(frozen=True)
class TrimPolicy:
    """The trim pass's settings as values."""

    keep_s: float = 3600.0
    capacity: int = 1_000_000
    warn_ratio: float = 0.8
    dead_letter_warn: int = 1000
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    required: tuple[str, ...] = keys.REQUIRED_GROUPS

    def __post_init__(self) -> None:
        if self.keep_s < 0 or self.capacity < 1 or not 0 < self.warn_ratio <= 1 or self.dead_letter_warn < 1:
            raise ValueError(
                "trim policy: expected keep_s >= 0, capacity >= 1, 0 < warn_ratio <= 1, "
                f"dead_letter_warn >= 1, got {self.keep_s}, {self.capacity}, {self.warn_ratio}, "
                f"{self.dead_letter_warn}"
            )

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> TrimPolicy:
        return cls(
            keep_s=settings.stream_keep_s,
            capacity=settings.stream_maxlen,
            warn_ratio=settings.stream_warn_ratio,
            dead_letter_warn=settings.dead_letter_warn,
            retention=RetentionPolicy.from_settings(settings),
        )


@dataclass(frozen=True)
class StreamReading:
    """One tenant event stream as read by a pass: its length, oldest and newest ids, its groups."""

    stream: str
    length: int
    first_id: str | None  # None: empty
    last_id: str  # last generated id ("0-0" when none ever was)
    positions: tuple[GroupPosition, ...] = ()


@dataclass(frozen=True)
class GroupBacklog:
    """How far one consumer group trails its stream."""

    name: str
    pending: int  # delivered, not yet acknowledged
    behind_s: float  # age of its oldest entry not done (by the entry id's time)


@dataclass(frozen=True)
class HighWater:
    """A tenant stream filling up toward its capacity (its consumers are behind or stopped)."""

    stream: str
    length: int
    capacity: int
    groups: tuple[GroupBacklog, ...]
    missing: tuple[str, ...] = ()  # required groups that do not exist yet

    def text(self) -> str:
        share = 100 * self.length / self.capacity
        parts = [
            f"tenant stream {self.stream} holds {self.length} entries, {share:.0f}% of its capacity "
            f"{self.capacity} (TELEWORK_STREAM_MAXLEN); at capacity the gateway pushes agents back "
            "(store_full) until the consumers catch up"
        ]
        parts += [f"group {g.name}: {g.pending} pending, {g.behind_s:.1f} s behind" for g in self.groups]
        parts += [
            f"group {name} does not exist yet: nothing is trimmed until it does" for name in self.missing
        ]
        return "; ".join(parts)

    def extra(self) -> dict[str, object]:
        return {
            "stream": self.stream,
            "length": self.length,
            "capacity": self.capacity,
            **{f"{g.name}_pending": g.pending for g in self.groups},
            **{f"{g.name}_behind_s": round(g.behind_s, 1) for g in self.groups},
            "missing_groups": ",".join(self.missing),
        }


@dataclass(frozen=True)
class TrimDecision:
    """What to do with one tenant event stream: ``XTRIM MINID [~] minid`` (None: nothing), and warn."""

    minid: str | None
    approximate: bool = True
    high_water: HighWater | None = None


@dataclass(frozen=True)
class DeadLetterBacklog:
    """A dead-letter stream holding more letters than ``dead_letter_warn``."""

    stream: str
    length: int
    limit: int

    def text(self) -> str:
        return (
            f"dead-letter stream {self.stream} holds {self.length} letters, more than "
            f"TELEWORK_DEAD_LETTER_WARN={self.limit}: entries the workers could not store; read them "
            "with XRANGE, fix the cause; they are dropped after TELEWORK_DEAD_LETTER_KEEP_DAYS"
        )


@dataclass(frozen=True)
class TrimReport:
    """What one pass removed."""

    events: int = 0
    dead_letters: int = 0
    streams: int = 0
    problems: tuple[str, ...] = ()


def ms_of(moment: datetime) -> int:
    """Unix milliseconds of an aware time (stream entry ids count them)."""
    if moment.tzinfo is None:
        raise ValueError(f"expected an aware timestamp, got {moment.isoformat()}")
    return int(moment.astimezone(UTC).timestamp() * 1000)


def id_at(moment: datetime) -> str:
    """The smallest entry id at ``moment``: ``MINID`` of it drops the entries added before."""
    return format_id((max(ms_of(moment), 0), 0))


def lower(a: str, b: str) -> str:
    return a if parse_id(a) <= parse_id(b) else b


def behind_s(group: GroupPosition, first_id: str | None, last_id: str, now: datetime) -> float:
    """Age of the oldest entry the group is not done with (0: it is done with every entry)."""
    if first_id is None:
        return 0.0
    oldest = max(parse_id(done_below(group)), parse_id(first_id))
    if oldest > parse_id(last_id):
        return 0.0
    return max(ms_of(now) - oldest[0], 0) / 1000


def high_water(reading: StreamReading, now: datetime, policy: TrimPolicy) -> HighWater | None:
    """The warning when the stream holds more than ``warn_ratio`` of its capacity, else None."""
    if reading.length <= policy.warn_ratio * policy.capacity:
        return None
    names = {p.name for p in reading.positions}
    return HighWater(
        stream=reading.stream,
        length=reading.length,
        capacity=policy.capacity,
        groups=tuple(
            GroupBacklog(p.name, p.pending, behind_s(p, reading.first_id, reading.last_id, now))
            for p in sorted(reading.positions, key=lambda p: p.name)
        ),
        missing=tuple(name for name in policy.required if name not in names),
    )


def decide(reading: StreamReading, now: datetime, policy: TrimPolicy) -> TrimDecision:
    """``MINID`` = the lower of the trim point and ``now - keep_s``; None when that drops nothing.

    The keep window yields to the capacity: a stream holding more than ``KEEP_YIELDS_AT`` of it is
    trimmed to the trim point at once, so entries kept only for inspection never make the gateway
    refuse events (it pushes back when the stream reaches its capacity).
    """
    warning = high_water(reading, now, policy)
    point = trim_point(reading.positions, policy.required)
    if point is None or reading.first_id is None:
        return TrimDecision(None, high_water=warning)
    if reading.length > KEEP_YIELDS_AT * policy.capacity:
        minid = point
    else:
        minid = lower(point, id_at(now - timedelta(seconds=policy.keep_s)))
    if parse_id(minid) <= parse_id(reading.first_id):
        return TrimDecision(None, high_water=warning)
    too_old = parse_id(reading.first_id) < parse_id(id_at(data_cutoff(now, policy.retention)))
    return TrimDecision(minid, approximate=not too_old, high_water=warning)


def dead_letter_minid(now: datetime, policy: TrimPolicy) -> str:
    """``MINID`` (exact) of every tenant's dead-letter stream: letters older than their keep go."""
    return id_at(dead_letter_cutoff(now, policy.retention))


def dead_letter_backlog(stream: str, length: int, policy: TrimPolicy) -> DeadLetterBacklog | None:
    return (
        DeadLetterBacklog(stream, length, policy.dead_letter_warn)
        if length > policy.dead_letter_warn
        else None
    )


def warn_due(last: float | None, now: float, every_s: float) -> bool:
    """Whether a warning last given at ``last`` (monotonic seconds; None: never) may be given again."""
    return last is None or now - last >= every_s
