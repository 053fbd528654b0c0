"""The figures of the fault-matrix benchmark (``benchmarks/faults.py``). Pure: values in, values out.

* **Events**: per valid agent the seqs it emitted (its spool's ``next_seq``: seqs 1..next_seq-1),
  the rows of the ``event`` table and the entries of the dead-letter stream give ``lost`` (emitted,
  not stored), ``duplicated`` (rows beyond one per agent and seq), ``valid_dead_lettered`` and
  ``poison_dead_lettered`` (dead letters of a valid agent / of the hostile agent).
* **Poison**: each malformed or out-of-range event the hostile agent sent, with the reply it got,
  is *rejected* (an ``error`` frame, ``evidence_rejected`` or a close), *dead-lettered* or *stored*;
  every one must be rejected or dead-lettered and none stored.
* **Recovery**: per kill, seconds from the restart of the killed process until the system was
  healthy again (None: not within the timeout); per fault kind the kills, p50 and max.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

REJECTED_PREFIXES = ("error:", "close:", "evidence_rejected:")
_AGENT_RE = re.compile(r'"agent_id"\s*:\s*"([^"\\]{1,200})"')


def emitted_seqs(next_seq: int) -> range:
    """The seqs an agent emitted when its spool's next unused seq is ``next_seq``."""
    return range(1, max(1, next_seq))


@dataclass(frozen=True)
class StoredRow:
    """One row of the ``event`` table, as far as counting needs it."""

    agent_id: str
    seq: int
    event_id: str


@dataclass(frozen=True)
class DeadLetterOrigin:
    """What a dead letter says about the stream entry it parks (None: it does not say)."""

    agent_id: str | None
    seq: int | None
    event_id: str | None


NO_ORIGIN = DeadLetterOrigin(None, None, None)


def _json_object(text: str) -> dict[str, object] | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def entry_agent(raw: str) -> str | None:
    """The agent of a stream entry's ``StreamEvent`` JSON text; from its ``"agent_id"`` text when
    the JSON is broken; None when it names none. Never raises."""
    entry = _json_object(raw)
    if entry is None:
        match = _AGENT_RE.search(raw)
        return match.group(1) if match else None
    agent = entry.get("agent_id")
    return agent if isinstance(agent, str) else None


def dead_letter_origin(text: str) -> DeadLetterOrigin:
    """The agent, seq and event id of the entry a ``DeadLetter`` JSON text parks.

    The original entry is the ``StreamEvent`` JSON in ``fields["e"]``; when that is not valid
    JSON (the reason it was dead-lettered), the agent is still read from its ``"agent_id"`` text.
    Never raises: anything unreadable gives None fields.
    """
    letter = _json_object(text)
    fields = letter.get("fields") if letter is not None else None
    raw = fields.get("e") if isinstance(fields, dict) else None
    if not isinstance(raw, str):
        return NO_ORIGIN
    entry = _json_object(raw)
    event = entry.get("event") if entry is not None else None
    seq = event.get("seq") if isinstance(event, dict) else None
    event_id = event.get("id") if isinstance(event, dict) else None
    return DeadLetterOrigin(
        entry_agent(raw),
        seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        event_id if isinstance(event_id, str) else None,
    )


@dataclass(frozen=True)
class EventTally:
    emitted: int  # events the valid agents emitted
    stored: int  # rows of valid agents in the event table
    lost: int  # emitted, not in the event table
    duplicated: int  # rows beyond one per (agent, seq)
    unexpected: int  # rows of a valid agent with a seq it never emitted, or of an unknown agent
    valid_dead_lettered: int  # dead letters of valid agents
    poison_dead_lettered: int  # dead letters of the hostile agent
    unattributed_dead_lettered: int  # dead letters naming no known agent
    poison_rows: int  # rows of the hostile agent in the event table


