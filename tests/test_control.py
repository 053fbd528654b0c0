"""The local control channel: loopback only, per-run token in a 0600 file, and the CLI punching through it."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from agent.cameras import parse_resolution
from agent.capture.sources import FrameSourceError
from agent.client import AgentSession
from agent.config import load_monitor_config
from agent.control import CONTROL_FILE, ControlServer, read_control_file
from agent.desk import Desk
from agent.face.templates import Template
from agent.punch import Verification
from agent.run import source_of
from realtime.protocol import AgentSettings, DutyPayload, TaskPayload
from telework.cli import main
from tests.desk_world import (
    STRANGER,
    USER,
    Recorder,
    StillCamera,
    frames,
    running_monitor,
    scene_image,
    watched_pipeline,
)
from tests.waiting import wait_until


@contextlib.asynccontextmanager
async def control(tmp_path: Path, desk: Desk) -> AsyncIterator[ControlServer]:
    server = ControlServer(desk, asyncio.get_running_loop(), port=0, folder=tmp_path)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.close)


def fetch(
    server: ControlServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


async def call(
    server: ControlServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(fetch, server, method, path, body, headers)


async def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    def run() -> int:
        try:
            return main(argv)
        except SystemExit as exc:
            return int(exc.code or 0)

    code = await asyncio.to_thread(run)
    out, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if not line.startswith("ts=")]  # the agent's logs
    return code, out.strip(), "\n".join(lines)


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEWORK_AGENT_LANGUAGE", "en")


async def test_control_file_is_private_and_removed_at_close(tmp_path: Path) -> None:
    """control.json holds the loopback URL and the token, mode 0600; it goes away when the agent stops."""
    desk = Desk(Recorder(), watched_pipeline())
    async with control(tmp_path, desk) as server:
        path = tmp_path / CONTROL_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        info = read_control_file(tmp_path)
        assert (info.url, info.token) == (f"http://127.0.0.1:{server.port}", server.token)
        assert len(server.token) >= 40
        assert server.httpd.server_address[0] == "127.0.0.1"
    assert not path.exists()


async def test_requests_without_token_wrong_host_or_non_json_are_refused(tmp_path: Path) -> None:
    """No token -> 401, a foreign Host (DNS rebinding) -> 403, a form POST -> 415, a bad kind -> 400;
    nothing is punched."""
    session = Recorder()
    desk = Desk(session, watched_pipeline())
    async with control(tmp_path, desk) as server:
        auth = {"Authorization": f"Bearer {server.token}"}
        status, _, body = await call(server, "GET", "/api/status")
        expected = "missing or wrong token: open the URL telework agent page prints"
        assert (status, json.loads(body)["error"]) == (401, expected)
        status, _, _ = await call(server, "GET", "/api/status", headers={**auth, "Host": "evil.example:80"})
        assert status == 403
        form = {**auth, "Content-Type": "application/x-www-form-urlencoded"}
        status, _, _ = await call(server, "POST", "/api/punch", b"kind=in", form)
        assert status == 415
        bad = {**auth, "Content-Type": "application/json"}
        status, _, body = await call(server, "POST", "/api/punch", b'{"kind": "lunch"}', bad)
        assert status == 400
        expected = "punch kind: expected one of in, out, task_start, task_end, got 'lunch'"
        assert json.loads(body)["error"] == expected
        status, _, body = await call(server, "POST", "/api/punch", b"[1]", bad)
        assert (status, json.loads(body)["error"]) == (400, "expected a JSON object, got list")
    assert session.emitted == []


async def test_page_token_becomes_a_strict_cookie(tmp_path: Path) -> None:
    """Opening /?token= sets an HttpOnly SameSite=Strict cookie and redirects; the cookie opens the page."""
    desk = Desk(Recorder(), watched_pipeline())
    async with control(tmp_path, desk) as server:
        status, _, _ = await call(server, "GET", "/?token=wrong")
        assert status == 403
        status, headers, _ = await call(server, "GET", f"/?token={server.token}&lang=ja")
        assert (status, headers["Location"]) == (303, "/?lang=ja")
        cookie = headers["Set-Cookie"]
        assert cookie == f"tw_agent={server.token}; Path=/; HttpOnly; SameSite=Strict"
        jar = {"Cookie": cookie.split(";")[0]}
        status, headers, body = await call(server, "GET", "/?lang=ja", headers=jar)
        assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert '<html lang="ja">' in body.decode() and "勤務開始" in body.decode()


async def test_cli_punches_through_the_running_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI punches through the agent: refused with a stranger (exit 1, reason), accepted with the user
    (exit 0); a task not offered is refused, an offered one started and ended; `page` prints the URL."""
    monkeypatch.setenv("TELEWORK_AGENT_DATA_DIR", str(tmp_path))
    session = Recorder()
    desk = Desk(session, watched_pipeline(), tasks=("Design", "Review"), verify_s=1.0)
    camera = StillCamera(scene_image(STRANGER))
    async with running_monitor(desk, camera, gated=True), control(tmp_path, desk) as server:
        code, out, err = await cli(["agent", "punch", "in"], capsys)
        assert code == 1 and out == ""
        assert err.startswith("Refused: face does not match the registered user (distance 0.")
        assert err.endswith(" > 0.4)")

        camera.image = scene_image(USER)
        assert await cli(["agent", "punch", "in"], capsys) == (0, "Work started (face verified).", "")
        code, _, err = await cli(["agent", "task", "start", "Golf", "--data-dir", str(tmp_path)], capsys)
        assert (code, err) == (1, "Refused: unknown task Golf (offered: Design, Review)")
        assert await cli(["agent", "task", "start", "Design"], capsys) == (
            0, "Task started: Design (face verified).", ""
        )  # fmt: skip
        assert await cli(["agent", "task", "end"], capsys) == (0, "Task ended (face verified).", "")
        assert await cli(["agent", "page"], capsys) == (0, server.page_url, "")
    duty, first, *tasks = session.emitted
    assert (duty, first.state) == (DutyPayload(on_duty=True, verified=True), "present")
    assert tasks == [TaskPayload(task="Design"), TaskPayload(task=None)]
    assert [d.accepted for d in desk.punches] == [False, True, False, True, True]


