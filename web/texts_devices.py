"""The texts of the console's devices pages and answers (:mod:`web.pages_devices`, :mod:`web.api_devices`)."""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width punctuation on purpose
from web.i18n import Language

MESSAGES: dict[str, dict[Language, str]] = {
    "devices": {"en": "Devices", "ja": "端末"},
    "devices_id": {"en": "Device ID", "ja": "端末ID"},
    "devices_name": {"en": "Name", "ja": "名前"},
    "devices_user": {"en": "User", "ja": "ユーザー"},
    "devices_user_login": {"en": "User's login", "ja": "ユーザーのログインID"},
    "devices_previous": {"en": "Previous", "ja": "前へ"},
    "devices_next": {"en": "Next", "ja": "次へ"},
    "devices_no_user": {"en": "(nobody)", "ja": "（なし）"},
    "devices_last_seen": {"en": "Last seen", "ja": "最終接続"},
    "devices_never": {"en": "never", "ja": "未接続"},
    "devices_version": {"en": "Agent version", "ja": "エージェントのバージョン"},
    "devices_online": {"en": "Online", "ja": "オンライン"},
    "devices_offline": {"en": "Offline", "ja": "オフライン"},
    "devices_unknown": {"en": "unknown", "ja": "不明"},
    "devices_status": {"en": "Status", "ja": "状態"},
    "devices_active": {"en": "Active", "ja": "有効"},
    "devices_revoked": {"en": "Revoked {at}", "ja": "失効（{at}）"},
    "devices_created": {"en": "Created", "ja": "登録日時"},
    "devices_none": {"en": "No device.", "ja": "端末はありません。"},
    "devices_issue": {"en": "Issue a device", "ja": "端末を発行"},
    "devices_issue_button": {"en": "Issue", "ja": "発行"},
    "devices_id_hint": {
        "en": "lowercase letters, digits, - and _ (1-63)",
        "ja": "英小文字・数字・-・_（1〜63文字）",
    },
    "devices_rotate": {"en": "Rotate the token", "ja": "トークンを再発行"},
    "devices_rotate_hint": {
        "en": "The old token stops working and the agent is disconnected; a revocation is lifted.",
        "ja": "古いトークンは使えなくなり、エージェントは切断されます。失効も解除されます。",
    },
    "devices_revoke": {"en": "Revoke", "ja": "失効させる"},
    "devices_revoke_hint": {
        "en": "The token stops working; the agent is disconnected within seconds.",
        "ja": "トークンは使えなくなり、エージェントは数秒以内に切断されます。",
    },
    "devices_reassign": {"en": "Give to another user", "ja": "別のユーザーに割り当て"},
    "devices_reassign_button": {"en": "Reassign", "ja": "割り当て"},
    "devices_token": {
        "en": "The device's token, shown only this once. Copy it into the agent now:",
        "ja": "端末のトークンです。表示はこの一度だけです。いまエージェントに設定してください：",
    },
    "devices_issued": {"en": "Device {id} issued.", "ja": "端末 {id} を発行しました。"},
    "devices_rotated": {
        "en": "Device {id} has a new token; the old one no longer works.",
        "ja": "端末 {id} のトークンを再発行しました。古いトークンは使えません。",
    },
    "devices_revoked_done": {"en": "The device is revoked.", "ja": "端末を失効させました。"},
    "devices_already_revoked": {
        "en": "The device was already revoked.",
        "ja": "端末はすでに失効しています。",
    },
    "devices_reassigned": {"en": "The device has a new user.", "ja": "端末のユーザーを変更しました。"},
    "devices_live_unknown": {
        "en": "Online state unknown: the live state cannot be read right now.",
        "ja": "接続状態を取得できないため不明です。",
    },
    "devices_taken": {
        "en": "A device with this ID already exists. Choose another ID.",
        "ja": "この端末IDはすでに使われています。別のIDを指定してください。",
    },
    "devices_bad_id": {
        "en": "The device ID must be lowercase letters, digits, - and _ (1-63, starting with a "
        "letter or digit).",
        "ja": "端末IDは英小文字・数字・-・_で1〜63文字（先頭は英小文字か数字）にしてください。",
    },
    "devices_user_not_found": {
        "en": "No such user in your organisation.",
        "ja": "組織にそのユーザーはいません。",
    },
}
