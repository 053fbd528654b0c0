"""Locking the screen on an incident (``incident_action = "lock"``).

:func:`lock_plan` (pure) says how to lock on a platform with an environment and a set of
available programs: Windows ``LockWorkStation`` (user32, through ctypes); Linux
``loginctl lock-session`` inside a logind session, else the desktop's screensaver
(``xdg-screensaver lock``, ``gnome-screensaver-command -l``); otherwise no way, with the
reason. :func:`lock_screen` carries the plan out and reports what happened, so the
incident event can say whether the screen was locked, or why it could not be.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

WINDOWS = "LockWorkStation"
LOCK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LockPlan:
    """``method``: "ctypes" (Windows LockWorkStation) or "exec" (``argv``); None: cannot lock (``reason``)."""

    method: Literal["ctypes", "exec"] | None
    argv: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def possible(self) -> bool:
        return self.method is not None


@dataclass(frozen=True)
class LockResult:
    locked: bool
    method: str | None  # "LockWorkStation", "loginctl lock-session", ...
    detail: str | None = None  # why it failed / could not be tried

    def trace(self) -> dict[str, Any]:
        return {"action": "lock", "locked": self.locked, "method": self.method, "detail": self.detail}


def lock_command(
    platform: str, env: Mapping[str, str], available: Callable[[str], bool] | None = None
) -> LockPlan:
    """How to lock the screen (pure when ``available`` is given: does a program exist on PATH)."""
    if available is None:
        path = env.get("PATH")

        def available(name: str) -> bool:
            return shutil.which(name, path=path) is not None

    if platform.startswith("win"):
        return LockPlan("ctypes", (WINDOWS,))
    if not platform.startswith("linux"):
        return LockPlan(None, reason=f"screen locking is not supported on {platform}")
    graphical = bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    if env.get("XDG_SESSION_ID") and available("loginctl"):
        return LockPlan("exec", ("loginctl", "lock-session", env["XDG_SESSION_ID"]))
    if not graphical:
        return LockPlan(
            None, reason="no graphical session to lock (DISPLAY, WAYLAND_DISPLAY and XDG_SESSION_ID unset)"
        )
    if available("xdg-screensaver"):
        return LockPlan("exec", ("xdg-screensaver", "lock"))
    if available("gnome-screensaver-command"):
        return LockPlan("exec", ("gnome-screensaver-command", "-l"))
    if available("loginctl"):
        return LockPlan("exec", ("loginctl", "lock-session"))
    return LockPlan(
        None, reason="no screen locker found (loginctl, xdg-screensaver, gnome-screensaver-command)"
    )


def current_plan() -> LockPlan:
    import os

    return lock_command(sys.platform, os.environ)


def _lock_windows() -> None:
    import ctypes

    user32 = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined]
    if not user32.LockWorkStation():
        raise OSError(f"LockWorkStation failed (error {ctypes.get_last_error()})")  # type: ignore[attr-defined]


def lock_screen(plan: LockPlan | None = None, timeout_s: float = LOCK_TIMEOUT_S) -> LockResult:
    """Lock the screen now; never raises: the result says whether it worked and why not."""
    plan = plan or current_plan()
    if plan.method is None:
        return LockResult(False, None, plan.reason)
    name = " ".join(plan.argv)
    try:
        if plan.method == "ctypes":
            _lock_windows()
        else:
            done = subprocess.run(
                list(plan.argv), capture_output=True, text=True, timeout=timeout_s, check=False
            )
            if done.returncode != 0:
                detail = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
                return LockResult(False, name, f"{name} failed: {detail}")
    except (OSError, subprocess.SubprocessError) as exc:
        return LockResult(False, name, f"{name} failed: {type(exc).__name__}: {exc}")
    log.warning("screen locked", extra={"method": name})
    return LockResult(True, name)


def notify_desktop(title: str, message: str) -> bool:
    """A desktop notification where ``notify-send`` exists (Linux desktops); False when not shown."""
    program = shutil.which("notify-send")
    if program is None or not sys.platform.startswith("linux"):
        return False
    try:
        subprocess.Popen(
            [program, "--app-name=telework", title, message],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        log.info("desktop notification not shown", extra={"error": str(exc)})
        return False
    return True
