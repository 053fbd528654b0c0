"""The texts of the console's schedule pages and answers (:mod:`web.pages_schedules`,
:mod:`web.api_schedules`)."""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width punctuation on purpose
from web.i18n import Language

MESSAGES: dict[str, dict[Language, str]] = {
    "schedules": {"en": "Schedules", "ja": "勤務予定"},
    "schedules_users": {"en": "Users' schedules", "ja": "ユーザーの勤務予定"},
    "schedules_groups": {"en": "Groups' schedules", "ja": "グループの勤務予定"},
    "schedules_no_groups": {"en": "No group to show.", "ja": "表示できるグループはありません。"},
    "schedules_of_user": {"en": "Schedule of {name}", "ja": "{name} の勤務予定"},
    "schedules_of_group": {"en": "Schedule of group {name}", "ja": "グループ {name} の勤務予定"},
    "schedules_weekly": {"en": "Weekly pattern", "ja": "週の勤務パターン"},
    "schedules_exceptions": {"en": "Exceptions", "ja": "例外（日付指定）"},
    "schedules_none": {"en": "None.", "ja": "ありません。"},
    "schedules_weekday": {"en": "Weekday", "ja": "曜日"},
    "schedules_date": {"en": "Date", "ja": "日付"},
    "schedules_start": {"en": "Start", "ja": "開始"},
    "schedules_end": {"en": "End", "ja": "終了"},
    "schedules_valid_from": {"en": "Valid from", "ja": "適用開始日"},
    "schedules_valid_to": {"en": "Valid to", "ja": "適用終了日"},
    "schedules_day_off": {"en": "day off", "ja": "休み"},
    "schedules_open": {"en": "—", "ja": "—"},
    "schedules_remove": {"en": "Remove", "ja": "削除"},
    "schedules_add": {"en": "Add", "ja": "追加"},
    "schedules_add_weekly": {"en": "Add a weekly entry", "ja": "週の勤務パターンを追加"},
    "schedules_add_exception": {"en": "Add an exception", "ja": "例外を追加"},
    "schedules_times_hint": {
        "en": "Times are local times of {zone}; leave start and end empty for a day off; an end "
        "not after the start ends the next day.",
        "ja": "時刻は {zone} の時刻です。休みにするには開始と終了を空欄にします。"
        "終了が開始以前の場合は翌日に終わります。",
    },
    "schedules_plan": {"en": "Plan of the next {days} days", "ja": "今後 {days} 日間の予定"},
    "schedules_source": {"en": "From", "ja": "根拠"},
    "schedules_source_user_exception": {"en": "the user's exception", "ja": "本人の例外"},
    "schedules_source_group_exception": {"en": "the group's exception", "ja": "グループの例外"},
    "schedules_source_holiday": {"en": "holiday", "ja": "休日"},
    "schedules_source_user_weekly": {"en": "the user's pattern", "ja": "本人のパターン"},
    "schedules_source_group_weekly": {"en": "the group's pattern", "ja": "グループのパターン"},
    "schedules_wd_0": {"en": "Monday", "ja": "月曜日"},
    "schedules_wd_1": {"en": "Tuesday", "ja": "火曜日"},
    "schedules_wd_2": {"en": "Wednesday", "ja": "水曜日"},
    "schedules_wd_3": {"en": "Thursday", "ja": "木曜日"},
    "schedules_wd_4": {"en": "Friday", "ja": "金曜日"},
    "schedules_wd_5": {"en": "Saturday", "ja": "土曜日"},
    "schedules_wd_6": {"en": "Sunday", "ja": "日曜日"},
    "schedules_bad_entry": {
        "en": "This schedule entry cannot be used: {field}: expected {expected}.",
        "ja": "この勤務予定は使えません：{field}：{expected} が必要です。",
    },
    "schedules_bad_field": {
        "en": "{field}: expected {expected}, got “{got}”.",
        "ja": "{field}：{expected} が必要ですが「{got}」でした。",
    },
    "schedules_bad_range": {
        "en": "Expected a range of at most {days} days, the first day not after the last.",
        "ja": "期間は最大 {days} 日で、開始日は終了日以前にしてください。",
    },
    "schedules_added": {"en": "Added.", "ja": "追加しました。"},
    "schedules_removed": {"en": "Removed.", "ja": "削除しました。"},
    "schedules_holidays": {"en": "Holidays", "ja": "休日カレンダー"},
    "schedules_holidays_of": {"en": "Holidays of {year}", "ja": "{year} 年の休日"},
    "schedules_public": {"en": "Public holidays", "ja": "祝日"},
    "schedules_own": {"en": "The organisation's holidays", "ja": "組織独自の休日"},
    "schedules_holiday_name": {"en": "Name", "ja": "名称"},
    "schedules_add_holiday": {"en": "Add a holiday", "ja": "休日を追加"},
    "schedules_calendar": {"en": "Public holiday calendar", "ja": "祝日カレンダー"},
    "schedules_country_JP": {"en": "Japanese public holidays", "ja": "日本の祝日"},
    "schedules_country_none": {"en": "none", "ja": "なし"},
    "schedules_holiday_hint": {
        "en": "A holiday is a day off for everyone unless a dated exception says otherwise.",
        "ja": "休日は、日付指定の例外がない限り全員の休みになります。",
    },
    "schedules_prev_year": {"en": "Previous year", "ja": "前年"},
    "schedules_next_year": {"en": "Next year", "ja": "翌年"},
    "schedules_bad_holiday_name": {
        "en": "Expected a holiday name of 1 to {most} characters, without control characters.",
        "ja": "休日の名称は制御文字を含まない 1〜{most} 文字にしてください。",
    },
    "schedules_holiday_taken": {"en": "{day} already has a holiday.", "ja": "{day} はすでに休日です。"},
    "schedules_bad_country": {
        "en": "Expected a calendar among: {allowed}, or none.",
        "ja": "カレンダーは {allowed} またはなしから選んでください。",
    },
    "schedules_import": {"en": "Import a CSV", "ja": "CSV を取り込む"},
    "schedules_import_file": {"en": "CSV file (UTF-8)", "ja": "CSV ファイル（UTF-8）"},
    "schedules_import_hint": {
        "en": "Columns: kind, user or group, weekday, date, start, end, valid_from, valid_to. "
        "Nothing is stored when any row has a problem. At most {rows} rows and {kib} KiB.",
        "ja": "列：kind、user または group、weekday、date、start、end、valid_from、valid_to。"
        "問題のある行が1行でもあれば何も保存しません。最大 {rows} 行、{kib} KiB。",
    },
    "schedules_imported": {"en": "{count} rows stored.", "ja": "{count} 行を保存しました。"},
    "schedules_import_failed": {
        "en": "Nothing was stored: {count} problem(s).",
        "ja": "何も保存していません：問題が {count} 件あります。",
    },
    "schedules_row": {"en": "Row", "ja": "行"},
    "schedules_column": {"en": "Column", "ja": "列"},
    "schedules_expected": {"en": "Expected", "ja": "期待した値"},
    "schedules_got": {"en": "Got", "ja": "実際の値"},
    "schedules_whole_file": {"en": "(file)", "ja": "（ファイル全体）"},
    "schedules_no_file": {"en": "Choose a CSV file.", "ja": "CSV ファイルを選んでください。"},
}