async def test_cli_without_running_agent_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With no agent running (no control.json) the CLI exits 2 saying how to start it."""
    code, _, err = await cli(["agent", "punch", "out", "--data-dir", str(tmp_path)], capsys)
    assert code == 2
    assert err == (
        "telework agent: error: TELEWORK_AGENT_DATA_DIR: the agent is not running "
        f"(no {tmp_path / CONTROL_FILE}); start it with: telework agent --source ..."
    )


@pytest.mark.slow
async def test_cli_punch_reaches_the_gateway_as_a_verified_duty_event(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real session to a real gateway, the camera-gated monitor on a camera showing the user, the control
    channel: `telework agent punch in` puts DutyEvent(on_duty, verified) into the tenant's stream, and the
    duty's first state (present) with the same time right after it."""
    from tests.test_agent_client import FAST, running, stream_records, world

    async with world(redis_url, tmp_path) as w:
        session = AgentSession(w.gateway.url, w.token, FAST)
        desk = Desk(session, watched_pipeline())
        camera = StillCamera(scene_image(USER))
        gated = running_monitor(desk, camera, gated=True)
        async with running(session), gated, control(tmp_path / "agent", desk):
            code, out, _ = await cli(["agent", "punch", "in", "--data-dir", str(tmp_path / "agent")], capsys)
            assert (code, out) == (0, "Work started (face verified).")
            async with asyncio.timeout(15):
                await session.wait_acked()

        async def stored() -> list[Any]:
            return [r.event for r in await stream_records(aredis, w.tenant)]

        duty, first = await wait_until(stored, 10, what="duty and state events in the stream")
        assert duty.payload == DutyPayload(on_duty=True, verified=True)
        assert (first.type, first.payload.state, first.seq, first.ts) == (
            "state",
            "present",
            duty.seq + 1,
            duty.ts,
        )


