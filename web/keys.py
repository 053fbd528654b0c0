"""Redis key names of the web console (sessions and sign-in limits). Pure.

A session is found by the sha256 of its cookie's token (the token itself is never stored), so
its key carries no tenant; a user's index of open sessions carries the tenant in a hash tag, as
every tenant key in :mod:`realtime.keys` does.
"""

from __future__ import annotations

LIMITS_PREFIX = "tw:web:limits"  # prefix of the `limits` library's moving-window keys


def session_key(token_hash: str) -> str:
    """Hash of one console session (user, tenant, credential version, CSRF token, times)."""
    return f"tw:web:session:{token_hash}"


def user_sessions_key(tenant: str, user_id: int) -> str:
    """Set of the token hashes of a user's open console sessions (sign-out everywhere)."""
    return f"tw:{{{tenant}}}:web-sessions:{user_id}"
