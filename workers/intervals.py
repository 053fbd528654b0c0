"""Events -> duty, presence and task intervals of one agent. Pure: values in, values out.

Rules (documented in the README's data model section):

* Events are taken in ``(ts, seq, id)`` order; an event id seen twice counts once.
* ``duty on`` opens a duty interval (value ``on``); ``duty off`` closes it and the
  presence and task intervals inside it. Off-duty time has no interval.
* Presence and task intervals exist only while on duty (detection runs only
  on duty, and attendance counts present / away time on duty): a state or task
  event while off duty changes nothing, and each duty interval starts with no
  presence state and no task until the next state / task event.
* Identical consecutive values merge (heartbeat merging, as ActivityWatch): a
  state or task event repeating the open value extends it and opens nothing.
* Silence: a ``duty on`` while already on duty means the agent went away without
  a ``duty off`` (PC shut down, agent killed): everything open is closed at the
  agent's previous event (``closed_by="silence"``) and a new duty interval opens.
  ``build_intervals(..., silent=True)`` closes what is still open after the last
  event the same way; the builder passes it for agents silent longer than
  ``builder_silence_s`` (offline in the live state). Time after the last event
  is never invented, so a rebuild gives the same rows as the closure did.
* Zero-length intervals are dropped.

Late and out-of-order events: a duty start resets the state machine (off duty
before it, no state, no task), so the intervals from the latest duty start at or
before the earliest new event (:func:`window_start`) onwards are a function of
the events from there on alone; :func:`diff` turns the rebuilt window into the
row changes against the stored window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

DUTY, PRESENCE, TASK = "duty", "presence", "task"
DUTY_ON = "on"
BY_EVENT, BY_SILENCE = "event", "silence"


@dataclass(frozen=True)
class Ev:
    """An event as the builders see it (a decoded ``event`` row)."""

    id: str
    seq: int
    ts: datetime
    type: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class IntervalSpan:
    """One interval; ``ended_at`` None: open."""

    kind: str
    value: str
    started_at: datetime
    start_event_id: str
    ended_at: datetime | None = None
    end_event_id: str | None = None
    closed_by: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What identifies an interval across rebuilds: its kind and the event that opened it."""
        return (self.kind, self.start_event_id)


def ordered(events: Iterable[Ev]) -> list[Ev]:
    """Events in ``(ts, seq, id)`` order, each id once (the first seen wins)."""
    seen: dict[str, Ev] = {}
    for event in events:
        seen.setdefault(event.id, event)
    return sorted(seen.values(), key=lambda e: (e.ts, e.seq, e.id))


def build_intervals(events: Iterable[Ev], silent: bool = False) -> list[IntervalSpan]:
    """The intervals of one agent's events, starting off duty; sorted by start, then kind."""
    done: list[IntervalSpan] = []
    open_: dict[str, IntervalSpan] = {}
    previous: Ev | None = None

    def close(kinds: Sequence[str], at: Ev, closed_by: str) -> None:
        for kind in kinds:
            span = open_.pop(kind, None)
            if span is not None and at.ts > span.started_at:
                done.append(replace(span, ended_at=at.ts, end_event_id=at.id, closed_by=closed_by))

    def switch(kind: str, value: str | None, event: Ev) -> None:
        current = open_.get(kind)
        if current is not None and current.value == value:
            return  # identical consecutive value: merged
        close([kind], event, BY_EVENT)
        if value is not None:
            open_[kind] = IntervalSpan(kind, value, event.ts, event.id)

    for event in ordered(events):
        on_duty = DUTY in open_
        if event.type == "duty":
            if event.payload.get("on_duty"):
                if on_duty and previous is not None:
                    close([PRESENCE, TASK, DUTY], previous, BY_SILENCE)
                if DUTY not in open_:
                    open_[DUTY] = IntervalSpan(DUTY, DUTY_ON, event.ts, event.id)
            elif on_duty:
                close([PRESENCE, TASK, DUTY], event, BY_EVENT)
        elif event.type == "state" and on_duty:
            switch(PRESENCE, event.payload.get("state"), event)
        elif event.type == "task" and on_duty:
            switch(TASK, event.payload.get("task"), event)
        previous = event
    if silent and previous is not None:
        close([PRESENCE, TASK, DUTY], previous, BY_SILENCE)
    spans = done + list(open_.values())
    return sorted(spans, key=lambda s: (s.started_at, s.kind, s.start_event_id))


def window_start(duty_starts: Iterable[datetime], earliest_new: datetime) -> datetime:
    """Where a rebuild must begin: the latest duty start at or before the earliest new event."""
    before = [t for t in duty_starts if t <= earliest_new]
    return max(before) if before else earliest_new


def splice(
    existing: Sequence[IntervalSpan], rebuilt: Sequence[IntervalSpan], start: datetime
) -> list[IntervalSpan]:
    """The agent's intervals after a rebuild from ``start``: those begun before it, then the rebuilt ones."""
    kept = [s for s in existing if s.started_at < start]
    return sorted([*kept, *rebuilt], key=lambda s: (s.started_at, s.kind, s.start_event_id))


@dataclass(frozen=True)
class Changes:
    """Row changes turning the stored window into the rebuilt one."""

    delete: tuple[int, ...] = ()
    update: tuple[tuple[int, IntervalSpan], ...] = ()
    insert: tuple[IntervalSpan, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.delete or self.update or self.insert)


def diff(stored: Sequence[tuple[int, IntervalSpan]], rebuilt: Sequence[IntervalSpan]) -> Changes:
    """Compare stored rows ``(id, span)`` of a window with its rebuilt spans, matched by ``key``.

    Equal spans are left alone (ids stay stable); a span whose end changed is updated;
    stored rows without a rebuilt match are deleted; rebuilt spans without a row are inserted.
    """
    by_key: dict[tuple[str, str], tuple[int, IntervalSpan]] = {}
    duplicates: list[int] = []
    for row_id, span in stored:
        if span.key in by_key:
            duplicates.append(row_id)
        else:
            by_key[span.key] = (row_id, span)
    update: list[tuple[int, IntervalSpan]] = []
    insert: list[IntervalSpan] = []
    for span in rebuilt:
        match = by_key.pop(span.key, None)
        if match is None:
            insert.append(span)
        elif match[1] != span:
            update.append((match[0], span))
    delete = sorted([row_id for row_id, _ in by_key.values()] + duplicates)
    return Changes(tuple(delete), tuple(update), tuple(insert))