async def test_face_registration_from_the_page_needs_the_current_user(tmp_path: Path) -> None:
    """POST /api/register: refused while a stranger is in view (the template stays); with the user in view
    the next frames that pass the quality gate become the new template, saved and used at once."""
    pipeline = watched_pipeline()
    template_path = tmp_path / "me.json"
    recorder = Recorder(settings=AgentSettings(analysis_fps=5.0))
    desk = Desk(recorder, pipeline, template_path=template_path, verify_s=1.0)
    camera = StillCamera(scene_image(STRANGER))
    async with running_monitor(desk, camera), control(tmp_path, desk) as server:
        auth = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
        await wait_until(lambda: pipeline.latest is not None, 10, what="a frame")
        status, _, body = await call(server, "POST", "/api/register?lang=en", b'{"count": 2}', auth)
        reply = json.loads(body)
        assert (status, reply["ok"], reply["reason"]) == (409, False, "mismatch")
        assert reply["message"].startswith("Face not registered: face does not match the registered user")
        assert not template_path.exists()

        camera.image = scene_image(None)

        def seen() -> Verification:
            return pipeline.verification() or Verification(0, camera=False)

        await wait_until(lambda: seen().camera and not seen().distances, 10, what="nobody in view")
        camera.image = scene_image(USER)
        await wait_until(lambda: seen().best is not None, 10, what="the user in view")
        status, _, body = await call(server, "POST", "/api/register?lang=en", b'{"count": 2}', auth)
        registered = {"ok": True, "count": 2, "message": "Face registered from 2 image(s)."}
        assert (status, json.loads(body)) == (200, registered)
        saved = Template.load(template_path)
        assert (saved.engine, len(saved.embeddings)) == ("dlib", 2)
        before = frames(pipeline)
        await wait_until(lambda: frames(pipeline) > before, 10, what="a frame with the new template")
        fresh = await asyncio.to_thread(pipeline.verify_latest)
        assert fresh is not None and fresh.best is not None and fresh.best < 0.05  # the same composed face


async def test_camera_choice_needs_a_webcam_and_checks_its_input(tmp_path: Path) -> None:
    """Choosing a camera: refused (409) when the source is not a webcam, 400 for a bad index or resolution,
    409 naming the camera that cannot be opened; GET /api/cameras lists what OpenCV finds."""
    desk = Desk(Recorder(), watched_pipeline())
    async with control(tmp_path, desk) as server:
        auth = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}

        async def choose(body: dict[str, object]) -> tuple[int, str]:
            status, _, reply = await call(server, "POST", "/api/camera", json.dumps(body).encode(), auth)
            return status, json.loads(reply)["error"]

        assert await choose({"index": 0}) == (409, "choosing a camera needs --source webcam (or --camera)")
        opened: list[tuple[int, int, int]] = []

        def switch(index: int, width: int, height: int) -> dict[str, object]:
            opened.append((index, width, height))
            raise FrameSourceError(f"cannot open camera {index}: no such camera, or it is in use")

        desk.switch_camera = switch
        assert await choose({"index": "one"}) == (400, "index: expected a camera index 0 to 63, got 'one'")
        assert await choose({"index": 1, "resolution": "big"}) == (
            400, "resolution: expected WIDTHxHEIGHT such as 640x480, got 'big'"
        )  # fmt: skip
        assert await choose({"index": 7, "resolution": "1280x720"}) == (
            409, "cannot open camera 7: no such camera, or it is in use"
        )  # fmt: skip
        assert opened == [(7, 1280, 720)]
        status, _, body = await call(server, "GET", "/api/cameras", headers=auth)
        assert status == 200 and set(json.loads(body)) == {"cameras", "current"}


def test_camera_flags_resolve_to_a_webcam_source() -> None:
    """--camera N alone means webcam:N, picks the index of --source webcam, and leaves other sources alone;
    resolutions parse as WIDTHxHEIGHT."""

    def source(**kw: object) -> str:
        return source_of(load_monitor_config({}, **kw))

    assert source(agent_camera=2) == "webcam:2"
    assert source(agent_camera=1, agent_source="webcam") == "webcam:1"
    assert source(agent_camera=1, agent_source="scene:demo") == "scene:demo"
    assert parse_resolution(" 1280 x 720 ") == (1280, 720)
    with pytest.raises(ValueError, match="expected 16x16 to 7680x4320, got 9999x10"):
        parse_resolution("9999x10")


async def test_off_duty_the_page_gets_no_preview_and_says_the_camera_is_off(tmp_path: Path) -> None:
    """Off duty (the camera closed) /preview.jpg answers 404 saying the camera is off, even with a frame
    left from before, and /api/status says "off: not on duty" with no state."""
    pipeline = watched_pipeline()
    desk = Desk(Recorder(), pipeline)
    pipeline.process(0.0, scene_image(USER))  # a frame analysed before the camera closed
    async with control(tmp_path, desk) as server:
        auth = {"Authorization": f"Bearer {server.token}"}
        status, _, body = await call(server, "GET", "/preview.jpg", headers=auth)
        assert (status, json.loads(body)) == (404, {"error": "the camera is off: not on duty"})
        status, _, body = await call(server, "GET", "/api/status?lang=en", headers=auth)
        reply = json.loads(body)
        assert (status, reply["state"], reply["state_text"]) == (200, None, "Not watched (off duty)")
        assert reply["camera_status"] == {
            "on": False,
            "why": "off_duty",
            "since": None,
            "text": "off: not on duty",
        }
