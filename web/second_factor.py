"""A user's TOTP second factor in the database: enrol, confirm, check a code once, turn off, reset.

The secret is sealed under the tenant's data key (:class:`storage.keyring.Keyring`, AES-256-GCM,
the associated data binding it to the tenant and the user), so a database dump alone does not
give anyone's codes. Enrolment makes a secret that is not on until :func:`confirm` gets a valid
code from it; that also issues the recovery codes (shown once, stored as sha256). A code is
accepted once: :func:`use_code` moves ``last_step`` forward in one conditional UPDATE, so the
same code (or an older one) is refused, even to two requests at the same moment; a recovery code
is marked used the same way. Every change is audited (:mod:`web.audit`); no secret or code is
ever logged or audited.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.settings import ServerSettings
from storage.audit_trail import AuditAction
from storage.keyring import Keyring, ensure_master_key, load_master_key
from storage.web_models import RecoveryCode, SecondFactor
from web import totp
from web.audit import at, record

log = logging.getLogger(__name__)

ROLES_WITH_SECOND_FACTOR = frozenset({"admin", "manager"})
_keyrings: weakref.WeakKeyDictionary[Engine, Keyring] = weakref.WeakKeyDictionary()

State = Literal["off", "enrolling", "on"]
Used = Literal["totp", "recovery"]


class FactorError(ValueError):
    """A second-factor change that cannot be made; ``code`` is the message key (:mod:`web.i18n`)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class FactorState:
    state: State
    enabled_at: datetime | None
    recovery_left: int


def keyring_for(settings: ServerSettings, engine: Engine) -> Keyring:
    """The keyring sealing TOTP secrets (one per engine). Without a configured master key, the
    embedded default ``<data_dir>/master.key`` is used, created (0600) if missing, as ``telework up`` does."""
    found = _keyrings.get(engine)
    if found is None:
        if settings.master_key is None and settings.master_key_file is None:
            ensure_master_key(settings.data_dir)
        found = Keyring(load_master_key(settings), engine)
        _keyrings[engine] = found
    return found


def _aad(tenant: str, user_id: int) -> bytes:
    return f"telework/totp-secret/v1/{tenant}/{user_id}".encode()


def state_of(engine: Engine, tenant: str, user_id: int) -> FactorState:
    """Whether the user's second factor is off, being enrolled or on, and how many recovery codes are left."""
    with Session(engine) as s:
        row = s.get(SecondFactor, user_id)
        if row is None or row.tenant_id != tenant:
            return FactorState("off", None, 0)
        left = s.execute(
            select(func.count())
            .select_from(RecoveryCode)
            .where(col(RecoveryCode.user_id) == user_id, col(RecoveryCode.used_at).is_(None))
        ).scalar_one()
    return FactorState("on" if row.enabled_at else "enrolling", row.enabled_at, int(left))


def is_on(engine: Engine, tenant: str, user_id: int) -> bool:
    return state_of(engine, tenant, user_id).state == "on"


def begin_enrolment(
    engine: Engine, keyring: Keyring, tenant: str, user_id: int, *, now: float, source: str
) -> str:
    """A new secret for the user, not on until confirmed (an earlier unconfirmed one is replaced).

    FactorError ``second_factor_already_on`` when the second factor is on."""
    secret = totp.new_secret()
    sealed = keyring.seal(tenant, secret.encode("ascii"), _aad(tenant, user_id))
    with Session(engine) as s:
        row = s.get(SecondFactor, user_id)
        if row is not None and row.enabled_at is not None:
            raise FactorError("second_factor_already_on")
        if row is None:
            row = SecondFactor(user_id=user_id, tenant_id=tenant, secret_sealed=sealed, created_at=at(now))
        row.secret_sealed, row.created_at, row.last_step = sealed, at(now), None
        s.add(row)
        record(
            s, AuditAction.WEB_SECOND_FACTOR_ENROL, actor=f"user:{user_id}", source=source,
            tenant_id=tenant, user_id=user_id, now=now,
        )  # fmt: skip
        s.commit()
    return secret


def enrolling_secret(engine: Engine, keyring: Keyring, tenant: str, user_id: int) -> str | None:
    """The secret of an enrolment not yet confirmed (to show its QR code again), or None."""
    with Session(engine) as s:
        row = s.get(SecondFactor, user_id)
    if row is None or row.tenant_id != tenant or row.enabled_at is not None:
        return None
    return keyring.open(tenant, row.secret_sealed, _aad(tenant, user_id)).decode("ascii")


