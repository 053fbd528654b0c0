"""The texts the teleworker sees (local page, punch replies, notices), in Japanese and English.

:func:`text` formats one message; :func:`pick_language` chooses from an
``Accept-Language`` header; :func:`catalog` is what the local page's script receives.
Every key exists in both languages (checked by the tests).
"""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width parentheses on purpose
from typing import Any, Literal

Language = Literal["ja", "en"]
LANGUAGES: tuple[Language, ...] = ("ja", "en")
DEFAULT_LANGUAGE: Language = "en"

STRINGS: dict[Language, dict[str, str]] = {
    "en": {
        "title": "Telework Supporter — my agent",
        "camera": "Camera",
        "state": "Current state",
        "duty": "Work",
        "on_duty": "On duty",
        "off_duty": "Off duty",
        "task": "Task",
        "no_task": "No task",
        "punch_in": "Start work",
        "punch_out": "End work",
        "task_start": "Start task",
        "task_end": "End task",
        "choose_task": "Choose a task",
        "register": "Register my face",
        "register_help": "Look at the camera; a few images are taken and checked.",
        "evidence": "Last evidence taken",
        "no_evidence": "No evidence taken yet",
        "notices": "Notices",
        "language": "Language",
        "camera_props": "Camera {index}: {width}x{height}, {fps} fps ({backend})",
        "camera_none": "No camera information",
        "camera_choose": "Choose the camera",
        "camera_list": "Find cameras",
        "camera_apply": "Use this camera",
        "camera_switched": "Camera {index} in use at {width}x{height}.",
        "camera_failed": "Camera not changed: {detail}",
        "face_distance": "Face distance {distance} (threshold {threshold})",
        "accepted.in": "Work started (face verified).",
        "accepted.out": "Work ended (face verified).",
        "accepted.task_start": "Task started: {task} (face verified).",
        "accepted.task_end": "Task ended (face verified).",
        "refused": "Refused: {reason}",
        "registered": "Face registered from {count} image(s).",
        "register_failed": "Face not registered: {reason}",
        "reason.camera_unavailable": "camera unavailable ({detail})",
        "reason.no_recent_frame": "no recent camera frame (none analysed in the last {max_age_s} s)",
        "reason.no_face": "no face in view",
        "reason.not_verified_yet": "face not verified yet; look at the camera and try again",
        "reason.mismatch": "face does not match the registered user (distance {distance} > {threshold})",
        "reason.already_on_duty": "already on duty",
        "reason.not_on_duty": "not on duty: start work first",
        "reason.no_task": "no task is running",
        "reason.unknown_task": "unknown task {task} (offered: {tasks})",
        "reason.task_required": "choose a task",
        "reason.already_on_task": "already on task {task}",
        "reason.no_template": "no face registered yet: register your face first",
        "reason.enroll_rejected": "no image passed the quality check ({detail})",
        "notice.lock": "Incident ({kind}): the screen was locked.",
        "notice.lock_failed": "Incident ({kind}): the screen could not be locked: {detail}",
        "notice.log": "Incident ({kind}) recorded.",
        "state.present": "Present",
        "state.away": "Away",
        "state.peeking": "Someone is looking at the screen",
        "state.impersonation": "Someone else is in front of the PC",
        "state.camera_blocked": "Camera covered",
        "state.camera_unavailable": "Camera unavailable",
        "state.none": "Starting…",
        "state.off": "Not watched (off duty)",
        "camera.off_duty": "off: not on duty",
        "camera.on_duty": "on: on duty",
        "camera.on_duty_since": "on: on duty since {since}",
        "camera.verifying": "on: verifying punch-in",
        "camera.registering": "on: registering your face",
    },
    "ja": {
        "title": "テレワークサポーター — エージェント",
        "camera": "カメラ",
        "state": "現在の状態",
        "duty": "勤務",
        "on_duty": "勤務中",
        "off_duty": "勤務外",
        "task": "タスク",
        "no_task": "タスクなし",
        "punch_in": "勤務開始",
        "punch_out": "勤務終了",
        "task_start": "タスク開始",
        "task_end": "タスク終了",
        "choose_task": "タスクを選択",
        "register": "顔を登録",
        "register_help": "カメラを見てください。数枚撮影して確認します。",
        "evidence": "最新の証跡",
        "no_evidence": "証跡はまだありません",
        "notices": "お知らせ",
        "language": "言語",
        "camera_props": "カメラ {index}: {width}x{height}、{fps} fps（{backend}）",
        "camera_none": "カメラ情報なし",
        "camera_choose": "カメラの選択",
        "camera_list": "カメラを検索",
        "camera_apply": "このカメラを使う",
        "camera_switched": "カメラ {index} を {width}x{height} で使用しています。",
        "camera_failed": "カメラを変更できませんでした: {detail}",
        "face_distance": "顔の距離 {distance}（しきい値 {threshold}）",
        "accepted.in": "勤務を開始しました（顔認証済み）。",
        "accepted.out": "勤務を終了しました（顔認証済み）。",
        "accepted.task_start": "タスクを開始しました: {task}（顔認証済み）。",
        "accepted.task_end": "タスクを終了しました（顔認証済み）。",
        "refused": "受け付けられません: {reason}",
        "registered": "{count} 枚の画像で顔を登録しました。",
        "register_failed": "顔を登録できませんでした: {reason}",
        "reason.camera_unavailable": "カメラが使用できません（{detail}）",
        "reason.no_recent_frame": "最近のカメラ画像がありません（直近 {max_age_s} 秒に解析なし）",
        "reason.no_face": "顔が映っていません",
        "reason.not_verified_yet": "顔の確認中です。カメラを見てもう一度お試しください",
        "reason.mismatch": "登録された本人の顔と一致しません（距離 {distance} > {threshold}）",
        "reason.already_on_duty": "すでに勤務中です",
        "reason.not_on_duty": "勤務中ではありません。先に勤務を開始してください",
        "reason.no_task": "実行中のタスクはありません",
        "reason.unknown_task": "不明なタスク {task}（選択肢: {tasks}）",
        "reason.task_required": "タスクを選択してください",
        "reason.already_on_task": "すでにタスク {task} を実行中です",
        "reason.no_template": "顔が未登録です。先に顔を登録してください",
        "reason.enroll_rejected": "品質チェックを通過した画像がありません（{detail}）",
        "notice.lock": "インシデント（{kind}）: 画面をロックしました。",
        "notice.lock_failed": "インシデント（{kind}）: 画面をロックできませんでした: {detail}",
        "notice.log": "インシデント（{kind}）を記録しました。",
        "state.present": "在席",
        "state.away": "離席",
        "state.peeking": "画面をのぞき見されています",
        "state.impersonation": "本人以外が PC の前にいます",
        "state.camera_blocked": "カメラが覆われています",
        "state.camera_unavailable": "カメラが使用できません",
        "state.none": "起動中…",
        "state.off": "見守りなし（勤務外）",
        "camera.off_duty": "オフ: 勤務外",
        "camera.on_duty": "オン: 勤務中",
        "camera.on_duty_since": "オン: {since} から勤務中",
        "camera.verifying": "オン: 勤務開始の顔認証中",
        "camera.registering": "オン: 顔を登録中",
    },
}


