"""The fault-matrix benchmark's counting (benchmarks/fault_counting.py), and one short run of it."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.protocol import (
    DutyPayload,
    StateEvent,
    StatePayload,
    StreamEvent,
    TaskPayload,
    encode,
    new_event_id,
)
from workers.dead_letter import dead_letter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules

from fault_agents import POISON_KINDS, payload_for  # noqa: E402 - benchmarks/ is put on the path first
from fault_counting import (  # noqa: E402
    NO_ORIGIN,
    DeadLetterOrigin,
    EventTally,
    FaultKill,
    PoisonSent,
    PoisonTally,
    RecoveryRow,
    RunFacts,
    StoredRow,
    acked_total,
    dead_letter_origin,
    emitted_seqs,
    entry_agent,
    max_recovery_s,
    percentile,
    recovery_rows,
    report,
    table,
    tally_events,
    tally_poison,
    targets_met,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def stream_entry(agent: str, seq: int) -> tuple[str, str]:
    """A real StreamEvent JSON text and its event id."""
    event = StateEvent(id=new_event_id(), seq=seq, ts=NOW, payload=StatePayload(state="present"))
    entry = StreamEvent(tenant="faults", agent_id=agent, session_id="s1", received_at=NOW, event=event)
    return encode(entry), str(event.id)


def letter_text(fields: dict[str, str]) -> str:
    return encode(dead_letter("tw:{faults}:events", "1-0", fields, "why", 6, NOW))


def test_emitted_seqs_are_one_up_to_before_next_seq() -> None:
    """A spool whose next unused seq is N emitted 1..N-1; a fresh one (1) emitted nothing."""
    assert list(emitted_seqs(4)) == [1, 2, 3]
    assert list(emitted_seqs(1)) == []
    assert list(emitted_seqs(0)) == []


def test_tally_counts_lost_duplicates_unexpected_and_dead_letters_exactly() -> None:
    """Missing seqs are lost, extra rows per seq duplicated, dead letters split by whose they are."""
    emitted = {"a": emitted_seqs(6), "b": emitted_seqs(3)}
    stored = [
        StoredRow("a", 1, "i1"),
        StoredRow("a", 2, "i2"),
        StoredRow("a", 2, "i2bis"),  # the same seq twice: one duplicate
        StoredRow("a", 4, "i4"),
        StoredRow("a", 5, "i5"),
        StoredRow("a", 9, "i9"),  # never emitted
        StoredRow("b", 1, "j1"),
        StoredRow("b", 2, "j2"),
        StoredRow("hostile", 7, "h7"),
        StoredRow("hostile", 8, "h8"),
        StoredRow("stranger", 1, "z1"),  # an agent nobody knows
    ]
    dead = [
        DeadLetterOrigin("a", 3, "i3"),
        DeadLetterOrigin("hostile", 9, "h9"),
        DeadLetterOrigin(None, None, None),
    ]
    assert tally_events(emitted, stored, dead, {"hostile"}) == EventTally(
        emitted=7,
        stored=8,
        lost=1,
        duplicated=1,
        unexpected=2,
        valid_dead_lettered=1,
        poison_dead_lettered=1,
        unattributed_dead_lettered=1,
        poison_rows=2,
    )


def test_tally_of_a_clean_run_is_all_zero() -> None:
    """Every emitted event stored once and nothing dead-lettered: no loss, no duplicate."""
    emitted = {"a": emitted_seqs(3)}
    stored = [StoredRow("a", 1, "x"), StoredRow("a", 2, "y")]
    assert tally_events(emitted, stored, [], {"hostile"}) == EventTally(2, 2, 0, 0, 0, 0, 0, 0, 0)


def test_dead_letter_origin_reads_the_parked_stream_event() -> None:
    """A worker's DeadLetter of a real StreamEvent gives back its agent, seq and event id."""
    text, event_id = stream_entry("a0007", 42)
    assert dead_letter_origin(letter_text({"e": text})) == DeadLetterOrigin("a0007", 42, event_id)


def test_dead_letter_origin_of_broken_json_still_names_the_agent() -> None:
    """An entry that is not valid JSON (why it was dead-lettered) is still attributed by its agent_id."""
    broken = '{"type": "stream_event", "agent_id": "hostile", "event": {"seq": NaN, '
    assert dead_letter_origin(letter_text({"e": broken})) == DeadLetterOrigin("hostile", None, None)
    assert entry_agent(broken) == "hostile"


def test_dead_letter_origin_of_what_says_nothing_is_empty() -> None:
    """No JSON, no fields, no ``e`` field, a bool seq: None where the letter does not say."""
    assert dead_letter_origin("not json") == NO_ORIGIN
    assert dead_letter_origin("[1, 2]") == NO_ORIGIN
    assert dead_letter_origin(letter_text({"x": "1"})) == NO_ORIGIN
    inner = json.dumps({"agent_id": "a1", "event": {"seq": True, "id": 5}})
    assert dead_letter_origin(letter_text({"e": inner})) == DeadLetterOrigin("a1", None, None)