def _secret(keyring: Keyring, row: SecondFactor) -> str:
    return keyring.open(row.tenant_id, row.secret_sealed, _aad(row.tenant_id, row.user_id)).decode("ascii")


def confirm(
    engine: Engine, keyring: Keyring, tenant: str, user_id: int, code: str, *, now: float, source: str
) -> list[str]:
    """Turn the enrolled secret on with a valid code of it; returns the new recovery codes (shown once).

    FactorError ``second_factor_not_enrolling`` without an enrolment, ``second_factor_wrong_code``
    for a code that is not right."""
    with Session(engine) as s:
        row = s.get(SecondFactor, user_id)
        if row is None or row.tenant_id != tenant or row.enabled_at is not None:
            raise FactorError("second_factor_not_enrolling")
        step = totp.accepted_step(_secret(keyring, row), code, now, None)
        if step is None:
            raise FactorError("second_factor_wrong_code")
        taken = s.execute(
            update(SecondFactor)
            .where(col(SecondFactor.user_id) == user_id, col(SecondFactor.enabled_at).is_(None))
            .values(enabled_at=at(now), last_step=step)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            s.rollback()
            raise FactorError("second_factor_not_enrolling")
        codes = _replace_recovery_codes(s, tenant, user_id, now)
        record(
            s, AuditAction.WEB_SECOND_FACTOR_ON, actor=f"user:{user_id}", source=source, tenant_id=tenant,
            user_id=user_id, now=now, recovery_codes=len(codes),
        )  # fmt: skip
        s.commit()
    return codes


def _replace_recovery_codes(s: Session, tenant: str, user_id: int, now: float) -> list[str]:
    s.execute(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
    codes = totp.new_recovery_codes()
    for code in codes:
        digest = totp.recovery_hash(code)
        assert digest is not None
        s.add(RecoveryCode(code_hash=digest, user_id=user_id, tenant_id=tenant, created_at=at(now)))
    return codes


def use_code(
    engine: Engine, keyring: Keyring, tenant: str, user_id: int, code: str, *, now: float
) -> Used | None:
    """Accept ``code`` (a TOTP code or a recovery code) of the user's second factor, once; None if refused."""
    with Session(engine) as s:
        row = s.get(SecondFactor, user_id)
        if row is None or row.tenant_id != tenant or row.enabled_at is None:
            return None
        if totp.parse_code(code) is not None:
            step = totp.accepted_step(_secret(keyring, row), code, now, row.last_step)
            if step is None:
                return None
            taken = s.execute(
                update(SecondFactor)
                .where(
                    col(SecondFactor.user_id) == user_id,
                    col(SecondFactor.enabled_at).is_not(None),
                    or_(col(SecondFactor.last_step).is_(None), col(SecondFactor.last_step) < step),
                )
                .values(last_step=step)
            )
            used: Used = "totp"
        else:
            digest = totp.recovery_hash(code)
            if digest is None:
                return None
            taken = s.execute(
                update(RecoveryCode)
                .where(
                    col(RecoveryCode.code_hash) == digest,
                    col(RecoveryCode.user_id) == user_id,
                    col(RecoveryCode.used_at).is_(None),
                )
                .values(used_at=at(now))
            )
            used = "recovery"
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            s.rollback()
            return None
        s.commit()
    return used


def remove(
    engine: Engine,
    tenant: str,
    user_id: int,
    *,
    action: AuditAction,
    actor: str,
    source: str,
    now: float,
    **facts: object,
) -> bool:
    """Take the user's second factor and recovery codes away, audited as ``action``; False if none."""
    with Session(engine) as s:
        row = s.get(SecondFactor, user_id)
        if row is None or row.tenant_id != tenant:
            return False
        was = "on" if row.enabled_at else "enrolling"
        s.execute(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
        s.delete(row)
        record(
            s, action, actor=actor, source=source, tenant_id=tenant, user_id=user_id, now=now, was=was,
            **facts,
        )  # fmt: skip
        s.commit()
    log.info("second factor removed", extra={"tenant": tenant, "user_id": user_id, "action": str(action)})
    return True