def tally_events(
    emitted: Mapping[str, Collection[int]],
    stored: Iterable[StoredRow],
    dead: Iterable[DeadLetterOrigin],
    hostile: Collection[str],
) -> EventTally:
    """The event figures: ``emitted`` per valid agent its seqs, ``hostile`` the hostile agents."""
    rows: Counter[str] = Counter()
    seqs: dict[str, set[int]] = defaultdict(set)
    unexpected = poison_rows = 0
    for row in stored:
        if row.agent_id in hostile:
            poison_rows += 1
        elif row.agent_id in emitted:
            rows[row.agent_id] += 1
            seqs[row.agent_id].add(row.seq)
        else:
            unexpected += 1
    lost = duplicated = 0
    for agent, sent in emitted.items():
        have = seqs.get(agent, set())
        lost += sum(1 for seq in sent if seq not in have)
        unexpected += sum(1 for seq in have if seq not in sent)
        duplicated += rows[agent] - len(have)
    valid_dead = poison_dead = unattributed = 0
    for origin in dead:
        if origin.agent_id in hostile:
            poison_dead += 1
        elif origin.agent_id in emitted:
            valid_dead += 1
        else:
            unattributed += 1
    return EventTally(
        emitted=sum(len(s) for s in emitted.values()),
        stored=sum(rows.values()),
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        valid_dead_lettered=valid_dead,
        poison_dead_lettered=poison_dead,
        unattributed_dead_lettered=unattributed,
        poison_rows=poison_rows,
    )


def acked_total(acks: Iterable[Mapping[str, int]], valid: Collection[str]) -> int:
    """Events acked: per valid agent the highest cumulative ack any report of it gives, summed."""
    best: dict[str, int] = {}
    for report in acks:
        for agent, seq in report.items():
            if agent in valid:
                best[agent] = max(best.get(agent, 0), seq)
    return sum(best.values())


# ------------------------------------------------------------------------- poison


@dataclass(frozen=True)
class PoisonSent:
    """One malformed or out-of-range frame of the hostile agent and the reply it got.

    ``outcome``: ``acked``, ``error:<code>``, ``evidence_rejected:<code>``, ``close:<code>``,
    ``no_reply``. ``event_id``: the id of the event it carried, None for a frame with no event.
    """

    kind: str
    event_id: str | None
    outcome: str


@dataclass(frozen=True)
class PoisonTally:
    kind: str
    sent: int
    rejected: int  # an error frame, evidence_rejected or a close came back
    dead_lettered: int
    stored: int  # in the event table: the failure this benchmark looks for
    neither: int  # not rejected and not dead-lettered: stored, or accepted and still nowhere
    outcomes: tuple[tuple[str, int], ...]  # reply -> how often, most frequent first

    @property
    def ok(self) -> bool:
        return self.stored == 0 and self.neither == 0


def is_rejected(outcome: str) -> bool:
    return outcome.startswith(REJECTED_PREFIXES)


def tally_poison(
    sent: Sequence[PoisonSent], stored_ids: Collection[str], dead_ids: Collection[str]
) -> list[PoisonTally]:
    """Per poison kind (in first-sent order), then a last row ``all``."""
    kinds = list(dict.fromkeys(p.kind for p in sent))
    return [_poison_row(k, [p for p in sent if p.kind == k], stored_ids, dead_ids) for k in kinds] + [
        _poison_row("all", sent, stored_ids, dead_ids)
    ]


def _poison_row(
    kind: str, sent: Sequence[PoisonSent], stored_ids: Collection[str], dead_ids: Collection[str]
) -> PoisonTally:
    rejected = sum(1 for p in sent if is_rejected(p.outcome))
    dead = sum(1 for p in sent if p.event_id is not None and p.event_id in dead_ids)
    stored = sum(1 for p in sent if p.event_id is not None and p.event_id in stored_ids)
    neither = sum(
        1 for p in sent if not is_rejected(p.outcome) and (p.event_id is None or p.event_id not in dead_ids)
    )
    outcomes = tuple(Counter(p.outcome for p in sent).most_common())
    return PoisonTally(kind, len(sent), rejected, dead, stored, neither, outcomes)


# ----------------------------------------------------------------------- recovery


@dataclass(frozen=True)
class FaultKill:
    kind: str  # worker | builder | gateway | redis | postgres | agents
    target: str  # which process
    recovery_s: float | None  # restart -> healthy; None: not healthy within the timeout


@dataclass(frozen=True)
class RecoveryRow:
    kind: str
    kills: int
    p50_s: float | None
    max_s: float | None
    timeouts: int


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def recovery_rows(kills: Sequence[FaultKill], kinds: Sequence[str]) -> list[RecoveryRow]:
    """One row per fault kind (``kinds`` order, then any other), then ``all``."""
    order = list(kinds) + [k.kind for k in kills if k.kind not in kinds]
    rows = [_recovery_row(kind, [k for k in kills if k.kind == kind]) for kind in dict.fromkeys(order)]
    return [*rows, _recovery_row("all", kills)]