def language_of(value: str | None, default: Language = DEFAULT_LANGUAGE) -> Language:
    """``value`` if it names a supported language ("ja", "en", "ja-JP"...), else ``default``."""
    if value:
        head = value.strip().lower().split("-")[0].split("_")[0]
        for lang in LANGUAGES:
            if head == lang:
                return lang
    return default


def pick_language(accept_language: str | None, default: Language = DEFAULT_LANGUAGE) -> Language:
    """The first supported language of an ``Accept-Language`` header (by q-value), else ``default``."""
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, rest = part.strip().partition(";")
        q = 1.0
        if rest.strip().startswith("q="):
            try:
                q = float(rest.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, position, tag))
    for _q, _pos, tag in sorted(ranked):
        lang = language_of(tag, default="")  # type: ignore[arg-type]
        if lang in LANGUAGES:
            return lang
    return default


def text(lang: str, key: str, **params: Any) -> str:
    """The message ``key`` in ``lang`` (English when unknown) with ``params`` filled in."""
    table = STRINGS[language_of(lang)]
    template = table.get(key) or STRINGS[DEFAULT_LANGUAGE].get(key)
    if template is None:
        raise KeyError(f"no text for key {key!r}")
    try:
        return template.format(**params).strip()
    except (KeyError, IndexError):
        return template


def reason_text(lang: str, code: str | None, params: dict[str, Any]) -> str:
    return "" if code is None else text(lang, f"reason.{code}", **params)


def catalog(lang: str) -> dict[str, str]:
    """All texts of ``lang`` (for the page's script)."""
    return dict(STRINGS[language_of(lang)])
