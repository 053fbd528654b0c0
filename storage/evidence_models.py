"""SQLModel tables of encrypted material: evidence objects, tenant data keys, face templates.

Plaintext never lands in these rows: blobs are AES-256-GCM ciphertexts under a
tenant data key (:class:`DataKey`, itself wrapped by the master key); ``sha256``
is the hash of the plaintext, kept for tamper evidence.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import tz_column

EVIDENCE_KINDS = ("camera", "screen")


class DataKey(SQLModel, table=True):
    """A tenant's data key, wrapped (encrypted) by the master key ``master_key_id``."""

    __tablename__ = "data_key"
    id: str = Field(primary_key=True, max_length=64)  # the key id
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    wrapped: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    master_key_id: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=tz_column())
    retired_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))


class EvidenceObject(SQLModel, table=True):
    """One encrypted evidence image (webcam still or screenshot) in the object store."""

    __tablename__ = "evidence_object"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sha256"),
        Index("ix_evidence_object_tenant_created", "tenant_id", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=63)
    sha256: str = Field(max_length=64)  # hex sha256 of the plaintext
    kind: str = Field(max_length=16)  # camera | screen
    content_type: str = Field(default="image/jpeg", max_length=64)
    size: int  # plaintext bytes
    storage_key: str = Field(max_length=512)  # where the ciphertext lives in the store
    key_id: str = Field(max_length=64)  # the DataKey that encrypted it
    agent_id: str | None = Field(default=None, max_length=63)
    user_id: int | None = Field(default=None, foreign_key="tw_user.id", index=True)
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    taken_at: datetime = Field(sa_column=tz_column())
    created_at: datetime = Field(sa_column=tz_column())


class FaceTemplate(SQLModel, table=True):
    """A user's face feature vector from one registered image, encrypted."""

    __tablename__ = "face_template"
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    user_id: int = Field(foreign_key="tw_user.id", index=True)
    blob: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # encrypted template
    key_id: str = Field(max_length=64)
    engine: str = Field(max_length=32)  # dlib | insightface
    model_version: str = Field(max_length=64)
    image_sha256: str | None = Field(default=None, max_length=64)  # the registered image, if kept
    image_key: str | None = Field(default=None, max_length=512)  # its storage key, if kept
    created_at: datetime = Field(sa_column=tz_column())
    source: str = Field(default="console", max_length=16)  # console | agent (storage/face_images.py)
    width: int | None = None  # the registered image's pixels
    height: int | None = None