@given(st.text())
def test_dead_letter_origin_never_raises_on_any_text(text: str) -> None:
    """Whatever a dead-letter stream holds, reading it gives an origin (maybe empty), never an error."""
    origin = dead_letter_origin(text)
    assert isinstance(origin, DeadLetterOrigin)
    assert entry_agent(text) is None or isinstance(entry_agent(text), str)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_dead_letter_origin_never_raises_on_any_json_in_the_entry(value: object) -> None:
    """Any JSON value as the parked entry (and as the whole letter) is read without an error."""
    for text in (
        letter_text({"e": json.dumps(value)}),
        json.dumps(value),
        json.dumps({"fields": {"e": value}}),
    ):
        assert isinstance(dead_letter_origin(text), DeadLetterOrigin)


def test_deep_nesting_does_not_break_the_reader() -> None:
    """An entry nested far deeper than Python's recursion limit reads as an empty origin."""
    deep = "[" * 100_000 + "]" * 100_000
    assert dead_letter_origin(letter_text({"e": deep})) == NO_ORIGIN


def test_tally_poison_per_kind_then_all() -> None:
    """Rejected by a reply, dead-lettered or stored, per kind in first-sent order, then ``all``."""
    sent = [
        PoisonSent("seq", "p1", "acked"),  # accepted, then dead-lettered: fine
        PoisonSent("ts", "p2", "acked"),  # accepted and stored: the failure
        PoisonSent("seq", "p3", "error:invalid_field"),
        PoisonSent("frame", None, "close:1009"),
        PoisonSent("frame", None, "no_reply"),  # neither rejected nor dead-lettered
    ]
    rows = tally_poison(sent, stored_ids={"p2"}, dead_ids={"p1"})
    assert rows == [
        PoisonTally("seq", 2, 1, 1, 0, 0, (("acked", 1), ("error:invalid_field", 1))),
        PoisonTally("ts", 1, 0, 0, 1, 1, (("acked", 1),)),
        PoisonTally("frame", 2, 1, 0, 0, 1, (("close:1009", 1), ("no_reply", 1))),
        PoisonTally(
            "all",
            5,
            2,
            1,
            1,
            2,
            (("acked", 2), ("error:invalid_field", 1), ("close:1009", 1), ("no_reply", 1)),
        ),
    ]
    assert [r.ok for r in rows] == [True, False, False, False]


def test_acked_total_takes_each_agents_highest_ack() -> None:
    """Reports from before and after a restart: the highest cumulative ack per valid agent, summed."""
    reports = [{"a": 5, "b": 2}, {"a": 7}, {"hostile": 99}]
    assert acked_total(reports, {"a", "b"}) == 9


def test_recovery_rows_per_kind_and_the_worst_case() -> None:
    """p50 and max per fault kind, kinds without kills kept, a timeout counted as the timeout."""
    kills = [
        FaultKill("worker", "worker-0", 1.0),
        FaultKill("worker", "worker-1", 3.0),
        FaultKill("worker", "worker-0", 2.0),
        FaultKill("redis", "redis", None),
    ]
    assert recovery_rows(kills, ("worker", "gateway", "redis")) == [
        RecoveryRow("worker", 3, 2.0, 3.0, 0),
        RecoveryRow("gateway", 0, None, None, 0),
        RecoveryRow("redis", 1, None, None, 1),
        RecoveryRow("all", 4, 2.0, 3.0, 1),
    ]
    assert max_recovery_s(kills, 30.0) == 30.0
    assert max_recovery_s(kills[:3], 30.0) == 3.0
    assert max_recovery_s([], 30.0) == 0.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert percentile([], 50) is None


def test_targets_met_needs_every_figure() -> None:
    """Met only with no loss, no duplicate, no valid dead letter, all poison handled, recovery in time."""
    clean = EventTally(10, 10, 0, 0, 0, 0, 3, 0, 0)
    handled = [PoisonTally("all", 3, 2, 1, 0, 0, ())]
    assert targets_met(clean, handled, 9.9, 10.0) is True
    assert targets_met(clean, handled, 10.1, 10.0) is False
    assert targets_met(EventTally(10, 9, 1, 0, 0, 0, 3, 0, 0), handled, 1.0, 10.0) is False
    assert targets_met(EventTally(10, 11, 0, 1, 0, 0, 3, 0, 0), handled, 1.0, 10.0) is False
    assert targets_met(EventTally(10, 9, 0, 0, 0, 1, 3, 0, 0), handled, 1.0, 10.0) is False
    assert targets_met(clean, [PoisonTally("all", 3, 2, 0, 1, 1, ())], 1.0, 10.0) is False


def test_table_pads_columns_and_shows_none_as_a_dash() -> None:
    """Plain text: a header, a rule, one line per row; floats with two decimals."""
    assert table(("fault", "kills", "max s"), [("redis", 2, 1.234), ("all", 10, None)]) == (
        "fault  kills  max s\n-----  -----  -----\nredis  2      1.23\nall    10     -"
    )


