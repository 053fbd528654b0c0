"""SQLModel tables of the web console's sign-in: a user's password credential and set-up codes.

:class:`WebCredential` holds the argon2id hash of a user's console password and a credential
``version``, raised by every password change (and by ending all sessions), so an open session
holding an older version is ended on its next request. :class:`SetupCode` is a one-time code
(stored as its sha256, never in clear) that lets a user set a password once, before it expires.
A manager's groups are :class:`storage.models.Membership` rows with role ``manager``.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from storage.models import tz_column


class WebCredential(SQLModel, table=True):
    """A user's console password (argon2id PHC string) and the version sessions are checked against."""

    __tablename__ = "web_credential"
    user_id: int = Field(foreign_key="tw_user.id", primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    password_hash: str | None = Field(default=None, max_length=255)  # None: no password set yet
    version: int = Field(default=1)
    updated_at: datetime = Field(sa_column=tz_column())


class SetupCode(SQLModel, table=True):
    """A one-time code to set a user's password: its sha256, its expiry, when it was used."""

    __tablename__ = "web_setup_code"
    code_hash: str = Field(primary_key=True, max_length=64)  # sha256 hex of the code
    user_id: int = Field(foreign_key="tw_user.id", index=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    created_at: datetime = Field(sa_column=tz_column())
    expires_at: datetime = Field(sa_column=tz_column())
    used_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))
