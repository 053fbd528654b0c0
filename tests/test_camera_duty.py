"""The camera runs only on duty: closed off duty (nothing read, no evidence), opened for a punch-in's
verification, kept open for the duty, closed by the punch-out; the local page says which and why."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.camera_gate import CameraGate, CameraStatus, DutyStart, camera_status
from agent.desk import Desk, camera_text
from agent.evidence import EvidenceRecord
from agent.monitor import Monitor
from agent.punch import PunchRequest
from agent.watch import RecordingEvidenceStore
from realtime.protocol import AgentSettings, DutyPayload, StatePayload
from tests.desk_world import STRANGER, USER, ManualClock, Recorder, StillCamera, running_monitor, scene_image
from tests.desk_world import watched_pipeline as pipeline_of
from tests.waiting import wait_until

T0 = datetime(2026, 12, 1, 0, 2, tzinfo=UTC)


def test_camera_status_says_whether_and_why() -> None:
    """Off duty: off; a verification or registration: on for it; on duty: on since the punch-in."""
    assert camera_status(False, None, Counter()) == CameraStatus(False, "off_duty")
    assert camera_status(False, None, Counter({"verifying": 1})) == CameraStatus(True, "verifying")
    assert camera_status(False, None, Counter({"registering": 2})) == CameraStatus(True, "registering")
    assert camera_status(True, T0, Counter({"verifying": 1})) == CameraStatus(True, "on_duty", T0)
    assert camera_status(False, None, Counter({"verifying": 0})).on is False


def test_camera_texts_in_both_languages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's line: "off: not on duty", "on: on duty since 09:02" (local time), "on: verifying ..."."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    import time

    time.tzset()
    try:
        assert camera_text("en", CameraStatus(False, "off_duty")) == "off: not on duty"
        assert camera_text("en", CameraStatus(True, "on_duty", T0)) == "on: on duty since 09:02"
        assert camera_text("ja", CameraStatus(True, "on_duty", T0)) == "オン: 09:02 から勤務中"
        assert camera_text("en", CameraStatus(True, "on_duty")) == "on: on duty"
        assert camera_text("en", CameraStatus(True, "verifying")) == "on: verifying punch-in"
        assert camera_text("ja", CameraStatus(True, "registering")) == "オン: 顔を登録中"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


async def test_gate_wakes_on_every_change_and_forgets_unused_frame_requests() -> None:
    """Each change is seen by the next wait; a duty start is taken once; frame requests end with the use."""
    gate = CameraGate()
    assert await gate.changed(0.01) is False
    with gate.use("verifying"):
        assert await gate.changed(0.01) is True
        gate.want_frame()
        assert gate.take_frame() is True and gate.take_frame() is False
        gate.want_frame()
    assert gate.take_frame() is False  # the camera closed: the request went with it
    gate.start_duty(DutyStart(T0, "present"))
    assert (gate.status, gate.take_start(), gate.take_start()) == (
        CameraStatus(True, "on_duty", T0),
        DutyStart(T0, "present"),
        None,
    )
    gate.end_duty()
    assert gate.status == CameraStatus(False, "off_duty")


async def test_after_punch_out_no_frame_is_read_and_no_image_taken(tmp_path: Path) -> None:
    """Off duty from the start: the camera is closed at once and nothing is read. A punch-in opens it and
    the duty is watched (frames read, periodic evidence every second); after the punch-out it is closed
    again: in the next 3 s (12 frames and 3 images were due) no frame is read, no image taken, no event
    emitted, and the page says "off: not on duty"."""
    session = Recorder(settings=AgentSettings(analysis_fps=4.0, evidence_interval_s=1.0))
    pipeline = pipeline_of()
    evidence = RecordingEvidenceStore(tmp_path / "evidence", screen=None)
    taken: list[EvidenceRecord] = []
    evidence.forward = taken.append
    desk = Desk(session, pipeline, evidence, event_clock=ManualClock(T0))
    camera = StillCamera(scene_image(USER))
    images = lambda: len(taken)  # noqa: E731

    async with running_monitor(desk, camera, evidence, gated=True) as monitor:
        await wait_until(lambda: monitor.parked.is_set() and not camera.is_open, 5, what="closed at start")
        assert (camera.reads, camera.closes, images()) == (0, 1, 0)
        assert desk.status("en")["camera_status"] == {
            "on": False, "why": "off_duty", "since": None, "text": "off: not on duty"
        }  # fmt: skip

        assert (await desk.punch(PunchRequest("in"))).accepted
        assert desk.status("en")["camera_status"]["why"] == "on_duty"
        await wait_until(lambda: images() >= 2, 10, what="periodic evidence on duty")
        assert camera.reads >= 4

        assert (await desk.punch(PunchRequest("out"))).accepted
        await wait_until(lambda: monitor.parked.is_set() and not camera.is_open, 5, what="closed after duty")
        reads, shots, emitted = camera.reads, images(), len(session.emitted)
        with pytest.raises(TimeoutError):
            await wait_until(lambda: camera.reads > reads or images() > shots, 3.0, what="anything off duty")
        after = (camera.reads, images(), len(session.emitted), camera.is_open)
        assert after == (reads, shots, emitted, False)
        assert session.emitted[-1] == DutyPayload(on_duty=False, verified=True)
        assert desk.status("en")["camera_status"]["text"] == "off: not on duty"
        assert desk.status("en")["state"] is None
    periodic = [p for p in session.emitted if isinstance(p, StatePayload) and p.evidence]
    assert len(periodic) >= 1 and all(p.state == "present" for p in periodic)


async def test_refused_punch_in_shows_verifying_then_closes_the_camera(tmp_path: Path) -> None:
    """A stranger punching in: the page says "on: verifying punch-in" while the frames are checked; the
    punch is refused, the camera closed again; nothing is emitted and no image taken."""
    session = Recorder(settings=AgentSettings(analysis_fps=4.0, evidence_interval_s=1.0))
    evidence = RecordingEvidenceStore(tmp_path / "evidence", screen=None)
    taken: list[EvidenceRecord] = []
    evidence.forward = taken.append
    desk = Desk(session, pipeline_of(), evidence, verify_s=2.0)
    camera = StillCamera(scene_image(STRANGER))
    async with running_monitor(desk, camera, evidence, gated=True) as monitor:
        await wait_until(lambda: monitor.parked.is_set(), 5, what="closed at start")
        punch = asyncio.create_task(desk.punch(PunchRequest("in")))
        status = await wait_until(
            lambda: desk.status("en")["camera_status"]["why"] == "verifying" and desk.status("en"), 5
        )
        assert status["camera_status"]["text"] == "on: verifying punch-in"
        await wait_until(lambda: camera.is_open and camera.reads > 0, 5, what="the camera read")
        decision = await punch
        assert (decision.accepted, decision.reason) == (False, "mismatch")
        await wait_until(lambda: monitor.parked.is_set() and not camera.is_open, 5, what="closed again")
    assert (session.emitted, taken) == ([], [])


async def test_a_camera_that_cannot_open_refuses_the_punch_saying_why(tmp_path: Path) -> None:
    """A camera that fails to open for a punch-in: the punch is refused with "camera unavailable" and the
    reason the camera gave; nothing is emitted."""
    from agent.capture.sources import FrameSourceError

    def unplugged() -> StillCamera:
        raise FrameSourceError("cannot open camera 3: no such camera, or it is in use")

    session = Recorder()
    desk = Desk(session, pipeline_of(), verify_s=1.0)
    camera = StillCamera(scene_image(USER))
    monitor = Monitor(desk, camera, desk.pipeline, realtime=True, gate=desk.camera_gate, opener=unplugged)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        await wait_until(lambda: monitor.parked.is_set(), 5, what="closed at start")
        decision = await desk.punch(PunchRequest("in"))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert (decision.accepted, decision.reason) == (False, "camera_unavailable")
    assert decision.params["detail"] == (
        "cannot open the camera: cannot open camera 3: no such camera, or it is in use"
    )
    assert session.emitted == []


class SwitchableCamera:
    """A webcam's device side: switching opens the chosen camera (as agent.cameras.Camera does)."""

    def __init__(self) -> None:
        self.open = False
        self.switched: list[tuple[int, int, int]] = []

    def switch(self, index: int, width: int, height: int) -> dict[str, object]:
        self.open = True
        self.switched.append((index, width, height))
        return {"index": index, "width": width, "height": height}

    def close(self) -> None:
        self.open = False


