"""Texts of the console's users and groups pages and answers, in Japanese and English."""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width punctuation on purpose
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from web.i18n import Language

MESSAGES: dict[str, dict[Language, str]] = {
    "users_last_admin_demote": {
        "en": "This is the organisation's last enabled administrator: make another user an administrator "
        "before changing this one's role.",
        "ja": "組織で最後の有効な管理者です。役割を変更する前に、ほかのユーザーを管理者にしてください。",
    },
    "users_last_admin_disable": {
        "en": "This is the organisation's last enabled administrator: make another user an administrator "
        "before disabling this one.",
        "ja": "組織で最後の有効な管理者です。無効にする前に、ほかのユーザーを管理者にしてください。",
    },
    "users_login_taken": {
        "en": "Another user of the organisation already has this login.",
        "ja": "このログインIDはすでに組織のほかのユーザーが使っています。",
    },
    "users_reset_self": {
        "en": "Change your own password on your profile page.",
        "ja": "ご自身のパスワードはプロフィールページで変更してください。",
    },
    "users_new": {"en": "New user", "ja": "新しいユーザー"},
    "users_create": {"en": "Create", "ja": "作成"},
    "users_created": {
        "en": "The user is created. Give them this one-time set-up link (shown only now; it expires in "
        "{hours} hours):",
        "ja": "ユーザーを作成しました。この一回限りの設定リンクを本人に渡してください（表示は今回のみ、"
        "{hours}時間で失効します）：",
    },
    "users_reset_done": {
        "en": "The password is reset and the user's sessions have ended. Give them this one-time set-up "
        "link (shown only now; it expires in {hours} hours):",
        "ja": "パスワードをリセットし、ユーザーのセッションを終了しました。この一回限りの設定リンクを本人に"
        "渡してください（表示は今回のみ、{hours}時間で失効します）：",
    },
    "users_edit": {"en": "Edit", "ja": "編集"},
    "users_tenant_zone": {"en": "The organisation's", "ja": "組織の設定"},
    "users_disable": {"en": "Disable (ends their sessions)", "ja": "無効にする（セッションを終了）"},
    "users_enable": {"en": "Enable", "ja": "有効にする"},
    "users_reset": {
        "en": "Reset the password (a new set-up link; their sessions end)",
        "ja": "パスワードをリセット（新しい設定リンク、セッションを終了）",
    },
    "groups_name_taken": {
        "en": "A group with this name already exists.",
        "ja": "この名前のグループはすでにあります。",
    },
    "groups_not_manager": {
        "en": "Only a user with the manager role can be assigned a group.",
        "ja": "グループを担当できるのはマネージャーの役割のユーザーだけです。",
    },
    "groups_in_use": {
        "en": "The group is still in use and cannot be deleted.",
        "ja": "このグループは使用中のため削除できません。",
    },
    "groups_none": {"en": "No groups.", "ja": "グループはありません。"},
    "groups_group": {"en": "Group", "ja": "グループ"},
    "groups_members": {"en": "Members", "ja": "メンバー"},
    "groups_managers": {"en": "Managers", "ja": "担当マネージャー"},
    "groups_new": {"en": "New group", "ja": "新しいグループ"},
    "groups_rename": {"en": "Rename", "ja": "名前を変更"},
    "groups_delete": {"en": "Delete the group", "ja": "グループを削除"},
    "groups_deleted": {"en": "The group is deleted.", "ja": "グループを削除しました。"},
    "groups_add_member": {"en": "Add a member", "ja": "メンバーを追加"},
    "groups_add_manager": {"en": "Assign a manager", "ja": "マネージャーを割り当て"},
    "groups_remove": {"en": "Remove", "ja": "外す"},
    "groups_as_member": {"en": "member", "ja": "メンバー"},
    "groups_as_manager": {"en": "manager", "ja": "担当マネージャー"},
    "groups_nobody": {"en": "Nobody.", "ja": "いません。"},
}
