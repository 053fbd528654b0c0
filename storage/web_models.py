"""SQLModel tables of the web console's sign-in: a user's password credential and set-up codes.

:class:`WebCredential` holds the argon2id hash of a user's console password and a credential
``version``, raised by every password change (and by ending all sessions), so an open session
holding an older version is ended on its next request. :class:`SetupCode` is a one-time code
(stored as its sha256, never in clear) that lets a user set a password once, before it expires.
:class:`SecondFactor` is a user's TOTP secret, sealed under the tenant's data key (AES-GCM, bound to
the tenant and user), on once ``enabled_at`` is set, with the last time step accepted (a code is
used once); :class:`RecoveryCode` its one-time recovery codes (sha256 only). :class:`ApiToken` is
a script's bearer token (sha256 only), with its name, expiry, last use and revocation.
A manager's groups are :class:`storage.models.Membership` rows with role ``manager``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary
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


class SecondFactor(SQLModel, table=True):
    """A user's TOTP secret (sealed), whether it is on, and the last time step a code was accepted for."""

    __tablename__ = "web_second_factor"
    user_id: int = Field(foreign_key="tw_user.id", primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    secret_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=tz_column())
    enabled_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))  # None: enrolling
    last_step: int | None = Field(default=None)  # the RFC 6238 step of the last accepted code


class RecoveryCode(SQLModel, table=True):
    """One recovery code of a user's second factor: its sha256, and when it was used."""

    __tablename__ = "web_recovery_code"
    code_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="tw_user.id", index=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    created_at: datetime = Field(sa_column=tz_column())
    used_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))


class ApiToken(SQLModel, table=True):
    """A user's API token for scripts: its sha256, name, expiry, last use, revocation."""

    __tablename__ = "web_api_token"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="tw_user.id", index=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    name: str = Field(max_length=100)
    created_at: datetime = Field(sa_column=tz_column())
    expires_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))
