"""Incident action: the per-platform lock plan, carrying it out, and what the incident event says."""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width parentheses
import sys

import pytest

from agent.desk import Desk
from agent.lock import LockPlan, lock_command, lock_screen
from realtime.protocol import AgentSettings, IncidentPayload, StatePayload
from tests.desk_world import LockRecorder, Recorder, watched_pipeline


def have(*names: str):
    return lambda name: name in names


@pytest.mark.parametrize(
    ("platform", "env", "programs", "plan"),
    [
        ("win32", {}, (), LockPlan("ctypes", ("LockWorkStation",))),
        ("linux", {"XDG_SESSION_ID": "3", "DISPLAY": ":0"}, ("loginctl", "xdg-screensaver"),
         LockPlan("exec", ("loginctl", "lock-session", "3"))),
        ("linux", {"DISPLAY": ":0"}, ("loginctl", "xdg-screensaver"),
         LockPlan("exec", ("xdg-screensaver", "lock"))),
        ("linux", {"WAYLAND_DISPLAY": "wayland-0"}, ("gnome-screensaver-command",),
         LockPlan("exec", ("gnome-screensaver-command", "-l"))),
        ("linux", {"DISPLAY": ":0"}, ("loginctl",), LockPlan("exec", ("loginctl", "lock-session"))),
        ("linux", {}, ("loginctl", "xdg-screensaver"), LockPlan(
            None, reason="no graphical session to lock (DISPLAY, WAYLAND_DISPLAY and XDG_SESSION_ID unset)")),
        ("linux", {"DISPLAY": ":0"}, (), LockPlan(
            None, reason="no screen locker found (loginctl, xdg-screensaver, gnome-screensaver-command)")),
        ("darwin", {"DISPLAY": ":0"}, (), LockPlan(None, reason="screen locking is not supported on darwin")),
    ],
)  # fmt: skip
def test_lock_command_per_platform(
    platform: str, env: dict[str, str], programs: tuple[str, ...], plan: LockPlan
) -> None:
    """Windows: LockWorkStation; Linux: loginctl in a logind session, else the desktop's screensaver."""
    assert lock_command(platform, env, have(*programs)) == plan


def test_lock_screen_reports_success_failure_and_impossibility() -> None:
    """A command exiting 0 locks; a failing one and an impossible plan say why, without raising."""
    assert lock_screen(LockPlan("exec", ("true",))).locked
    failed = lock_screen(LockPlan("exec", ("false",)))
    assert (failed.locked, failed.method, failed.detail) == (False, "false", "false failed: exit code 1")
    missing = lock_screen(LockPlan("exec", ("/nonexistent/locker",)))
    assert not missing.locked and missing.detail is not None and "FileNotFoundError" in missing.detail
    impossible = lock_screen(LockPlan(None, reason="no graphical session"))
    assert impossible.trace() == {
        "action": "lock",
        "locked": False,
        "method": None,
        "detail": "no graphical session",
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the headless case is Linux's")
def test_headless_linux_cannot_lock_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a display or logind session the real lock says it is impossible instead of failing."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_ID"):
        monkeypatch.delenv(name, raising=False)
    result = lock_screen()
    assert (result.locked, result.method) == (False, None)
    assert result.detail == "no graphical session to lock (DISPLAY, WAYLAND_DISPLAY and XDG_SESSION_ID unset)"


def _desk(action: str, locker: LockRecorder) -> tuple[Desk, Recorder]:
    session = Recorder(settings=AgentSettings.model_validate({"incident_action": action}))
    return Desk(session, watched_pipeline(), locker=locker, notifier=lambda title, message: True), session


def test_incident_with_lock_action_locks_and_says_so_in_the_event() -> None:
    """incident_action=lock: an incident start locks the screen once, its trace records it, the user gets a
    notice; the incident's end and state events pass untouched."""
    locker = LockRecorder()
    desk, session = _desk("lock", locker)
    desk.emit(IncidentPayload(kind="peeking", phase="start", trace={"rule": "peeking_after_s"}))
    desk.emit(IncidentPayload(kind="peeking", phase="end"))
    desk.emit(StatePayload(state="present"))
    start, end, state = session.emitted
    assert start.trace == {
        "rule": "peeking_after_s",
        "incident_action": {"action": "lock", "locked": True, "method": "test-locker", "detail": None},
    }
    assert (end, state) == (IncidentPayload(kind="peeking", phase="end"), StatePayload(state="present"))
    assert locker.calls == 1
    assert [n.to_json("en")["text"] for n in desk.notices] == ["Incident (peeking): the screen was locked."]


def test_incident_where_locking_fails_says_why() -> None:
    """A failed lock is in the event's trace with the reason and in a warning notice (Japanese shown)."""
    locker = LockRecorder(locked=False)
    desk, session = _desk("lock", locker)
    desk.emit(IncidentPayload(kind="impersonation", phase="start"))
    failed = {
        "action": "lock",
        "locked": False,
        "method": "test-locker",
        "detail": "test-locker failed: exit code 1",
    }
    assert session.emitted[0].trace["incident_action"] == failed
    assert desk.notices[0].to_json("ja")["text"] == (
        "インシデント（impersonation）: 画面をロックできませんでした: test-locker failed: exit code 1"
    )


def test_incident_with_log_action_does_not_lock() -> None:
    """incident_action=log (the default): no lock, the trace says log."""
    locker = LockRecorder()
    desk, session = _desk("log", locker)
    desk.emit(IncidentPayload(kind="camera_blocked", phase="start"))
    assert session.emitted[0].trace == {"incident_action": {"action": "log"}}
    assert locker.calls == 0
