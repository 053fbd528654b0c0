"""Texts of the console's agent settings, tasks and data policy (retention, legal hold) pages."""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width punctuation on purpose
from web.i18n import Language

MESSAGES: dict[str, dict[Language, str]] = {
    "settings_title": {"en": "Agent settings", "ja": "エージェント設定"},
    "settings_tenant": {"en": "Organisation-wide settings", "ja": "組織全体の設定"},
    "settings_group": {"en": "Settings of group {name}", "ja": "グループ「{name}」の設定"},
    "settings_user": {"en": "Settings of {name}", "ja": "{name}さんの設定"},
    "settings_mine": {"en": "My effective settings", "ja": "自分に適用される設定"},
    "settings_field": {"en": "Setting", "ja": "設定項目"},
    "settings_value": {"en": "Effective value", "ja": "適用値"},
    "settings_source": {"en": "Comes from", "ja": "設定元"},
    "settings_here": {"en": "Set at this level", "ja": "このレベルの値"},
    "settings_allowed": {"en": "Allowed", "ja": "許容範囲"},
    "settings_inherit_hint": {
        "en": "Leave a value empty to inherit it from the level above.",
        "ja": "空欄にすると上位レベルの値を引き継ぎます。",
    },
    "settings_source_default": {"en": "service default", "ja": "サービス既定値"},
    "settings_source_tenant": {"en": "organisation", "ja": "組織"},
    "settings_source_group": {"en": "group {name}", "ja": "グループ「{name}」"},
    "settings_source_user": {"en": "this user", "ja": "ユーザー個別"},
    "settings_history": {"en": "Recent changes", "ja": "最近の変更"},
    "settings_when": {"en": "When", "ja": "日時"},
    "settings_who": {"en": "By", "ja": "変更者"},
    "settings_where": {"en": "Level", "ja": "レベル"},
    "settings_change": {"en": "Old → new", "ja": "変更前 → 変更後"},
    "settings_groups": {"en": "Groups", "ja": "グループ"},
    "settings_users": {"en": "Users", "ja": "ユーザー"},
    "settings_saved": {
        "en": "Saved and sent to the connected agents.",
        "ja": "保存し、接続中のエージェントに送信しました。",
    },
    "settings_saved_not_pushed": {
        "en": "Saved. The agents could not be told now; they get it at their next connection.",
        "ja": "保存しました。今はエージェントに送信できなかったため、次回の接続時に反映されます。",
    },
    "settings_unchanged": {"en": "Nothing changed.", "ja": "変更はありません。"},
    "settings_bad": {"en": "This value cannot be used: {reason}", "ja": "この値は使えません：{reason}"},
    "tasks_title": {"en": "Tasks", "ja": "業務"},
    "tasks_name": {"en": "Task", "ja": "業務名"},
    "tasks_state": {"en": "State", "ja": "状態"},
    "tasks_active": {"en": "Offered", "ja": "提供中"},
    "tasks_inactive": {"en": "Not offered", "ja": "停止中"},
    "tasks_none": {"en": "The organisation offers no tasks yet.", "ja": "まだ業務がありません。"},
    "tasks_create": {"en": "Add a task", "ja": "業務を追加"},
    "tasks_rename": {"en": "Rename", "ja": "名前を変更"},
    "tasks_deactivate": {"en": "Stop offering", "ja": "提供を停止"},
    "tasks_reactivate": {"en": "Offer again", "ja": "提供を再開"},
    "tasks_saved": {
        "en": "Saved and sent to the connected agents.",
        "ja": "保存し、エージェントに送信しました。",
    },
    "tasks_bad": {"en": "This task cannot be saved: {reason}", "ja": "この業務は保存できません：{reason}"},
    "policies_title": {"en": "Retention and legal hold", "ja": "保存期間とリーガルホールド"},
    "policies_retention": {"en": "Retention period (days)", "ja": "保存期間（日）"},
    "policies_retention_hint": {
        "en": "From {low} to {high} days; empty: the service's {default} days. Events, intervals, "
        "incidents and evidence older than this are deleted.",
        "ja": "{low}〜{high}日。空欄にするとサービスの既定値（{default}日）になります。"
        "これより古いイベント・区間・インシデント・証跡は削除されます。",
    },
    "policies_effective": {"en": "In effect: {days} days", "ja": "適用中：{days}日"},
    "policies_tenant_hold": {"en": "Legal hold of the organisation", "ja": "組織全体のリーガルホールド"},
    "policies_hold_hint": {
        "en": "While a hold is on, neither retention nor erasure deletes the data it covers.",
        "ja": "ホールド中は、対象のデータを保存期間の経過でも消去依頼でも削除しません。",
    },
    "policies_hold": {"en": "Legal hold", "ja": "リーガルホールド"},
    "policies_on": {"en": "On", "ja": "有効"},
    "policies_off": {"en": "Off", "ja": "無効"},
    "policies_place": {"en": "Place hold", "ja": "ホールドする"},
    "policies_release": {"en": "Release hold", "ja": "ホールドを解除"},
    "policies_user_holds": {"en": "Users under legal hold", "ja": "リーガルホールド中のユーザー"},
    "policies_no_user_holds": {
        "en": "No user is under legal hold.",
        "ja": "ホールド中のユーザーはいません。",
    },
    "policies_saved": {"en": "Saved.", "ja": "保存しました。"},
    "policies_bad": {"en": "This value cannot be used: {reason}", "ja": "この値は使えません：{reason}"},
}
