"""Texts of the dashboards (the live board behind the console's sign-in)."""

from __future__ import annotations

from web.i18n import Language

MESSAGES: dict[str, dict[Language, str]] = {
    "dash_live": {"en": "Live board", "ja": "ライブボード"},
    "dash_console": {"en": "Console", "ja": "コンソール"},
    "dash_ended": {
        "en": "You are signed out. Sign in again to see the live board.",
        "ja": "サインアウトしました。ライブボードを見るには再度サインインしてください。",
    },
}
