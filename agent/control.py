"""The running agent's local control channel: a small HTTP/JSON API on 127.0.0.1, and its client.

Used by ``telework agent punch|task|page`` and by the local page (:mod:`agent.local_page`).
It binds the loopback interface only, and every request must carry the per-run token
(random, written with mode 0600 to ``control.json`` in the agent's data folder, with the
URL): as ``Authorization: Bearer <token>`` (the CLI) or as the page's cookie, set when the
page is opened once with ``?token=`` (the URL ``telework agent page`` prints). The cookie is
``SameSite=Strict`` and POSTs must be JSON, so other sites cannot punch through the browser;
the ``Host`` header must name the loopback address (no DNS rebinding).

API (JSON): ``GET /api/status?lang=``; ``POST /api/punch {"kind": "in"|"out"|"task_start"|
"task_end", "task": NAME}``; ``POST /api/register {"count": N}``; ``GET /preview.jpg``;
``GET /evidence/<sha256>.jpg`` (the last evidence only). Handlers run in the HTTP threads
and hand their work to the agent's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from agent.cameras import list_cameras, parse_resolution
from agent.capture.sources import FrameSourceError
from agent.desk import Desk
from agent.i18n import language_of, pick_language, reason_text, text
from agent.local_page import page_html
from agent.punch import parse_request
from agent.watch import render_preview

log = logging.getLogger(__name__)

CONTROL_FILE = "control.json"
COOKIE = "tw_agent"
LOOPBACK = "127.0.0.1"
MAX_BODY = 16 * 1024
SHA256 = re.compile(r"^[0-9a-f]{64}$")
T = TypeVar("T")


class ControlError(RuntimeError):
    """The running agent cannot be reached through its control channel (message says why)."""


# ------------------------------------------------------------------ control file


def write_control_file(folder: Path, url: str, token: str) -> Path:
    """``control.json`` with the URL and token, readable by its owner only (0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CONTROL_FILE
    temporary = folder / (CONTROL_FILE + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"url": url, "token": token, "pid": os.getpid()}, out)
    temporary.replace(target)
    return target


@dataclass(frozen=True)
class ControlInfo:
    url: str
    token: str