def test_report_gives_the_tables_and_every_result_figure() -> None:
    """The RESULT figures of a run with one slow kill and one poison frame stored: targets not met."""
    tally = EventTally(100, 99, 1, 0, 0, 0, 2, 0, 1)
    poison = tally_poison(
        [PoisonSent("ts", "p1", "acked"), PoisonSent("seq", "p2", "error:invalid_field")], {"p1"}, set()
    )
    kills = [FaultKill("worker", "worker-0", 0.5), FaultKill("builder", "builder", 12.345)]
    facts = RunFacts(kills, 98, 3, ["builder (exit 1)"], True, 4.44, 1.234, 30.0, 10.0)
    text, figures = report(tally, poison, facts, ("worker", "builder", "redis"))
    assert figures == {
        "kills": 2,
        "events_emitted": 100,
        "events_acked": 98,
        "events_stored": 99,
        "lost": 1,
        "duplicated": 0,
        "unexpected_stored": 0,
        "valid_dead_lettered": 0,
        "poison_sent": 2,
        "poison_rejected": 1,
        "poison_dead_lettered": 2,
        "poison_stored": 1,
        "poison_all_rejected_or_dead_lettered": False,
        "unattributed_dead_lettered": 0,
        "process_restarts": 3,
        "unplanned_exits": 1,
        "max_recovery_s": 12.35,
        "max_recovery_s_by_kind": {"worker": 0.5, "builder": 12.35},
        "recovery_timeouts": 0,
        "drained": True,
        "drain_s": 4.4,
        "load_avg_1m": 1.23,
        "targets_met": False,
    }
    lines = text.splitlines()
    assert lines[0].split() == ["fault", "kills", "recovery", "p50", "s", "max", "s", "timeouts"]
    assert lines[2].split() == ["worker", "1", "0.50", "0.50", "0"]
    assert lines[4].split() == ["redis", "0", "-", "-", "0"]
    assert lines[-1] == "exited by themselves (restarted): builder (exit 1)"
    assert [line.split() for line in lines if line.startswith("ts ")] == [
        ["ts", "1", "0", "0", "1", "acked", "x1"]
    ]


def test_report_of_a_clean_run_meets_the_targets() -> None:
    """No loss, every poison rejected, recoveries under the limit, drained: targets met."""
    poison = tally_poison([PoisonSent("seq", "p2", "close:1009")], set(), set())
    facts = RunFacts([FaultKill("redis", "redis", 0.4)], 10, 1, [], True, 1.0, 0.5, 30.0, 10.0)
    _, figures = report(EventTally(10, 10, 0, 0, 0, 0, 0, 0, 0), poison, facts, ("redis",))
    assert figures["targets_met"] is True
    undrained = RunFacts([FaultKill("redis", "redis", 0.4)], 10, 1, [], False, 90.0, 0.5, 30.0, 10.0)
    _, figures = report(EventTally(10, 10, 0, 0, 0, 0, 0, 0, 0), poison, undrained, ("redis",))
    assert figures["targets_met"] is False


def test_agents_emit_duty_first_then_states_and_tasks() -> None:
    """seq 1 starts duty; every 5th is a task event; states alternate present / away."""
    assert payload_for(1, 5) == DutyPayload(on_duty=True)
    assert payload_for(2, 5) == StatePayload(state="away")
    assert payload_for(3, 5) == StatePayload(state="present")
    assert payload_for(5, 5) == TaskPayload(task="report")
    assert payload_for(10, 5) == TaskPayload(task=None)
    assert payload_for(10, 0) == StatePayload(state="away")


def test_every_poison_kind_carries_a_fresh_event_id_or_none() -> None:
    """Each poison frame is new: two frames of one kind never share an event id."""
    for kind, make in POISON_KINDS.items():
        (_, first), (_, second) = make(1), make(2)
        assert (first is None) == (second is None), kind
        assert first is None or first != second, kind


def _postgres_and_redis_present() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb")) and bool(
        shutil.which("redis-server")
    )


@pytest.mark.slow
@pytest.mark.skipif(not _postgres_and_redis_present(), reason="needs PostgreSQL's initdb and redis-server")
def test_a_short_fault_run_ends_with_one_result_line() -> None:
    """A short run (6 agents, a kill every 3 s) prints exactly one ``RESULT {json}`` line with the figures."""
    argv = [sys.executable, str(ROOT / "benchmarks" / "faults.py"), "--agents", "6", "--seconds", "10"]
    argv += ["--kill-every", "2.5", "--agent-procs", "1", "--drain-timeout", "30", "--poison-every", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1 and done.stdout.rstrip().splitlines()[-1] == results[0]
    figures = json.loads(results[0].removeprefix("RESULT "))
    for name in (
        "events_acked",
        "events_stored",
        "lost",
        "duplicated",
        "valid_dead_lettered",
        "poison_dead_lettered",
        "process_restarts",
    ):
        assert isinstance(figures[name], int) and figures[name] >= 0, name
    assert isinstance(figures["max_recovery_s"], float | int)
    # a kill waits for the previous recovery: on a loaded machine 10 s hold fewer than 10 / 2.5
    assert figures["agents"] == 6 and figures["kills"] >= 1
    assert figures["events_stored"] > 0 and figures["poison_sent"] > 0
