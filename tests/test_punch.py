"""Face-verified punches: the pure decision, its texts in both languages, and real faces through the desk."""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width parentheses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.desk import Desk, load_duty, save_duty
from agent.i18n import STRINGS, pick_language, reason_text, text
from agent.punch import (
    DutyState,
    PunchRequest,
    Verification,
    check_face,
    decide,
    may_register,
    parse_request,
)
from realtime.protocol import EARLIEST_TIME, LATEST_TIME, DutyPayload, StatePayload, TaskPayload
from tests.desk_world import (
    STRANGER,
    USER,
    ManualClock,
    Recorder,
    StillCamera,
    running_monitor,
    scene_image,
    watched_pipeline,
)

ON = DutyState(on_duty=True)
SEEN = Verification(at=100.0, camera=True, distances=(0.24,))
T0 = datetime(2026, 12, 1, 9, 2, tzinfo=UTC)
PRESENT_AT_PUNCH = StatePayload(
    state="present",
    trace={"from": None, "to": "present", "rule": "punch_in_verified", "faces": 1, "distance": 0.24,
           "threshold": 0.4},
)  # fmt: skip


# ------------------------------------------------------------------ pure rules


def test_accepted_punch_in_emits_verified_duty_start_and_its_first_state() -> None:
    """A matching face seen 0.5 s ago: punch in is accepted with DutyPayload(on_duty, verified), then the
    duty's first state, present, with the verification in its trace; the duty starts at the punch."""
    d = decide(PunchRequest("in"), SEEN, DutyState(), threshold=0.40, now=100.5, at=T0)
    assert (d.accepted, d.reason, d.state) == (True, None, DutyState(True, None, T0))
    assert d.payloads == (DutyPayload(on_duty=True, verified=True), PRESENT_AT_PUNCH)
    assert d.params == {"distance": 0.24, "threshold": 0.4}


def test_task_punches_keep_the_duty_start() -> None:
    """Starting and ending a task keep when the duty started; ending work forgets it."""
    on = DutyState(True, None, T0)
    started = decide(PunchRequest("task_start", "Design"), SEEN, on, 0.40, 100.5)
    assert started.state == DutyState(True, "Design", T0)
    ended = decide(PunchRequest("task_end"), SEEN, started.state, 0.40, 100.5)
    assert ended.state == on
    assert decide(PunchRequest("out"), SEEN, on, 0.40, 100.5).state == DutyState()


@pytest.mark.parametrize(
    ("verification", "now", "reason", "params"),
    [
        (None, 100.0, "no_recent_frame", {"max_age_s": 2.0}),
        (Verification(100.0, camera=False, reason="no frame from the camera"), 100.1, "camera_unavailable",
         {"detail": "no frame from the camera"}),
        (SEEN, 102.5, "no_recent_frame", {"age_s": 2.5, "max_age_s": 2.0}),
        (Verification(100.0, camera=True), 100.1, "no_face", {}),
        (Verification(100.0, camera=True, distances=(None,)), 100.1, "not_verified_yet", {}),
        (Verification(100.0, camera=True, distances=(0.52, 0.61)), 100.1, "mismatch",
         {"distance": 0.52, "threshold": 0.4}),
    ],
)  # fmt: skip
def test_refusals_say_why(
    verification: Verification | None, now: float, reason: str, params: dict[str, object]
) -> None:
    """No frame, camera unavailable, a stale frame, no face, an unverified face, another face: refused."""
    d = decide(PunchRequest("in"), verification, DutyState(), threshold=0.40, now=now)
    assert (d.accepted, d.reason, d.params, d.payloads, d.state) == (False, reason, params, (), DutyState())


def test_refusal_texts_match_the_user_facing_wording() -> None:
    """The English reasons read as the user is shown them; the Japanese ones carry the same numbers."""
    assert reason_text("en", "no_face", {}) == "no face in view"
    mismatch = {"distance": 0.52, "threshold": 0.4}
    assert reason_text("en", "mismatch", mismatch) == (
        "face does not match the registered user (distance 0.52 > 0.4)"
    )
    assert reason_text("ja", "mismatch", mismatch) == "登録された本人の顔と一致しません（距離 0.52 > 0.4）"
    assert reason_text("en", "camera_unavailable", {"detail": "no frame"}) == "camera unavailable (no frame)"
    assert text("en", "refused", reason="no face in view") == "Refused: no face in view"


def test_both_languages_have_every_text() -> None:
    """Japanese and English define the same keys, and the Accept-Language header picks by q-value."""
    assert set(STRINGS["ja"]) == set(STRINGS["en"])
    assert pick_language("ja-JP,ja;q=0.9,en;q=0.8") == "ja"
    assert pick_language("fr-FR, en;q=0.5, ja;q=0.7") == "ja"
    assert pick_language("de") == "en"
    assert pick_language(None, "ja") == "ja"


