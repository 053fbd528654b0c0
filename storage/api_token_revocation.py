"""Revoking every live API token of a user, in the caller's transaction, audited once.

Below the console (``web/api_tokens.py`` re-exports it) so that account changes made anywhere
(``storage/account_changes.py``: a disabled user, by the console or ``telework admin``) end the
user's tokens through the same one definition.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import or_, select, update
from sqlmodel import Session, col

from storage import hash_chain_store
from storage.audit_trail import AuditAction, detail
from storage.web_models import ApiToken


def live_tokens(now: float) -> object:
    """The condition of a token still usable at ``now``: not revoked, not expired."""
    moment = datetime.fromtimestamp(now, UTC)
    return col(ApiToken.revoked_at).is_(None) & or_(
        col(ApiToken.expires_at).is_(None), col(ApiToken.expires_at) > moment
    )


def revoke_user_tokens_in(
    s: Session, tenant: str, user_id: int, *, now: float, actor: str, source: str, reason: str
) -> int:
    """Revoke every live token of the user in ``s``'s transaction (the caller commits), audited once
    (``web.api_token_revoke`` with the ids and ``reason``) when there was one; returns how many."""
    ids = [
        int(i)
        for i in s.execute(
            select(col(ApiToken.id)).where(
                col(ApiToken.user_id) == user_id,
                col(ApiToken.tenant_id) == tenant,
                live_tokens(now),  # type: ignore[arg-type]
            )
        ).scalars()
    ]
    if not ids:
        return 0
    moment = datetime.fromtimestamp(now, UTC)
    s.execute(update(ApiToken).where(col(ApiToken.id).in_(ids)).values(revoked_at=moment))
    hash_chain_store.append(
        s,
        actor=actor,
        action=str(AuditAction.WEB_API_TOKEN_REVOKE),
        target=f"user:{user_id}",
        tenant_id=tenant,
        detail=detail(source, api_token_ids=ids, reason=reason),
        at=moment,
    )
    return len(ids)
