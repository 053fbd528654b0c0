"""The texts of the second factor, the second sign-in step and API tokens (:mod:`web.pages_security`,
:mod:`web.security_api`, :mod:`web.security_flows`, :mod:`web.signin`)."""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width punctuation on purpose
from web.i18n import Language

MESSAGES: dict[str, dict[Language, str]] = {
    "second_factor": {"en": "Second factor", "ja": "2段階認証"},
    "second_factor_and_tokens": {"en": "Second factor and API tokens", "ja": "2段階認証とAPIトークン"},
    "second_factor_needed": {
        "en": "The password is right; now enter the code of your authenticator app.",
        "ja": "パスワードを確認しました。認証アプリのコードを入力してください。",
    },
    "second_factor_code_title": {"en": "Enter your code", "ja": "確認コードの入力"},
    "second_factor_code_hint": {
        "en": "Enter the 6-digit code of your authenticator app, or one of your recovery codes.",
        "ja": "認証アプリに表示される6桁のコード、またはリカバリーコードを入力してください。",
    },
    "second_factor_code": {"en": "Code", "ja": "コード"},
    "second_factor_wrong_code": {
        "en": "The code is not right, or was already used.",
        "ja": "コードが正しくないか、すでに使用されています。",
    },
    "second_factor_wait_over": {
        "en": "The sign-in has expired. Sign in again.",
        "ja": "サインインの有効期限が切れました。もう一度サインインしてください。",
    },
    "second_factor_state": {"en": "State", "ja": "状態"},
    "second_factor_state_off": {"en": "Off", "ja": "無効"},
    "second_factor_state_enrolling": {"en": "Waiting for confirmation", "ja": "確認待ち"},
    "second_factor_state_on": {"en": "On", "ja": "有効"},
    "second_factor_since": {"en": "On since", "ja": "有効化日時"},
    "second_factor_recovery_left": {"en": "Recovery codes left", "ja": "残りのリカバリーコード"},
    "second_factor_explain": {
        "en": "With a second factor, signing in also asks for a code of an authenticator app (TOTP).",
        "ja": "2段階認証を有効にすると、サインイン時に認証アプリ（TOTP）のコードも求められます。",
    },
    "second_factor_begin": {"en": "Set up a second factor", "ja": "2段階認証を設定"},
    "second_factor_scan": {
        "en": "Scan this QR code with your authenticator app, or enter the key below, "
        "then confirm with a code.",
        "ja": "認証アプリでこのQRコードを読み取るか、下のキーを入力してから、コードで確認してください。",
    },
    "second_factor_secret": {"en": "Key:", "ja": "キー："},
    "second_factor_confirm": {"en": "Confirm and turn on", "ja": "確認して有効化"},
    "second_factor_recovery_once": {
        "en": "The second factor is on. Keep these recovery codes somewhere safe: each signs in once "
        "without the app. They are shown only now.",
        "ja": "2段階認証を有効にしました。リカバリーコードを安全な場所に保管してください。"
        "各コードはアプリなしで1回だけサインインに使えます。表示されるのは今回だけです。",
    },
    "second_factor_turn_off": {"en": "Turn the second factor off", "ja": "2段階認証を無効化"},
    "second_factor_off_hint": {
        "en": "Enter your password or a current code.",
        "ja": "パスワードまたは現在のコードを入力してください。",
    },
    "second_factor_turned_off": {"en": "The second factor is off.", "ja": "2段階認証を無効にしました。"},
    "second_factor_role": {
        "en": "A second factor is for administrators and managers.",
        "ja": "2段階認証は管理者とマネージャーが利用できます。",
    },
    "second_factor_already_on": {
        "en": "The second factor is already on; turn it off first.",
        "ja": "2段階認証はすでに有効です。先に無効にしてください。",
    },
    "second_factor_not_enrolling": {
        "en": "There is no second factor waiting for confirmation; set one up first.",
        "ja": "確認待ちの2段階認証はありません。先に設定を始めてください。",
    },
    "second_factor_is_off": {"en": "The second factor is already off.", "ja": "2段階認証はすでに無効です。"},
    "second_factor_reset_self": {
        "en": "You cannot reset your own second factor here: turn it off with your password or a code "
        "at /profile/second-factor.",
        "ja": "自分の2段階認証はここではリセットできません。/profile/second-factor で"
        "パスワードまたはコードを入力して無効にしてください。",
    },
    "second_factor_proof_needed": {
        "en": "Give your password or a current code.",
        "ja": "パスワードまたは現在のコードを入力してください。",
    },
    "second_factor_proof_wrong": {
        "en": "The password or code is not right.",
        "ja": "パスワードまたはコードが正しくありません。",
    },
    "second_factor_reset": {"en": "Reset the second factor", "ja": "2段階認証をリセット"},
    "second_factor_reset_hint": {
        "en": "The user signs in with the password only until they set a second factor up again.",
        "ja": "再設定するまで、このユーザーはパスワードだけでサインインします。",
    },
    "second_factor_reset_done": {"en": "The second factor was reset.", "ja": "2段階認証をリセットしました。"},
    "api_tokens": {"en": "API tokens", "ja": "APIトークン"},
    "api_token_name": {"en": "Name", "ja": "名前"},
    "api_token_expires_in_days": {
        "en": "Expires in days (empty: never; at most {days})",
        "ja": "有効日数（空欄：無期限、最大{days}日）",
    },
    "api_token_create": {"en": "Make a token", "ja": "トークンを作成"},
    "api_token_created": {"en": "Created", "ja": "作成日時"},
    "api_token_last_used": {"en": "Last used", "ja": "最終使用"},
    "api_token_expires": {"en": "Expires", "ja": "有効期限"},
    "api_token_never": {"en": "never", "ja": "未使用"},
    "api_token_no_expiry": {"en": "never", "ja": "無期限"},
    "api_token_none": {"en": "No API token.", "ja": "APIトークンはありません。"},
    "api_token_revoke": {"en": "Revoke", "ja": "失効"},
    "api_token_revoked": {"en": "The token was revoked.", "ja": "トークンを失効させました。"},
    "api_token_revoked_at": {"en": "Revoked {at}", "ja": "失効（{at}）"},
    "api_token_shown_once": {
        "en": "Token “{name}”: copy it now, it is shown only this once. Send it as "
        "“Authorization: Bearer <token>”.",
        "ja": "トークン「{name}」：今すぐコピーしてください。表示されるのは今回だけです。"
        "「Authorization: Bearer <トークン>」として送信します。",
    },
    "api_token_invalid": {
        "en": "The API token is not valid (unknown, revoked or expired, or its user is disabled).",
        "ja": "APIトークンが無効です（不明、失効、期限切れ、またはユーザーが無効）。",
    },
    "api_token_forbidden": {
        "en": "An API token cannot do this: sign in with your password.",
        "ja": "この操作はAPIトークンではできません。パスワードでサインインしてください。",
    },
    "api_token_name_length": {
        "en": "A token name needs 1 to 100 characters.",
        "ja": "トークン名は1〜100文字で入力してください。",
    },
    "api_token_name_character": {
        "en": "A token name may not contain control characters.",
        "ja": "トークン名に制御文字は使えません。",
    },
    "api_token_too_many": {
        "en": "You have {most} live tokens already; revoke one first.",
        "ja": "有効なトークンがすでに{most}個あります。先にどれかを失効させてください。",
    },
    "api_token_expiry": {
        "en": "The expiry is a whole number of days from 1 to {days}.",
        "ja": "有効日数は1〜{days}の整数で入力してください。",
    },
}
