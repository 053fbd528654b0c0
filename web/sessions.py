"""Console sessions, the pure part: the record, its Redis fields, and when it has expired.

A session is an opaque random token in a cookie; Redis holds the record under the token's sha256
(:mod:`web.session_store`). It ends after ``idle_s`` without a request and ``absolute_s`` after it
began, whichever comes first (:func:`expiry`), judged by an injected clock (``Clock``: seconds
since the epoch). The record carries the user's credential version at sign-in: a password change
raises the version, and a session holding an older one is ended (:mod:`web.principal`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

Clock = Callable[[], float]  # seconds since the epoch; time.time in production
TOKEN_BYTES = 32  # of a session token and of a CSRF token (256 bits)
MAX_TOKEN_CHARS = 64  # a cookie value longer than this is not one of ours (base64 of 32 bytes: 43)

Expiry = Literal["live", "idle", "absolute"]


def system_clock() -> float:
    return time.time()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """sha256 hex of a token: what Redis and the database keep instead of it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class SessionRecord:
    """One signed-in browser or API client."""

    user_id: int
    tenant: str
    version: int  # the user's credential version when the session began
    csrf: str  # the per-session CSRF token, sent back in X-CSRF-Token or a form's ``csrf`` field
    created: float
    seen: float  # the last request
    address: str  # the client address at sign-in

    def fields(self) -> dict[str, str]:
        """Pure: the Redis hash fields."""
        return {
            "user_id": str(self.user_id),
            "tenant": self.tenant,
            "version": str(self.version),
            "csrf": self.csrf,
            "created": repr(self.created),
            "seen": repr(self.seen),
            "address": self.address,
        }

    @classmethod
    def parse(cls, fields: Mapping[str, str]) -> SessionRecord | None:
        """Pure: the record of a Redis hash, or None when it is incomplete or malformed."""
        try:
            return cls(
                user_id=int(fields["user_id"]),
                tenant=fields["tenant"],
                version=int(fields["version"]),
                csrf=fields["csrf"],
                created=float(fields["created"]),
                seen=float(fields["seen"]),
                address=fields.get("address", ""),
            )
        except (KeyError, ValueError):
            return None


def expiry(record: SessionRecord, now: float, idle_s: float, absolute_s: float) -> Expiry:
    """Pure: ``live``, or why the session is over (``absolute`` wins when both are due)."""
    if now - record.created >= absolute_s:
        return "absolute"
    if now - record.seen >= idle_s:
        return "idle"
    return "live"


def csrf_matches(record: SessionRecord, sent: str | None) -> bool:
    """Pure: the request carries the session's CSRF token (compared in constant time)."""
    return sent is not None and hmac.compare_digest(record.csrf.encode(), sent.encode("utf-8", "replace"))


def plausible_token(value: str | None) -> bool:
    """Pure: a cookie value that may be one of our tokens (URL-safe base64, not too long)."""
    if not value or len(value) > MAX_TOKEN_CHARS:
        return False
    return all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in value)
