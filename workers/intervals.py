"""Events -> duty, presence and task intervals of one agent. Pure: values in, values out.

Rules (documented in the README's data model section):

* Events are taken in ``(ts, seq, id)`` order; an event id seen twice counts once.
* ``duty on`` opens a duty interval (value ``on``); ``duty off`` closes it and the
  presence and task intervals inside it. Off-duty time has no interval.
* Presence and task intervals exist only while on duty (detection runs only
  on duty, and attendance counts present / away time on duty): a state or task
  event while off duty changes nothing, and each duty interval starts with no
  presence state and no task until the next state / task event. The agent sends
  the duty's first state with a verified punch-in (same time, the next ``seq``),
  so ``(ts, seq)`` order opens the duty first and its presence at the same moment.
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

Rows the builders cannot use (:func:`event_of_row`: a time outside the protocol's
``EARLIEST_TIME`` .. ``LATEST_TIME``, a sequence number that is not a 64-bit integer, a
payload that is not the object its type needs) are skipped, never built and never fatal.

Late and out-of-order events: a duty start resets the state machine (off duty
before it, no state, no task), so the intervals from the latest duty start at or
before the earliest new event (:func:`window_start`) onwards are a function of
the events from there on alone; :func:`diff` turns the rebuilt window into the
row changes against the stored window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from realtime.protocol import EARLIEST_TIME, INCIDENT_KINDS, LATEST_TIME, MAX_SEQ, MAX_TEXT, PRESENCE_STATES

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


def in_build_range(moment: datetime) -> bool:
    """Whether the builders take an event of this (aware) time: the protocol's time range."""
    return EARLIEST_TIME <= moment <= LATEST_TIME


TIME_RANGE = f"a time from {EARLIEST_TIME:%Y-%m-%d} to {LATEST_TIME:%Y-%m-%d} (UTC)"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _payload_problem(kind: str, payload: Mapping[str, Any]) -> str | None:
    """What is wrong with the fields the builders read of a ``kind`` payload (None: nothing)."""
    if kind == "duty" and not isinstance(payload.get("on_duty"), bool):
        return f"payload.on_duty: expected true or false, got {_short(payload.get('on_duty'))}"
    if kind == "state" and payload.get("state") not in PRESENCE_STATES:
        return (
            f"payload.state: expected one of {', '.join(PRESENCE_STATES)}, got {_short(payload.get('state'))}"
        )
    if kind == "task":
        task = payload.get("task")
        if task is not None and not (isinstance(task, str) and 1 <= len(task) <= MAX_TEXT):
            return f"payload.task: expected none or a name of 1 to {MAX_TEXT} characters, got {_short(task)}"
    if kind == "incident":
        if payload.get("kind") not in INCIDENT_KINDS:
            expected = ", ".join(INCIDENT_KINDS)
            return f"payload.kind: expected one of {expected}, got {_short(payload.get('kind'))}"
        if payload.get("phase") not in ("start", "end"):
            return f"payload.phase: expected start or end, got {_short(payload.get('phase'))}"
        evidence = payload.get("evidence") or []
        if not (isinstance(evidence, list) and all(isinstance(e, str) for e in evidence)):
            return f"payload.evidence: expected a list of text, got {_short(evidence)}"
        trace = payload.get("trace")
        if trace is not None and not isinstance(trace, dict):
            return f"payload.trace: expected an object or none, got {_short(trace)}"
    return None


def event_of_row(row_id: object, seq: object, ts: object, kind: object, payload: object) -> Ev | str:
    """A stored ``event`` row as an :class:`Ev`, or why the builders cannot use it (it is skipped).

    ``ts``: an aware datetime, a naive one (UTC, as SQLite keeps it), or the stored text of a
    time the database holds but Python cannot (year 0, 10000).
    """
    if not isinstance(row_id, str) or not row_id:
        return f"id: expected text, got {_short(row_id)}"
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        return f"seq: expected an integer from 1 to {MAX_SEQ}, got {_short(seq)}"
    if not isinstance(ts, datetime):
        return f"ts: expected {TIME_RANGE}, got {_short(ts)}"
    moment = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
    if not in_build_range(moment):
        return f"ts: expected {TIME_RANGE}, got {ts.isoformat()}"
    if not isinstance(kind, str):
        return f"type: expected text, got {_short(kind)}"
    if not isinstance(payload, dict):
        return f"payload: expected a JSON object, got {_short(payload)}"
    problem = _payload_problem(kind, payload)
    if problem is not None:
        return problem
    return Ev(row_id, seq, moment.astimezone(UTC), kind, payload)


def seconds_before(moment: datetime, seconds: float) -> datetime:
    """``moment`` minus ``seconds``, or the earliest datetime when that leaves the calendar."""
    try:
        return moment - timedelta(seconds=seconds)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


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
