"""Console passwords: what a password may be (pure), and the argon2id hasher from the settings.

:func:`password_problem` names what is wrong with a new password (a code the pages translate, see
:mod:`web.i18n`), or None. :func:`make_hasher` is argon2-cffi's :class:`PasswordHasher` with the
parameters of the settings (argon2id); :func:`check` verifies a password against a stored hash
and says whether the hash should be replaced because the parameters changed since it was made.
A sign-in for a user without a password still spends one verification (:func:`spend`), so the
time it takes does not tell whether the login exists.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from core.settings import ServerSettings

MIN_LENGTH = 10  # characters of a new password
MAX_LENGTH = 256  # longer passwords are refused before any hashing (no hashing cost attack)


def password_problem(password: str, login: str = "") -> str | None:
    """Pure: ``too_short``, ``too_long``, ``control_character``, ``same_as_login`` or None (good)."""
    if len(password) > MAX_LENGTH:
        return "too_long"
    if len(password) < MIN_LENGTH:
        return "too_short"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in password):
        return "control_character"
    if login and password.casefold() == login.casefold():
        return "same_as_login"
    return None


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_kib: int
    parallelism: int


def params_of(settings: ServerSettings) -> Argon2Params:
    return Argon2Params(
        settings.web_argon2_time_cost, settings.web_argon2_memory_kib, settings.web_argon2_parallelism
    )


def make_hasher(params: Argon2Params) -> PasswordHasher:
    """argon2id with ``params`` (16-byte salts, 32-byte hashes)."""
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


@functools.cache
def _dummy_hash(params: Argon2Params) -> str:
    return make_hasher(params).hash("not a password of anyone")


def check(hasher: PasswordHasher, stored: str, password: str) -> tuple[bool, bool]:
    """(matches, needs rehash). A malformed stored hash never matches."""
    if len(password) > MAX_LENGTH:
        return False, False
    try:
        hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return True, hasher.check_needs_rehash(stored)


def spend(hasher: PasswordHasher, params: Argon2Params) -> None:
    """One verification that fails: the time of a sign-in whose user or password does not exist."""
    check(hasher, _dummy_hash(params), "x")
