"""Every text of the web console, in Japanese and English, in one table. Pure.

:func:`language_for` chooses: the signed-in user's language; before sign-in, ``?lang=`` or the
browser's ``Accept-Language``, else Japanese (a tenant in Asia/Tokyo is the common case, and a
user's language defaults to ``ja``). :func:`text` formats one message. Every key exists in both
languages (``tests/test_web_pure.py``).

Each console area keeps its own texts in a module ``web/texts_<area>.py`` holding one
``MESSAGES`` dict of the same shape, named in :data:`PARTS`; they are merged into
:data:`MESSAGES` here, and a key defined twice stops the import.
"""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width punctuation on purpose
import importlib
from typing import Literal

Language = Literal["ja", "en"]
LANGUAGES: tuple[Language, ...] = ("ja", "en")
DEFAULT_LANGUAGE: Language = "ja"

CORE: dict[str, dict[Language, str]] = {
    "app": {"en": "Telework Supporter", "ja": "テレワークサポーター"},
    "sign_in": {"en": "Sign in", "ja": "サインイン"},
    "sign_out": {"en": "Sign out", "ja": "サインアウト"},
    "sign_out_everywhere": {"en": "Sign out everywhere", "ja": "すべての端末からサインアウト"},
    "tenant": {"en": "Organisation ID", "ja": "組織ID"},
    "login": {"en": "Login", "ja": "ログインID"},
    "password": {"en": "Password", "ja": "パスワード"},
    "sign_in_failed": {
        "en": "The organisation, login or password is not right.",
        "ja": "組織ID、ログインIDまたはパスワードが正しくありません。",
    },
    "too_many": {
        "en": "Too many failed sign-ins. Try again in {seconds} seconds.",
        "ja": "サインインの失敗が多すぎます。{seconds}秒後にもう一度お試しください。",
    },
    "not_signed_in": {"en": "Sign in first.", "ja": "先にサインインしてください。"},
    "signed_out": {"en": "You are signed out.", "ja": "サインアウトしました。"},
    "users": {"en": "Users", "ja": "ユーザー"},
    "search": {"en": "Search", "ja": "検索"},
    "no_users": {"en": "No user matches.", "ja": "該当するユーザーはいません。"},
    "name": {"en": "Name", "ja": "氏名"},
    "role": {"en": "Role", "ja": "役割"},
    "role_admin": {"en": "Administrator", "ja": "管理者"},
    "role_manager": {"en": "Manager", "ja": "マネージャー"},
    "role_worker": {"en": "Worker", "ja": "テレワーカー"},
    "enabled": {"en": "Enabled", "ja": "有効"},
    "disabled": {"en": "Disabled", "ja": "無効"},
    "groups": {"en": "Groups", "ja": "グループ"},
    "language": {"en": "Language", "ja": "言語"},
    "time_zone": {"en": "Time zone", "ja": "タイムゾーン"},
    "tenant_default": {"en": "the organisation's ({zone})", "ja": "組織の設定（{zone}）"},
    "profile": {"en": "Profile", "ja": "プロフィール"},
    "save": {"en": "Save", "ja": "保存"},
    "saved": {"en": "Saved.", "ja": "保存しました。"},
    "current_password": {"en": "Current password", "ja": "現在のパスワード"},
    "new_password": {"en": "New password", "ja": "新しいパスワード"},
    "change_password": {"en": "Change password", "ja": "パスワードを変更"},
    "password_changed": {
        "en": "Password changed. Your other sessions have ended.",
        "ja": "パスワードを変更しました。ほかのセッションは終了しました。",
    },
    "wrong_password": {
        "en": "The current password is not right.",
        "ja": "現在のパスワードが正しくありません。",
    },
    "too_short": {
        "en": "The password needs at least 10 characters.",
        "ja": "パスワードは10文字以上必要です。",
    },
    "too_long": {
        "en": "The password may have at most 256 characters.",
        "ja": "パスワードは256文字までです。",
    },
    "control_character": {
        "en": "The password may not contain control characters.",
        "ja": "パスワードに制御文字は使えません。",
    },
    "same_as_login": {
        "en": "The password may not be the login.",
        "ja": "ログインIDと同じパスワードは使えません。",
    },
    "bad_value": {"en": "This value cannot be used: {reason}", "ja": "この値は使えません：{reason}"},
    "setup": {"en": "Set your password", "ja": "パスワードの設定"},
    "setup_code": {"en": "Set-up code", "ja": "設定コード"},
    "setup_done": {
        "en": "Your password is set. You can sign in now.",
        "ja": "パスワードを設定しました。サインインできます。",
    },
    "setup_invalid": {
        "en": "This set-up link is not valid (used, expired or mistyped). "
        "Ask your administrator for a new one.",
        "ja": "この設定リンクは無効です（使用済み・期限切れ・入力誤り）。"
        "管理者に新しいリンクを依頼してください。",
    },
    "not_found": {"en": "Not found.", "ja": "見つかりません。"},
    "forbidden": {"en": "You may not do this.", "ja": "この操作は許可されていません。"},
    "csrf": {
        "en": "The form has expired. Reload the page and try again.",
        "ja": "フォームの有効期限が切れました。ページを再読み込みしてやり直してください。",
    },
    "too_large": {"en": "The request is too large.", "ja": "リクエストが大きすぎます。"},
    "back": {"en": "Back", "ja": "戻る"},
}

PARTS: tuple[str, ...] = (  # modules with the texts of one console area each (``web.texts_devices``)
    "web.texts_users",
    "web.texts_devices",
    "web.texts_dashboards",
    "web.texts_settings",
    "web.texts_faces",
    "web.texts_schedules",
    "web.texts_security",
)


def merged(tables: list[dict[str, dict[Language, str]]]) -> dict[str, dict[Language, str]]:
    """Pure: one table from several; a key in two of them is an error naming it."""
    out: dict[str, dict[Language, str]] = {}
    for table in tables:
        for key, texts in table.items():
            if key in out:
                raise ValueError(f"console text {key!r} is defined twice")
            out[key] = texts
    return out


MESSAGES: dict[str, dict[Language, str]] = merged(
    [CORE, *(importlib.import_module(name).MESSAGES for name in PARTS)]
)


def pick(value: str | None) -> Language | None:
    """Pure: ``ja`` or ``en`` for a language tag (``en-GB`` -> en), else None."""
    if not value:
        return None
    base = value.strip().split("-")[0].split("_")[0].lower()
    for language in LANGUAGES:
        if base == language:
            return language
    return None


def from_accept_language(header: str | None) -> Language | None:
    """Pure: the first of ja/en in an ``Accept-Language`` header, by its q-weights."""
    if not header:
        return None
    ranked: list[tuple[float, int, Language]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.partition(";")
        language = pick(tag)
        if language is None:
            continue
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if weight > 0:
            ranked.append((-weight, index, language))
    return min(ranked)[2] if ranked else None


def language_for(user_language: str | None, query: str | None, accept: str | None) -> Language:
    """Pure: the user's language when signed in; else ``?lang=``, the browser's choice, Japanese."""
    return pick(user_language) or pick(query) or from_accept_language(accept) or DEFAULT_LANGUAGE


def text(key: str, language: Language, **values: object) -> str:
    """The message ``key`` in ``language``, with ``values`` filled in."""
    message = MESSAGES[key][language]
    return message.format(**values) if values else message
