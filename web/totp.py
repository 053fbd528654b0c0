"""TOTP second factor, the pure part: secrets, codes (RFC 6238), the otpauth URI, its QR, recovery codes.

A secret is 160 random bits in base32 (:func:`new_secret`); a code is the 6-digit HOTP of the
30-second time step (SHA-1, as every authenticator app does). :func:`accepted_step` accepts a
code of the current step or one step either side (clock drift), but only for a step later than
the last one accepted: a code is used once (replay refused). :func:`parse_code` and
:func:`parse_recovery_code` turn typed text into a canonical code or None. Recovery codes carry
80 random bits (16 base32 characters shown as four groups) and are stored as their sha256 only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import pyotp
import segno

DIGITS = 6
STEP_S = 30
DRIFT_STEPS = 1  # steps accepted either side of the current one
ISSUER = "Telework Supporter"
RECOVERY_CODES = 10
RECOVERY_GROUPS = 4
RECOVERY_GROUP_CHARS = 4
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
MAX_INPUT = 64  # characters of typed code text looked at; longer is not a code

_CODE = re.compile(r"[0-9]{6}")
_SEPARATORS = re.compile(r"[ \-]")


def new_secret() -> str:
    """A fresh TOTP secret: 160 random bits, base32 (32 characters)."""
    return pyotp.random_base32(32)


def step_of(now: float) -> int:
    """The RFC 6238 time step of ``now`` (seconds since the epoch)."""
    return int(now // STEP_S)


def code_at(secret: str, step: int) -> str:
    """The code of ``secret`` for time step ``step``."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).generate_otp(step)


def parse_code(text: str) -> str | None:
    """The 6 ASCII digits of a typed code (spaces and hyphens between them allowed), or None."""
    if len(text) > MAX_INPUT:
        return None
    compact = _SEPARATORS.sub("", text.strip())
    return compact if _CODE.fullmatch(compact) else None


def accepted_step(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to (current one, or one either side), if later than ``last_step``.

    None: not a code of ``secret`` now, or a step already used (a replayed code)."""
    parsed = parse_code(code)
    if parsed is None:
        return None
    current = step_of(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(code_at(secret, step).encode(), parsed.encode()):
            return step
    return None


def otpauth_uri(secret: str, tenant: str, login: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (label ``tenant:login``)."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    return totp.provisioning_uri(name=f"{tenant}:{login}", issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """An inline SVG QR code of ``uri``: no script, no style attribute, no external reference."""
    return str(segno.make(uri, error="m", micro=False).svg_inline(scale=4, title="QR"))


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Fresh recovery codes, shown as ``ABCD-EFGH-IJKL-MNOP`` (80 random bits each)."""
    size = RECOVERY_GROUPS * RECOVERY_GROUP_CHARS
    out = []
    for _ in range(count):
        raw = "".join(secrets.choice(BASE32) for _ in range(size))
        out.append("-".join(raw[i : i + RECOVERY_GROUP_CHARS] for i in range(0, size, RECOVERY_GROUP_CHARS)))
    return out


def parse_recovery_code(text: str) -> str | None:
    """The canonical form (16 upper-case base32 characters) of a typed recovery code, or None."""
    if len(text) > MAX_INPUT:
        return None
    compact = _SEPARATORS.sub("", text.strip()).upper()
    size = RECOVERY_GROUPS * RECOVERY_GROUP_CHARS
    if len(compact) != size or any(ch not in BASE32 for ch in compact):
        return None
    return compact


def recovery_hash(code: str) -> str | None:
    """sha256 hex of a recovery code's canonical form (what is stored), or None if it is not one."""
    canonical = parse_recovery_code(code)
    return None if canonical is None else hashlib.sha256(canonical.encode("ascii")).hexdigest()
