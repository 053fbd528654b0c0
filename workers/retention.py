"""Retention rules as values (pure): the cut-offs and what a run removed.

Each tenant's data is due after its own period (:func:`cutoffs`: the tenant's ``tenant_policy``
period within the service's bounds, else ``retention_days``); :class:`Holds` names the tenants
and users under legal hold, whose data no pass deletes.

The database is cleaned by the retention job (:mod:`workers.retention_store`). What Redis keeps
is cleaned by the persistence workers' trim pass (:mod:`workers.trim`), which applies
:func:`dead_letter_cutoff` from here to the dead-letter streams: it holds a Redis connection
and runs every few seconds, while the retention job runs daily and must work without Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import ServerSettings

# Evidence taken up to this long before an incident that is kept stays with it (clock skew, merges).
EVIDENCE_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class RetentionPolicy:
    retention_days: int = 90
    terminated_erase_days: int = 30
    batch: int = 1000
    dead_letter_keep_days: int = 30
    min_days: int = 1  # the bounds of a tenant's own retention period
    max_days: int = 36_500

    def __post_init__(self) -> None:
        if (
            self.retention_days < 1
            or self.terminated_erase_days < 0
            or self.batch < 1
            or self.dead_letter_keep_days < 1
        ):
            raise ValueError(
                "retention policy: expected retention_days >= 1, terminated_erase_days >= 0, batch >= 1, "
                f"dead_letter_keep_days >= 1, got {self.retention_days}, {self.terminated_erase_days}, "
                f"{self.batch}, {self.dead_letter_keep_days}"
            )
        if not 1 <= self.min_days <= self.max_days:
            raise ValueError(
                "retention policy: expected 1 <= min_days <= max_days, "
                f"got {self.min_days} and {self.max_days}"
            )

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> RetentionPolicy:
        return cls(
            settings.retention_days,
            settings.terminated_erase_days,
            settings.retention_batch,
            settings.dead_letter_keep_days,
            settings.retention_min_days,
            settings.retention_max_days,
        )


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"expected an aware timestamp, got {moment.isoformat()}")
    return moment.astimezone(UTC)


def data_cutoff(now: datetime, policy: RetentionPolicy) -> datetime:
    """Events, intervals, incidents and evidence strictly older than this are due."""
    return utc(now) - timedelta(days=policy.retention_days)


def dead_letter_cutoff(now: datetime, policy: RetentionPolicy) -> datetime:
    """Dead letters (each carries the failed entry's data) written before this are due: kept
    ``dead_letter_keep_days``, never longer than ``retention_days``."""
    return utc(now) - timedelta(days=min(policy.dead_letter_keep_days, policy.retention_days))


def face_erase_cutoff(now: datetime, policy: RetentionPolicy) -> datetime:
    """Tenants terminated at or before this have their face data erased."""
    return utc(now) - timedelta(days=policy.terminated_erase_days)


def face_erase_due(terminated_at: datetime | None, now: datetime, policy: RetentionPolicy) -> bool:
    return terminated_at is not None and utc(terminated_at) <= face_erase_cutoff(now, policy)


def tenant_days(stored: int | None, default: int, low: int, high: int) -> int:
    """Pure: the retention period a tenant gets: its own (``stored``) or the service's ``default``,
    kept within the service's bounds ``low``..``high`` (bounds tightened since it was set)."""
    return max(low, min(high, default if stored is None else stored))


def check_tenant_days(days: int, low: int, high: int) -> int:
    """Pure: ``days`` when it is within the bounds, else ValueError saying what is expected."""
    if not low <= days <= high:
        raise ValueError(f"retention_days: expected a whole number of days from {low} to {high}, got {days}")
    return days


@dataclass(frozen=True)
class Holds:
    """What no retention pass deletes: tenants under legal hold, and held users with their agents."""

    tenants: frozenset[str] = frozenset()
    users: frozenset[int] = frozenset()
    agents: frozenset[str] = frozenset()  # the agents of held users (events only name an agent)


@dataclass(frozen=True)
class Cutoffs:
    """Per tenant, the moment before which its data is due; ``default`` for tenants not listed."""

    default: datetime
    tenants: Mapping[str, datetime] = field(default_factory=dict)

    def latest(self) -> datetime:
        """The latest cut-off of all (what bounds "old" for every tenant)."""
        return max([self.default, *self.tenants.values()])


def cutoffs(now: datetime, policy: RetentionPolicy, periods: Mapping[str, int | None]) -> Cutoffs:
    """Pure: each tenant with its own period (``periods``) gets its cut-off, within the policy's
    bounds; the others the service's ``retention_days``."""
    default = policy.retention_days
    low, high = policy.min_days, policy.max_days
    own = {t: tenant_days(d, default, low, high) for t, d in periods.items() if d is not None}
    base = utc(now)
    return Cutoffs(
        default=base - timedelta(days=default),
        tenants={t: base - timedelta(days=d) for t, d in sorted(own.items()) if d != default},
    )


@dataclass(frozen=True)
class RetentionReport:
    """What one run removed (and kept under legal hold)."""

    cutoff: datetime
    events: int = 0
    intervals: int = 0
    incidents: int = 0
    evidence: int = 0
    held_incidents: int = 0  # due by age but kept: under legal hold
    face_templates: int = 0
    face_images: int = 0  # registered face images erased with the templates
    erased_tenants: tuple[str, ...] = ()
    stopped: bool = False  # the run was asked to stop before it finished
    problems: tuple[str, ...] = field(default=())

    @property
    def removed_any(self) -> bool:
        """Whether the run removed anything (what an audit entry is written for)."""
        counts = (self.events, self.intervals, self.incidents, self.evidence)
        return any(counts) or bool(self.face_templates or self.face_images)

    def add(self, **counts: int) -> RetentionReport:
        return replace(self, **{k: getattr(self, k) + v for k, v in counts.items()})

    def summary(self) -> dict[str, object]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "events": self.events,
            "intervals": self.intervals,
            "incidents": self.incidents,
            "evidence": self.evidence,
            "held_incidents": self.held_incidents,
            "face_templates": self.face_templates,
            "face_images": self.face_images,
            "erased_tenants": list(self.erased_tenants),
            "stopped": self.stopped,
            "problems": len(self.problems),
        }