@pytest.mark.parametrize(
    ("request_", "state", "tasks", "reason"),
    [
        (PunchRequest("in"), ON, None, "already_on_duty"),
        (PunchRequest("out"), DutyState(), None, "not_on_duty"),
        (PunchRequest("task_start", "Design"), DutyState(), None, "not_on_duty"),
        (PunchRequest("task_end"), ON, None, "no_task"),
        (PunchRequest("task_start", "Golf"), ON, ("Design", "Review"), "unknown_task"),
        (PunchRequest("task_start", "Design"), DutyState(True, "Design"), None, "already_on_task"),
    ],
)
def test_state_rules_refuse_before_the_face(
    request_: PunchRequest, state: DutyState, tasks: tuple[str, ...] | None, reason: str
) -> None:
    """Punches that make no sense in the duty state are refused whatever the camera sees."""
    d = decide(request_, SEEN, state, 0.40, 100.5, tasks)
    assert (d.accepted, d.reason, d.state) == (False, reason, state)


def test_task_switch_and_punch_out_close_the_running_task() -> None:
    """Starting an offered task emits it; ending work while on a task ends the task first."""
    d = decide(PunchRequest("task_start", "Design"), SEEN, ON, 0.40, 100.5, ("Design", "Review"))
    assert (d.accepted, d.state, d.payloads) == (
        True,
        DutyState(True, "Design"),
        (TaskPayload(task="Design"),),
    )
    d = decide(PunchRequest("out"), SEEN, DutyState(True, "Design"), 0.40, 100.5)
    assert d.payloads == (TaskPayload(task=None), DutyPayload(on_duty=False, verified=True))
    assert d.state == DutyState()


def test_parse_request_rejects_bad_input() -> None:
    """An unknown kind or a task start without a name says what was expected."""
    with pytest.raises(ValueError, match="expected one of in, out, task_start, task_end, got 'lunch'"):
        parse_request("lunch")
    with pytest.raises(ValueError, match="task_start: expected a task name, got none"):
        parse_request("task_start", "  ")
    assert parse_request("task_end", "ignored") == PunchRequest("task_end", None)


def test_parse_request_refuses_task_names_the_protocol_would_refuse() -> None:
    """Too long or with a NUL: a ValueError naming the problem, never a ValidationError later."""
    with pytest.raises(ValueError, match=r"^task name: String should have at most 200 characters$"):
        parse_request("task_start", "x" * 201)
    with pytest.raises(ValueError, match=r"^task name: Value error, expected text without NUL characters"):
        parse_request("task_start", "a\x00b")


def test_registering_a_new_face_needs_the_current_user() -> None:
    """With a template, only the verified user may replace it; without one, anyone may register."""
    stranger = Verification(100.0, camera=True, distances=(0.6,))
    assert may_register(stranger, 0.4, 100.1, has_template=False).ok
    assert may_register(stranger, 0.4, 100.1, has_template=True).reason == "mismatch"
    assert may_register(SEEN, 0.4, 100.1, has_template=True).ok
    assert check_face(SEEN, 0.2, 100.1, 2.0).reason == "mismatch"


# ------------------------------------------------------------------ real faces


async def test_punch_in_opens_the_camera_and_decides_on_real_faces(tmp_path: Path) -> None:
    """Off duty the camera is closed; each punch-in opens it and checks its fresh frames: nobody ->
    refused (no face), a stranger -> refused (mismatch, with the distance), the camera closed again each
    time; the user -> accepted, the duty and its first state emitted at the agent clock's time, the
    duty's start kept in duty.json, and the camera stays open."""
    clock = ManualClock(T0)
    session = Recorder()
    pipeline = watched_pipeline()
    desk = Desk(session, pipeline, duty_path=tmp_path / "duty.json", event_clock=clock, verify_s=1.0)
    camera = StillCamera(None)
    async with running_monitor(desk, camera, gated=True) as monitor:
        camera.image = scene_image(None)
        nobody = await desk.punch(PunchRequest("in"))
        assert (nobody.accepted, nobody.reason) == (False, "no_face")
        assert desk.describe(nobody, "en") == "Refused: no face in view"

        camera.image = scene_image(STRANGER)
        stranger = await desk.punch(PunchRequest("in"))
        assert (stranger.accepted, stranger.reason, stranger.params["threshold"]) == (False, "mismatch", 0.4)
        assert 0.55 <= stranger.params["distance"] <= 0.65
        assert desk.describe(stranger, "en") == (
            f"Refused: face does not match the registered user (distance {stranger.params['distance']} > 0.4)"
        )
        assert session.emitted == []
        assert desk.camera_gate.status.why == "off_duty"

        camera.image = scene_image(USER)
        accepted = await desk.punch(PunchRequest("in"))
        assert (accepted.accepted, accepted.reason) == (True, None)
        assert accepted.params["distance"] < 0.3
        duty, first = session.emitted
        assert duty == DutyPayload(on_duty=True, verified=True)
        assert (first.state, first.trace["rule"], first.trace["faces"]) == ("present", "punch_in_verified", 1)
        assert session.stamps == [T0, T0]
        assert desk.describe(accepted, "ja") == "勤務を開始しました（顔認証済み）。"
        assert load_duty(tmp_path / "duty.json") == DutyState(True, None, T0)
        assert desk.camera_gate.status.why == "on_duty"
        assert monitor.source is camera and camera.is_open


