"""Pure checks of account values (tenants, users, agents): what an id, a login, a name, a time zone may be.

Every entry point that stores one of these values (creation and update, from the command line or
a library caller) passes it through here, so a bad value is refused with the same message
everywhere, naming what was expected and what arrived. :class:`AccountError` is the one error
of account requests.
"""

from __future__ import annotations

import functools
import unicodedata
import zoneinfo

from core.errors import OperatorError
from core.ids import SLUG_RE
from storage.models import LANGUAGES, ROLES

MAX_NAME = 200  # characters of a tenant's or a user's display name
MAX_LOGIN = 120  # as the tw_user.login column allows
MAX_TIME_ZONE = 64  # as the tw_user.time_zone column allows
NOT_ZONES = frozenset({"localtime", "posixrules"})  # files in the zone folder that are not IANA names
# Characters that change how text is shown without being visible (Unicode bidirectional controls;
# U+2028/U+2029 break lines): refused with the control characters, so a name shows as it is.
# Control, surrogate, private-use, unassigned and format (Cf: zero-width space and joiners, soft
# hyphen, BOM, bidi controls ...) characters.
REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn", "Cf"})
INVISIBLE = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


class AccountError(OperatorError, ValueError):
    """A request to create or change an account cannot be carried out."""


def slug(kind: str, value: str) -> str:
    """A tenant or agent id: lowercase letters, digits, '-' and '_', 1-63 long, not starting with - or _."""
    if not SLUG_RE.fullmatch(value):  # fullmatch: `$` alone would let a final newline through
        raise AccountError(
            f"{kind}: expected lowercase letters, digits, '-' or '_' (1-63 chars), got {value!r}"
        )
    return value


def refused_character(value: str) -> str | None:
    """``U+XXXX`` of the first control, unassigned, format or invisible character in ``value``, else None."""
    for ch in value:
        if unicodedata.category(ch) in REFUSED_CATEGORIES or ch in INVISIBLE:
            return f"U+{ord(ch):04X}"
    return None


def _character_refusal(kind: str, bad: str, value: str) -> AccountError:
    """The refusal of ``value`` for its character ``bad`` (``U+XXXX``): a format character (zero-width
    space, joiner, soft hyphen, BOM ...) is named, as nothing shows it."""
    ch = chr(int(bad[2:], 16))
    if unicodedata.category(ch) == "Cf" and ch not in INVISIBLE:
        name = unicodedata.name(ch, "a format character")
        return AccountError(
            f"{kind}: expected no invisible (format) characters, got {bad} {name} in {value!r}"
        )
    return AccountError(f"{kind}: expected no control characters, got {bad} in {value!r}")


def display_name(kind: str, value: str) -> str:
    """A display name, stripped: 1-200 characters, no control (NUL, newline ...) or invisible ones."""
    clean = value.strip()
    if not 1 <= len(clean) <= MAX_NAME:  # first: a huge value is refused without being scanned
        raise AccountError(f"{kind}: expected 1-{MAX_NAME} characters, got {len(clean)}")
    bad = refused_character(clean)
    if bad is not None:
        raise _character_refusal(kind, bad, value)
    return clean


def login(value: str) -> str:
    """A login: 1-120 characters, no whitespace, control or invisible characters (case kept)."""
    if not 1 <= len(value) <= MAX_LOGIN:
        raise AccountError(f"login: expected 1-{MAX_LOGIN} characters, got {len(value)}")
    bad = refused_character(value)
    if bad is not None:
        raise _character_refusal("login", bad, value)
    if any(ch.isspace() for ch in value):
        raise AccountError(f"login: expected no spaces, got {value!r}")
    return value


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def time_zone(value: str) -> str:
    """An IANA time zone name the server's zone database knows (``Asia/Tokyo``, ``UTC``), exactly."""
    expected = "time zone: expected an IANA time zone name such as Asia/Tokyo or UTC"
    if len(value) > MAX_TIME_ZONE:  # not echoed: a line of that length helps no one
        raise AccountError(f"{expected}, got {len(value)} characters")
    if value not in _zones():
        raise AccountError(f"{expected}, got {value!r}")
    return value


def role(value: str) -> str:
    if value not in ROLES:
        raise AccountError(f"role: expected one of {', '.join(ROLES)}, got {value!r}")
    return value


def language(value: str) -> str:
    if value not in LANGUAGES:
        raise AccountError(f"language: expected one of {', '.join(LANGUAGES)}, got {value!r}")
    return value
