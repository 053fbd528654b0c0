"""What every request handler of the console shares: settings, database, Redis, clock, limits, hasher.

One :class:`Console` per application (``app.state.console``), made by :func:`web.app.create_app`.
The session cookie is ``__Host-tw_session`` (Secure, HttpOnly, SameSite=Lax, Path=/, no Domain)
when the console is served over TLS (``TELEWORK_WEB_SECURE_COOKIE``); browsers refuse a
``__Host-`` cookie without Secure, so over plain HTTP (loopback development) it is ``tw_session``
with the same other attributes.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from core.settings import ServerSettings
from web.passwords import Argon2Params, make_hasher, params_of
from web.ratelimit import SignInLimits
from web.sessions import Clock, system_clock

SESSION_COOKIE = "tw_session"
PRE_COOKIE = "tw_pre"  # the sign-in form's double-submit token (login CSRF), before any session


def cookie_name(base: str, secure: bool) -> str:
    """Pure: ``__Host-`` + ``base`` over TLS, ``base`` over plain HTTP."""
    return f"__Host-{base}" if secure else base


@dataclass
class Console:
    settings: ServerSettings
    engine: Engine
    redis: aioredis.Redis
    clock: Clock = system_clock
    params: Argon2Params = field(init=False)
    hasher: PasswordHasher = field(init=False)
    limits: SignInLimits = field(init=False)
    hash_slots: asyncio.Semaphore = field(init=False)  # argon2 computations at once: one per CPU
    reader: Engine = field(init=False)  # ``engine`` in autocommit: a read of one request, no BEGIN/ROLLBACK

    def __post_init__(self) -> None:
        self.params = params_of(self.settings)
        self.hasher = make_hasher(self.params)
        self.hash_slots = asyncio.Semaphore(os.cpu_count() or 2)
        # the same pool; a read-only lookup (the principal of every request) saves two round trips
        self.reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.limits = SignInLimits(
            self.redis,
            window_s=self.settings.web_fail_window_s,
            per_account=self.settings.web_fails_per_account,
            per_address=self.settings.web_fails_per_address,
            per_account_total=self.settings.web_fails_per_account_total,
        )

    @property
    def session_cookie(self) -> str:
        return cookie_name(SESSION_COOKIE, self.settings.web_secure_cookie)

    @property
    def pre_cookie(self) -> str:
        return cookie_name(PRE_COOKIE, self.settings.web_secure_cookie)

    def cookie_options(self) -> dict[str, object]:
        """The attributes of every cookie the console sets."""
        return {"httponly": True, "secure": self.settings.web_secure_cookie, "samesite": "lax", "path": "/"}