async def test_stale_frame_on_duty_is_refused(tmp_path: Path) -> None:
    """On duty (duty.json from a previous run) a punch checks the latest frame: 2.5 s after it, too old
    to vouch for the user, punching out is refused."""
    clock = [1000.0]
    pipeline = watched_pipeline()
    pipeline.clock = lambda: clock[0]
    save_duty(tmp_path / "duty.json", DutyState(True, None, T0))
    desk = Desk(Recorder(), pipeline, duty_path=tmp_path / "duty.json", clock=lambda: clock[0])
    assert desk.camera_gate.status.why == "on_duty"
    pipeline.process(0.0, scene_image(USER))
    clock[0] += 2.5
    stale = await desk.punch(PunchRequest("out"))
    assert (stale.accepted, stale.reason, stale.params) == (
        False,
        "no_recent_frame",
        {"age_s": 2.5, "max_age_s": 2.0},
    )
    assert load_duty(tmp_path / "duty.json") == DutyState(True, None, T0)


def test_stricter_threshold_pushed_refuses_the_same_face() -> None:
    """The threshold is the current setting's: the same frame passes at level 1 and fails at a level whose
    threshold is below the face's distance (set as a settings push would)."""
    pipeline = watched_pipeline()
    pipeline.process(0.0, scene_image(USER))
    fresh = pipeline.verify_latest()
    assert fresh is not None and fresh.best is not None
    distance = fresh.best
    assert decide(PunchRequest("in"), fresh, DutyState(), 0.45, fresh.at).accepted
    refused = decide(PunchRequest("in"), fresh, DutyState(), distance - 0.01, fresh.at)
    assert refused.reason == "mismatch"


async def test_stranger_in_the_users_place_is_refused_despite_the_tracker(tmp_path: Path) -> None:
    """On duty, the user, then a stranger in the same spot a frame later: the tracker still carries the
    user's distance for that face, but the punch checks the frame afresh and refuses it."""
    pipeline = watched_pipeline()
    save_duty(tmp_path / "duty.json", DutyState(True))
    desk = Desk(Recorder(), pipeline, duty_path=tmp_path / "duty.json")
    pipeline.process(0.0, scene_image(USER))
    pipeline.process(0.5, scene_image(STRANGER))
    tracked = pipeline.latest.faces  # type: ignore[union-attr]
    assert len(tracked) == 1 and tracked[0].distance is not None and tracked[0].distance < 0.3
    decision = await desk.punch(PunchRequest("out"))
    assert (decision.accepted, decision.reason) == (False, "mismatch")
    assert decision.params["distance"] > 0.55


def test_tasks_offered_by_the_server_replace_the_stand_in_list() -> None:
    """Without server tasks the TELEWORK_AGENT_TASKS stand-in applies; tasks the server offers replace it."""
    session = Recorder()
    desk = Desk(session, watched_pipeline(), tasks=("Design",))
    assert desk.offered_tasks() == ("Design",)
    session.tasks = ()  # the tenant has no tasks
    assert desk.offered_tasks() == ("Design",)
    session.tasks = ("Support",)
    assert desk.offered_tasks() == ("Support",)
    assert Desk(Recorder(), watched_pipeline()).offered_tasks() is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
DUTY_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "on_duty": JSON | st.booleans(),
        "task": JSON | st.text(max_size=20),
        "since": JSON
        | st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
        | st.just("2026-12-01T09:02"),
    },
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(JSON, DUTY_FIELDS))
def test_duty_file_of_any_content_loads_as_a_duty_state(tmp_path: Path, data: object) -> None:
    """duty.json holding anything (another type, a bad or naive time, a task that is not text): the agent
    starts with a valid duty state, on duty only for a literal true, with an aware start from 2000 to 9000
    (shown on the page in local time) or none."""
    path = tmp_path / "duty.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    state = load_duty(path)
    assert isinstance(state.on_duty, bool)
    assert state.on_duty == (isinstance(data, dict) and data.get("on_duty") is True)
    assert state.task is None or (state.on_duty and isinstance(state.task, str) and state.task)
    assert state.since is None or (state.on_duty and EARLIEST_TIME <= state.since <= LATEST_TIME)


def test_duty_file_round_trips_and_a_broken_one_is_off_duty(tmp_path: Path) -> None:
    """save_duty then load_duty gives the same state; a file that is not JSON starts off duty."""
    path = tmp_path / "duty.json"
    save_duty(path, DutyState(True, "Design", T0))
    assert load_duty(path) == DutyState(True, "Design", T0)
    path.write_bytes(b"\xff\x00{")
    assert load_duty(path) == DutyState()