def read_control_file(folder: Path) -> ControlInfo:
    path = folder / CONTROL_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ControlInfo(str(data["url"]), str(data["token"]))
    except FileNotFoundError:
        raise ControlError(
            f"the agent is not running (no {path}); start it with: telework agent --source ..."
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ControlError(f"cannot read {path}: {exc}") from None


def request(
    folder: Path, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0
) -> tuple[int, dict[str, Any]]:
    """Call the running agent's API; (HTTP status, JSON reply). ControlError when it cannot be reached."""
    info = read_control_file(folder)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(info.url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {info.token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"error": exc.reason}
    except (urllib.error.URLError, OSError) as exc:
        raise ControlError(f"the agent does not answer at {info.url} ({exc}); is it still running?") from None


# ------------------------------------------------------------------------ server


class ControlServer:
    """The HTTP server of one running agent, in a background thread; :meth:`close` stops it."""

    def __init__(
        self,
        desk: Desk,
        loop: asyncio.AbstractEventLoop,
        port: int = 0,
        folder: Path | None = None,
        token: str | None = None,
    ) -> None:
        self.desk = desk
        self.loop = loop
        self.token = token or secrets.token_urlsafe(32)
        try:
            self.httpd = ThreadingHTTPServer((LOOPBACK, port), _handler_for(self))
        except OSError as exc:
            if port == 0:
                raise
            log.error("local page port in use; using a free port", extra={"port": port, "error": str(exc)})
            self.httpd = ThreadingHTTPServer((LOOPBACK, 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.folder = folder
        self.control_file = write_control_file(folder, self.url, self.token) if folder is not None else None
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="agent-control", daemon=True)
        self._thread.start()
        log.info("local page", extra={"url": self.url, "control_file": str(self.control_file)})

    @property
    def page_url(self) -> str:
        return f"{self.url}/?token={self.token}"

    def on_loop(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the agent's event loop and wait for its result (from an HTTP thread)."""
        future: Future[T] = Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiting thread
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(call)
        return future.result(timeout)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.control_file is not None:
            try:
                if read_control_file(self.control_file.parent).token == self.token:
                    self.control_file.unlink()
            except (ControlError, OSError):
                pass


def _handler_for(server: ControlServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        control = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    control: ControlServer
    server_version = "telework-agent"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control %s", format % args)

    # ------------------------------------------------------------------ checks

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").lower()
        return host in (f"{LOOPBACK}:{self.control.port}", f"localhost:{self.control.port}")

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        return cookie[COOKIE].value if COOKIE in cookie else None

    def _authorised(self) -> bool:
        given = self._token()
        return given is not None and hmac.compare_digest(given.encode(), self.control.token.encode())

    def _lang(self, query: dict[str, list[str]]) -> str:
        if "lang" in query:
            return language_of(query["lang"][0])
        return pick_language(self.headers.get("Accept-Language"), language_of(self.control.desk.language))

    # ----------------------------------------------------------------- replies

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    # ------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if not self._host_ok():
            return self._error(
                HTTPStatus.FORBIDDEN, "Host must be 127.0.0.1 or localhost with the agent's port"
            )
        if url.path == "/" and "token" in query:
            if not hmac.compare_digest(query["token"][0].encode(), self.control.token.encode()):
                return self._error(
                    HTTPStatus.FORBIDDEN, "wrong token: use the URL telework agent page prints"
                )
            lang = f"?lang={language_of(query['lang'][0])}" if "lang" in query else ""
            cookie = f"{COOKIE}={self.control.token}; Path=/; HttpOnly; SameSite=Strict"
            return self._send(
                HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": "/" + lang, "Set-Cookie": cookie}
            )
        if not self._authorised():
            return self._error(
                HTTPStatus.UNAUTHORIZED, "missing or wrong token: open the URL telework agent page prints"
            )
        desk = self.control.desk
        if url.path == "/":
            lang = self._lang(query)
            return self._send(HTTPStatus.OK, page_html(lang).encode(), "text/html; charset=utf-8")
        if url.path == "/api/status":
            lang = self._lang(query)
            return self._json(HTTPStatus.OK, self.control.on_loop(lambda: desk.status(lang)))
        if url.path == "/api/cameras":
            cameras = [vars(c) for c in list_cameras()]
            return self._json(
                HTTPStatus.OK, {"cameras": cameras, "current": desk.camera() if desk.camera else None}
            )
        if url.path == "/preview.jpg":
            camera = self.control.on_loop(lambda: desk.camera_gate.status)
            snapshot = desk.pipeline.latest if camera.on else None
            data = None if snapshot is None else render_preview(snapshot, desk.pipeline.threshold())
            if data is None:
                why = "no camera frame yet" if camera.on else "the camera is off: not on duty"
                return self._error(HTTPStatus.NOT_FOUND, why)
            return self._send(HTTPStatus.OK, data, "image/jpeg")
        match = re.fullmatch(r"/evidence/([0-9a-f]{64})\.jpg", url.path)
        if match:
            return self._evidence(match.group(1))
        return self._error(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    def _evidence(self, sha: str) -> None:
        store = self.control.desk.evidence
        record = store.last if store is not None else None
        if store is None or record is None or sha not in record.sha256s:
            return self._error(HTTPStatus.NOT_FOUND, "only the last evidence is shown")
        try:
            data = store.path_of(sha).read_bytes()
        except OSError as exc:
            return self._error(HTTPStatus.NOT_FOUND, f"evidence image not readable: {exc}")
        return self._send(HTTPStatus.OK, data, "image/jpeg")

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if not self._host_ok():
            return self._error(
                HTTPStatus.FORBIDDEN, "Host must be 127.0.0.1 or localhost with the agent's port"
            )
        if not self._authorised():
            return self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong token")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "expected Content-Type: application/json")
        body = self._body()
        if body is None:
            return None
        lang = self._lang(query)
        if url.path == "/api/punch":
            return self._punch(body, lang)
        if url.path == "/api/register":
            return self._register(body, lang)
        if url.path == "/api/camera":
            return self._camera(body)
        return self._error(HTTPStatus.NOT_FOUND, f"no such action: {url.path}")

    def _body(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._error(HTTPStatus.BAD_REQUEST, f"expected a JSON body of at most {MAX_BODY} bytes")
            return None
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}")
            return None
        if not isinstance(data, dict):
            self._error(HTTPStatus.BAD_REQUEST, f"expected a JSON object, got {type(data).__name__}")
            return None
        return data

    def _punch(self, body: dict[str, Any], lang: str) -> None:
        task = body.get("task")
        try:
            req = parse_request(str(body.get("kind")), task if isinstance(task, str) else None)
        except ValueError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        desk = self.control.desk
        decision = asyncio.run_coroutine_threadsafe(desk.punch(req), self.control.loop).result(30)
        reply = {**decision.to_json(), "message": desk.describe(decision, lang)}
        return self._json(HTTPStatus.OK if decision.accepted else HTTPStatus.CONFLICT, reply)

    def _register(self, body: dict[str, Any], lang: str) -> None:
        count = body.get("count", 3)
        if not isinstance(count, int) or not 1 <= count <= 10:
            return self._error(HTTPStatus.BAD_REQUEST, f"count: expected an integer 1 to 10, got {count!r}")
        desk = self.control.desk
        future = asyncio.run_coroutine_threadsafe(desk.register(count), self.control.loop)
        result = future.result(60)
        if result["ok"]:
            result["message"] = text(lang, "registered", count=result["count"])
            return self._json(HTTPStatus.OK, result)
        reason = reason_text(lang, result["reason"], result.get("params", {}))
        result["message"] = text(lang, "register_failed", reason=reason)
        return self._json(HTTPStatus.CONFLICT, result)

    def _camera(self, body: dict[str, Any]) -> None:
        desk = self.control.desk
        if desk.switch_camera is None:
            return self._error(HTTPStatus.CONFLICT, "choosing a camera needs --source webcam (or --camera)")
        index = body.get("index")
        if not isinstance(index, int) or not 0 <= index <= 63:
            return self._error(
                HTTPStatus.BAD_REQUEST, f"index: expected a camera index 0 to 63, got {index!r}"
            )
        try:
            width, height = parse_resolution(str(body.get("resolution", "640x480")))
            properties = desk.switch_camera(index, width, height)
        except ValueError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except FrameSourceError as exc:
            return self._error(HTTPStatus.CONFLICT, str(exc))
        return self._json(HTTPStatus.OK, {"camera": properties})
