"""One open agent session as the gateway holds it, and the ways a session ends.

:class:`Connection` is the session's state (identity, live state, ``stored`` tracker, frame
budget); the named exceptions are how a frame handler ends the session, each turned into its
close code by :meth:`realtime.gateway.Gateway.run_session`: :class:`StoreUnavailable` (1011),
:class:`StoreFull` (1013), :class:`SessionReplaced` (4001).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from starlette.websockets import WebSocket, WebSocketDisconnect

from core.rate import Bucket
from realtime.protocol import CLOSE_STORE_UNAVAILABLE, LiveState, WireModel, clip, encode
from realtime.session import close_reason
from realtime.watermarks import StoredTracker
from storage.accounts import AgentIdentity

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0  # a push or a close to one slow session gives up after this
MAX_ERROR_LOGGED = 500  # characters of an unexpected error's message in its log line


class StoreUnavailable(RuntimeError):
    """Redis did not take a batch; the session ends and the agent resends it."""


class StoreFull(RuntimeError):
    """The tenant's stream is at capacity; the session ends (1013) and the agent retries later."""


class SessionReplaced(RuntimeError):
    """A newer session of the agent owns its live state (on any gateway); this one ends (4001)."""


@dataclass(eq=False)
class Connection:
    """One open agent session."""

    websocket: WebSocket
    session_id: str
    identity: AgentIdentity
    live: LiveState
    stored: StoredTracker = field(default_factory=StoredTracker)  # frames not yet reported stored
    budget: Bucket | None = None  # frames it may send before its reading is paced (None: unpaced)
    closed: tuple[int, str] | None = None  # the close code and reason the gateway ended it with

    @property
    def log_extra(self) -> dict[str, str]:
        return {
            "tenant": self.identity.tenant,
            "agent_id": self.identity.agent_id,
            "session_id": self.session_id,
        }

    async def send(self, frame: WireModel) -> None:
        if self.closed is not None:  # closed from another task (replaced, revoked): the session ends
            raise WebSocketDisconnect(self.closed[0], self.closed[1])
        await self.websocket.send_text(encode(frame))

    async def close(self, code: int, reason: str) -> None:
        """End the session from outside its own task: its next read sees the disconnect."""
        if self.closed is None:
            self.closed = (code, reason)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(close_websocket(self.websocket, code, reason), SEND_TIMEOUT_S)


async def close_websocket(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.close(code, close_reason(reason))


async def failed(websocket: WebSocket, log_extra: dict[str, str], exc: Exception) -> None:
    """An unexpected error while handling a frame: one log line (type and message, no traceback),
    and only this session closed, with 1011; the gateway goes on."""
    error = clip(f"{type(exc).__name__}: {exc}", MAX_ERROR_LOGGED)
    log.error("frame handling failed", extra={**log_extra, "error": error})
    await close_websocket(websocket, CLOSE_STORE_UNAVAILABLE, f"internal error ({type(exc).__name__})")
