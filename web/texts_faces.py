"""Texts of the face-image pages and API (``web/pages_faces.py``, ``web/api_faces.py``)."""

from __future__ import annotations

# ruff: noqa: RUF001 - Japanese texts use full-width punctuation on purpose
from web.i18n import Language

MESSAGES: dict[str, dict[Language, str]] = {
    "faces_title": {"en": "Face images of {name}", "ja": "{name}さんの顔画像"},
    "faces_link": {"en": "Face images", "ja": "顔画像"},
    "faces_none": {"en": "No face image is registered.", "ja": "登録された顔画像はありません。"},
    "faces_upload": {"en": "Upload images", "ja": "画像をアップロード"},
    "faces_files": {
        "en": "Photos (JPEG, PNG, WebP or BMP; one face each)",
        "ja": "写真（JPEG・PNG・WebP・BMP、1枚に顔は1つ）",
    },
    "faces_delete": {"en": "Delete", "ja": "削除"},
    "faces_deleted": {"en": "The image was deleted.", "ja": "画像を削除しました。"},
    "faces_accepted": {"en": "{file}: registered.", "ja": "{file}：登録しました。"},
    "faces_rejected": {"en": "{file}: refused: {reason}", "ja": "{file}：登録できません：{reason}"},
    "faces_source_console": {"en": "console", "ja": "管理画面"},
    "faces_source_agent": {"en": "agent", "ja": "エージェント"},
    "faces_added_at": {"en": "Registered", "ja": "登録日時"},
    "faces_size": {"en": "{width}×{height} px", "ja": "{width}×{height} px"},
    "faces_only_admins": {
        "en": "Only administrators register and delete face images.",
        "ja": "顔画像の登録と削除は管理者だけが行えます。",
    },
    "face_file_count": {
        "en": "Send between 1 and {most} files at once.",
        "ja": "一度に送れるファイルは1～{most}個です。",
    },
    "face_image_unreadable": {
        "en": "The stored image cannot be read.",
        "ja": "保存された画像を読み取れません。",
    },
}
