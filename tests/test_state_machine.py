"""The presence state machine: exact transition times, hysteresis, decision traces, live settings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import pytest

from agent.detect.classify import Observation
from agent.detect.state_machine import (
    MachineParams,
    MachineState,
    Transition,
    incident_phases,
    step,
)
from realtime.protocol import AgentSettings, PresenceState

P = MachineParams.from_settings(AgentSettings())  # away 30 s, incident 3 s, peeking 1 s, camera 2 s
DT = 0.5  # 2 analysed frames per second


def _run(
    labels: Iterable[str], params: MachineParams = P, start: float = 0.0, ms: MachineState | None = None
) -> tuple[MachineState, list[Transition]]:
    ms = ms or MachineState()
    out = []
    for i, label in enumerate(labels):
        ms, tr = step(ms, Observation(start + i * DT, cast(PresenceState, label), 0.55), params)
        if tr is not None:
            out.append(tr)
    return ms, out


def _times(transitions: list[Transition]) -> list[tuple[float, str | None, str]]:
    return [(tr.t, tr.previous, tr.state) for tr in transitions]


def _present_at(n: int = 4) -> MachineState:
    ms, trs = _run(["present"] * n)
    assert _times(trs) == [(1.0, None, "present")]
    return ms


def test_first_state_after_confirm_window_with_trace() -> None:
    """The user seen for present_after_s (3 frames at 2 fps) gives present at t=1.0, with its trace."""
    _, trs = _run(["present"] * 3)
    assert _times(trs) == [(1.0, None, "present")]
    assert trs[0].trace == {
        "from": None,
        "to": "present",
        "label": "present",
        "rule": "present_after_s",
        "held_s": 1.0,
        "required_s": 1.0,
        "since": 0.0,
        "frames": 3,
        "min_frames": 2,
        "observation": {"t": 1.0, "label": "present", "threshold": 0.55, "faces": []},
    }


@pytest.mark.parametrize("bad", ["away", "peeking", "impersonation", "camera_blocked", "camera_unavailable"])
def test_one_bad_frame_never_flips(bad: PresenceState) -> None:
    """A single frame of any other label between present frames changes nothing, even with tiny windows."""
    tiny = MachineParams(
        away_after_s=0.01,
        incident_after_s=0.01,
        peeking_after_s=0.01,
        camera_after_s=0.01,
        present_after_s=0.01,
    )
    ms, trs = _run(["present", "present"], tiny)
    assert _times(trs) == [(0.5, None, "present")]
    ms, trs = _run([bad, "present"] * 20, tiny, start=1.0, ms=ms)
    assert trs == []
    assert ms.state == "present"


def test_present_to_away_after_away_after_s() -> None:
    """Last seen at 1.5, first frame without the user at 2.0: away at exactly 2.0 + away_after_s."""
    ms = _present_at()
    ms, trs = _run(["away"] * 70, start=2.0, ms=ms)
    assert _times(trs) == [(32.0, "present", "away")]
    assert (trs[0].trace["rule"], trs[0].trace["since"], trs[0].trace["held_s"]) == (
        "away_after_s",
        2.0,
        30.0,
    )


def test_user_glimpse_restarts_the_away_clock() -> None:
    """The user seen once during the absence restarts the away_after_s count."""
    ms = _present_at()
    ms, trs = _run(["away"] * 40 + ["present"] + ["away"] * 70, start=2.0, ms=ms)
    # the glimpse is at 22.0; away counts from 22.5
    assert _times(trs) == [(52.5, "present", "away")]


def test_peeking_within_two_seconds_and_back_to_present() -> None:
    """A big second face from t=2.0 raises peeking at 3.0; gone from 5.0, present again at 6.0."""
    ms = _present_at()
    ms, trs = _run(["peeking"] * 6 + ["present"] * 4, start=2.0, ms=ms)
    assert _times(trs) == [(3.0, "present", "peeking"), (6.0, "peeking", "present")]
    assert trs[0].trace["rule"] == "peeking_after_s"
    assert [incident_phases(tr) for tr in trs] == [[("peeking", "start")], [("peeking", "end")]]


def test_everyone_leaving_during_peeking_ends_it_then_away() -> None:
    """Nobody in front after peeking: peeking ends (present) once settled, away after away_after_s."""
    ms = _present_at()
    ms, trs = _run(["peeking"] * 4 + ["away"] * 70, start=2.0, ms=ms)
    assert _times(trs) == [
        (3.0, "present", "peeking"),
        (5.0, "peeking", "present"),
        (34.0, "present", "away"),
    ]


def test_impersonation_after_incident_after_s_then_away() -> None:
    """Strangers only from 2.0: impersonation at 5.0; they leave at 8.0: away at 9.0 (settle window)."""
    ms = _present_at()
    ms, trs = _run(["impersonation"] * 12 + ["away"] * 4, start=2.0, ms=ms)
    assert _times(trs) == [(5.0, "present", "impersonation"), (9.0, "impersonation", "away")]
    assert (trs[0].trace["rule"], trs[0].trace["held_s"], trs[0].trace["required_s"]) == (
        "incident_after_s",
        3.0,
        3.0,
    )
    assert incident_phases(trs[1]) == [("impersonation", "end")]


def test_camera_blocked_and_unavailable_after_camera_after_s() -> None:
    """Covered from 2.0: blocked at 4.0; no frames from 6.0: unavailable at 8.0; the user back: present."""
    ms = _present_at()
    ms, trs = _run(["camera_blocked"] * 8 + ["camera_unavailable"] * 6 + ["present"] * 3, start=2.0, ms=ms)
    assert _times(trs) == [
        (4.0, "present", "camera_blocked"),
        (8.0, "camera_blocked", "camera_unavailable"),
        (10.0, "camera_unavailable", "present"),
    ]
    assert incident_phases(trs[0]) == [("camera_blocked", "start")]
    assert incident_phases(trs[1]) == [("camera_blocked", "end")]
    assert incident_phases(trs[2]) == []


def test_incident_to_incident_ends_one_and_starts_the_other() -> None:
    """Peeking turning into impersonation ends the peeking incident and starts the impersonation one."""
    tr = Transition(1.0, "peeking", "impersonation", {})
    assert incident_phases(tr) == [("peeking", "end"), ("impersonation", "start")]


def test_settings_push_changes_behaviour_at_next_frame() -> None:
    """A shorter away_after_s from a settings push applies to the absence already running."""
    ms = _present_at()
    ms, trs = _run(["away"] * 10, start=2.0, ms=ms)
    assert trs == []
    short = MachineParams.from_settings(AgentSettings(away_after_s=5.0))
    ms, trs = _run(["away"] * 2, short, start=7.0, ms=ms)
    assert _times(trs) == [(7.0, "present", "away")]


def test_time_going_backwards_is_refused() -> None:
    """An observation older than the previous one is an error naming both times."""
    ms, _ = _run(["present"])
    with pytest.raises(ValueError, match=r"backwards: -1\.0 after 0\.0"):
        step(ms, Observation(-1.0, "present", 0.55), P)