def test_choosing_a_camera_off_duty_leaves_it_closed() -> None:
    """The page's camera choice opens the chosen camera to check it; off duty it is closed again at once,
    on duty it stays open for the monitor."""
    from agent.wiring import camera_switch

    camera, gate = SwitchableCamera(), CameraGate()
    switch = camera_switch(camera, gate)  # type: ignore[arg-type]
    assert switch(1, 1280, 720) == {"index": 1, "width": 1280, "height": 720}
    assert (camera.switched, camera.open) == ([(1, 1280, 720)], False)
    gate.start_duty(DutyStart(T0, "present"))
    switch(2, 640, 480)
    assert camera.open is True


async def test_real_time_reads_keep_the_rate_whatever_the_analysis_takes() -> None:
    """In real time at 4 frames/s the monitor reads on a fixed grid: 20 periods after the second read the
    22nd comes 5.0 s later (± a poll), not 5 s plus 20 analyses (a wait after the work drifted 2 fps to
    1.87)."""
    import time

    session = Recorder(settings=AgentSettings(analysis_fps=4.0))
    desk = Desk(session, pipeline_of())
    camera = StillCamera(scene_image(None))
    async with running_monitor(desk, camera):
        await wait_until(lambda: camera.reads >= 2, 10, interval=0.002, what="second frame")
        first = time.monotonic()
        await wait_until(lambda: camera.reads >= 22, 10, interval=0.002, what="22 frames")
        elapsed = time.monotonic() - first
    assert 4.9 <= elapsed <= 5.15


async def test_two_punch_ins_at_once_start_one_duty() -> None:
    """The page and the CLI punching in at the same moment: one is accepted, the other refused as already
    on duty; one duty event and one first state are emitted."""
    session = Recorder()
    desk = Desk(session, pipeline_of())
    camera = StillCamera(scene_image(USER))
    async with running_monitor(desk, camera, gated=True):
        first, second = await asyncio.gather(desk.punch(PunchRequest("in")), desk.punch(PunchRequest("in")))
    assert sorted([(first.accepted, first.reason), (second.accepted, second.reason)]) == [
        (False, "already_on_duty"),
        (True, None),
    ]
    assert [type(p) for p in session.emitted] == [DutyPayload, StatePayload]
