"""Incident events -> incidents of one agent. Pure: values in, values out.

Rules (documented in the README's data model section):

* Only ``incident`` events count (the agent's IncidentEvent start / end, with its
  evidence and decision trace); ``state`` events of the same names are the live
  presence and are not counted twice.
* An episode of a kind runs from its ``start`` to the next ``end`` of that kind;
  a ``start`` while one is open adds its evidence to it; an ``end`` with no open
  episode is kept as a zero-length episode (its evidence is not lost).
* Episodes of one kind whose gap (next start - previous end) is at most
  ``merge_window_s`` merge into one incident: its evidence is the union (in
  order, each sha256 once), its trace lists every episode with its traces.
* ``close_at`` (the builder passes the agent's last event when it went silent)
  closes the episodes still open then.

:func:`window_start` and :func:`plan` let the builder rebuild only the incidents a
batch of new (possibly late) events can touch, keeping incident ids (and the
review people wrote on them) stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from workers.intervals import Ev, ordered, seconds_before

MAX_TRACE_EPISODES = 50


@dataclass(frozen=True)
class Episode:
    kind: str
    started_at: datetime
    ended_at: datetime | None
    evidence: tuple[str, ...]
    event_ids: tuple[str, ...]
    traces: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Draft:
    """One incident as built from the events (no review fields: those belong to people)."""

    kind: str
    started_at: datetime
    ended_at: datetime | None
    evidence: tuple[str, ...]
    event_ids: tuple[str, ...]
    trace: dict[str, Any] = field(default_factory=dict)


def _union(*parts: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for part in parts for item in part))


def _step(event: Ev) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "phase": event.payload.get("phase"),
        "ts": event.ts.isoformat(),
        "trace": event.payload.get("trace"),
    }


def episodes(events: Iterable[Ev], close_at: datetime | None = None) -> list[Episode]:
    """The episodes of every kind in the agent's events, sorted by start."""
    done: list[Episode] = []
    open_: dict[str, Episode] = {}
    for event in ordered(events):
        if event.type != "incident":
            continue
        kind = str(event.payload.get("kind"))
        evidence = tuple(event.payload.get("evidence") or ())
        current = open_.get(kind)
        if event.payload.get("phase") == "start":
            if current is None:
                open_[kind] = Episode(kind, event.ts, None, _union(evidence), (event.id,), (_step(event),))
            else:
                open_[kind] = replace(
                    current,
                    evidence=_union(current.evidence, evidence),
                    event_ids=(*current.event_ids, event.id),
                    traces=(*current.traces, _step(event)),
                )
        elif current is None:
            done.append(Episode(kind, event.ts, event.ts, _union(evidence), (event.id,), (_step(event),)))
        else:
            del open_[kind]
            done.append(
                replace(
                    current,
                    ended_at=event.ts,
                    evidence=_union(current.evidence, evidence),
                    event_ids=(*current.event_ids, event.id),
                    traces=(*current.traces, _step(event)),
                )
            )
    for episode in open_.values():
        closed = close_at is not None and close_at >= episode.started_at
        done.append(replace(episode, ended_at=close_at) if closed else episode)
    return sorted(done, key=lambda e: (e.started_at, e.kind))


def merge(found: Sequence[Episode], merge_window_s: float) -> list[Draft]:
    """Episodes of one kind within ``merge_window_s`` of each other become one incident."""
    try:
        window = timedelta(seconds=merge_window_s)
    except OverflowError:
        window = timedelta.max
    groups: dict[str, list[list[Episode]]] = {}
    for episode in sorted(found, key=lambda e: (e.started_at, e.kind)):
        runs = groups.setdefault(episode.kind, [])
        if runs:
            tail = runs[-1][-1]
            if tail.ended_at is None or episode.started_at - tail.ended_at <= window:
                runs[-1].append(episode)
                continue
        runs.append([episode])
    drafts = [_draft(run) for runs in groups.values() for run in runs]
    return sorted(drafts, key=lambda d: (d.started_at, d.kind))


def _draft(run: Sequence[Episode]) -> Draft:
    ends = [e.ended_at for e in run]
    return Draft(
        kind=run[0].kind,
        started_at=run[0].started_at,
        ended_at=None if None in ends else max(e for e in ends if e is not None),
        evidence=_union(*(e.evidence for e in run)),
        event_ids=_union(*(e.event_ids for e in run)),
        trace={
            "episodes": [
                {
                    "started_at": e.started_at.isoformat(),
                    "ended_at": e.ended_at.isoformat() if e.ended_at else None,
                    "steps": list(e.traces),
                }
                for e in run[:MAX_TRACE_EPISODES]
            ],
            "episode_count": len(run),
        },
    )


def build_incidents(
    events: Iterable[Ev], merge_window_s: float, close_at: datetime | None = None
) -> list[Draft]:
    """The incidents of one agent's events (see the module rules)."""
    return merge(episodes(events, close_at), merge_window_s)


@dataclass(frozen=True)
class StoredIncident:
    """What the builder needs to know of a stored incident."""

    id: int
    kind: str
    started_at: datetime
    ended_at: datetime | None
    event_ids: frozenset[str]
    locked: bool  # reviewed or under legal hold: never deleted by a rebuild


def window_start(stored: Iterable[StoredIncident], earliest_new: datetime, merge_window_s: float) -> datetime:
    """Where an incident rebuild must begin: the earliest stored incident the new events can join."""
    reach = seconds_before(earliest_new, merge_window_s)
    starts = [s.started_at for s in stored if s.ended_at is None or s.ended_at >= reach]
    return min([earliest_new, *starts])


@dataclass(frozen=True)
class Plan:
    """Row changes: drafts to write over stored ids, drafts to insert, ids merged away."""

    update: tuple[tuple[int, Draft], ...] = ()
    insert: tuple[Draft, ...] = ()
    delete: tuple[int, ...] = ()


def plan(stored: Sequence[StoredIncident], drafts: Sequence[Draft]) -> Plan:
    """Match rebuilt drafts to stored incidents by shared source events.

    A draft takes over the lowest-id stored incident it shares an event with (the
    review stays); other stored incidents it absorbed are deleted unless locked
    (reviewed / legal hold: those are kept as they are). An unchanged draft writes nothing.
    """
    update: list[tuple[int, Draft]] = []
    insert: list[Draft] = []
    delete: list[int] = []
    taken: set[int] = set()
    for draft in drafts:
        ids = set(draft.event_ids)
        matches = sorted(
            (s for s in stored if s.id not in taken and s.kind == draft.kind and s.event_ids & ids),
            key=lambda s: s.id,
        )
        if not matches:
            insert.append(draft)
            continue
        first, rest = matches[0], matches[1:]
        taken.update(s.id for s in matches)
        if not (
            first.started_at == draft.started_at
            and first.ended_at == draft.ended_at
            and first.event_ids == frozenset(draft.event_ids)
        ):
            update.append((first.id, draft))
        delete.extend(s.id for s in rest if not s.locked)
    return Plan(tuple(update), tuple(insert), tuple(sorted(delete)))