def _recovery_row(kind: str, kills: Sequence[FaultKill]) -> RecoveryRow:
    times = [k.recovery_s for k in kills if k.recovery_s is not None]
    return RecoveryRow(
        kind, len(kills), percentile(times, 50), max(times) if times else None, len(kills) - len(times)
    )


def max_recovery_s(kills: Sequence[FaultKill], timeout_s: float) -> float:
    """The slowest recovery; a kill not recovered within the timeout counts as ``timeout_s``."""
    return max((timeout_s if k.recovery_s is None else k.recovery_s for k in kills), default=0.0)


def targets_met(
    tally: EventTally, poison: Sequence[PoisonTally], worst_recovery_s: float, limit_s: float
) -> bool:
    """No loss, no duplicate, no valid event dead-lettered, every poison event rejected or
    dead-lettered (none stored), every kill recovered within ``limit_s``."""
    return (
        tally.lost == 0
        and tally.duplicated == 0
        and tally.valid_dead_lettered == 0
        and all(row.ok for row in poison)
        and worst_recovery_s <= limit_s
    )


# ------------------------------------------------------------------------- report


@dataclass(frozen=True)
class RunFacts:
    """What the run knows besides the counts."""

    kills: Sequence[FaultKill]
    acked: int  # events_acked
    restarts: int  # every restart, planned or not
    unplanned: Sequence[str]  # children that exited by themselves, e.g. "builder (exit 1)"
    drained: bool
    drain_s: float
    load_avg_1m: float  # at the end of the fault phase (the machine may be shared)
    timeout_s: float  # recovery timeout
    limit_s: float  # recovery target


def report(
    tally: EventTally, poison: Sequence[PoisonTally], facts: RunFacts, kinds: Sequence[str]
) -> tuple[str, dict[str, object]]:
    """The tables (per fault kind, per poison kind, the unplanned exits) and the RESULT figures."""
    rows = recovery_rows(facts.kills, kinds)
    worst = max_recovery_s(facts.kills, facts.timeout_s)
    text = table(
        ("fault", "kills", "recovery p50 s", "max s", "timeouts"),
        [(r.kind, r.kills, r.p50_s, r.max_s, r.timeouts) for r in rows],
    )
    text += "\n\n" + table(
        ("poison", "sent", "rejected", "dead-lettered", "stored", "replies"),
        [
            (
                p.kind,
                p.sent,
                p.rejected,
                p.dead_lettered,
                p.stored,
                ", ".join(f"{o} x{n}" for o, n in p.outcomes),
            )
            for p in poison
        ],
    )
    if facts.unplanned:
        text += "\n\nexited by themselves (restarted): " + ", ".join(facts.unplanned)
    total = poison[-1]
    figures: dict[str, object] = {
        "kills": len(facts.kills),
        "events_emitted": tally.emitted,
        "events_acked": facts.acked,
        "events_stored": tally.stored,
        "lost": tally.lost,
        "duplicated": tally.duplicated,
        "unexpected_stored": tally.unexpected,
        "valid_dead_lettered": tally.valid_dead_lettered,
        "poison_sent": total.sent,
        "poison_rejected": total.rejected,
        "poison_dead_lettered": tally.poison_dead_lettered,
        "poison_stored": total.stored,
        "poison_all_rejected_or_dead_lettered": total.ok,
        "unattributed_dead_lettered": tally.unattributed_dead_lettered,
        "process_restarts": facts.restarts,
        "unplanned_exits": len(facts.unplanned),
        "max_recovery_s": round(worst, 2),
        "max_recovery_s_by_kind": {
            r.kind: None if r.max_s is None else round(r.max_s, 2) for r in rows[:-1] if r.kills
        },
        "recovery_timeouts": rows[-1].timeouts,
        "drained": facts.drained,
        "drain_s": round(facts.drain_s, 1),
        "load_avg_1m": round(facts.load_avg_1m, 2),
        "targets_met": facts.drained and targets_met(tally, poison, worst, facts.limit_s),
    }
    return text, figures


# -------------------------------------------------------------------------- table


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain text table: columns padded to their widest cell, None shown as ``-``."""
    cells = [list(header)] + [["-" if v is None else _cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
