"""The data policy API under ``/api/v1/policies``: the tenant's retention period and legal holds.

Administrators only (others of the tenant: 403; a user out of scope: 404). The retention period
is the tenant's own, from ``TELEWORK_RETENTION_MIN_DAYS`` to ``TELEWORK_RETENTION_MAX_DAYS``,
or (null) the service's ``TELEWORK_RETENTION_DAYS``; the retention job uses it at its next run.
A legal hold, on the tenant or on one user, keeps their data from retention and erasure until
it is released. Every change is audited (``policy.*``: actor, address, target, old -> new).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from core.settings import ServerSettings
from storage import policies
from web.api import MAX_ID, PREFIX, ErrorOut, Strict
from web.audit import user_actor
from web.deps import CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.scope import Scope
from workers.retention import tenant_days

router = APIRouter(prefix=f"{PREFIX}/policies", tags=["policies"])
REFUSED: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorOut, "description": "not an administrator"}
}


class HeldUser(BaseModel):
    id: int
    login: str


class PolicyOut(BaseModel):
    retention_days: int | None  # the tenant's own period (None: the service's)
    effective_days: int  # what the retention job uses
    service_days: int  # TELEWORK_RETENTION_DAYS
    min_days: int
    max_days: int
    legal_hold: bool  # the whole tenant
    held_users: list[HeldUser]


class PolicyChange(Strict):
    # null: back to the service's period; absent: unchanged
    retention_days: int | None = Field(default=None, ge=1, le=36_500)
    legal_hold: bool | None = None


class HoldOut(BaseModel):
    user_id: int
    legal_hold: bool
    changed: bool


def admin_only(scope: Scope) -> None:
    if scope.principal.role != "admin":
        raise Problem(403, "forbidden")


def policy_out(settings: ServerSettings, scope: Scope) -> PolicyOut:
    view = policies.tenant_policy(scope.engine, scope.principal.tenant)
    people = {u.id: u.login for u in (scope.user(i) for i in view.held_users) if u is not None}
    return PolicyOut(
        retention_days=view.retention_days,
        effective_days=tenant_days(
            view.retention_days,
            settings.retention_days,
            settings.retention_min_days,
            settings.retention_max_days,
        ),
        service_days=settings.retention_days,
        min_days=settings.retention_min_days,
        max_days=settings.retention_max_days,
        legal_hold=view.legal_hold,
        held_users=[HeldUser(id=i, login=login) for i, login in sorted(people.items())],
    )


def apply_change(
    settings: ServerSettings, scope: Scope, fields: dict[str, object], actor: str, source: str
) -> None:
    """Store the fields of a policy change (PolicyError: a period out of bounds)."""
    tenant = scope.principal.tenant
    if "retention_days" in fields:
        days = fields["retention_days"]
        policies.set_retention(
            scope.engine, tenant, days if isinstance(days, int) else None,
            settings.retention_min_days, settings.retention_max_days, actor=actor, source=source,
        )  # fmt: skip
    hold = fields.get("legal_hold")
    if isinstance(hold, bool):
        policies.set_tenant_hold(scope.engine, tenant, hold, actor=actor, source=source)


@router.get("", responses=REFUSED)
async def get_policies(scope: ScopeDep, c: ConsoleDep) -> PolicyOut:
    """The tenant's retention period (its own, in effect, the bounds) and legal holds."""
    admin_only(scope)
    return await run_in_threadpool(policy_out, c.settings, scope)


@router.patch("", responses={**REFUSED, 422: {"model": ErrorOut}})
async def patch_policies(
    body: PolicyChange, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> PolicyOut:
    """Set the tenant's retention period (null: the service's) and/or its legal hold."""
    admin_only(scope)
    fields = body.model_dump(exclude_unset=True)
    try:
        await run_in_threadpool(
            apply_change, c.settings, scope, fields, user_actor(who.principal.user_id), address(request)
        )
    except policies.PolicyError as exc:
        raise Problem(422, "bad_value", reason=str(exc)) from None
    return await run_in_threadpool(policy_out, c.settings, scope)


async def _hold(user_id: int, on: bool, request: Request, who: CallerDep, scope: Scope) -> HoldOut:
    if await run_in_threadpool(scope.user, user_id) is None:
        raise Problem(404, "not_found")
    admin_only(scope)
    changed = await run_in_threadpool(
        lambda: policies.set_user_hold(
            scope.engine, scope.principal.tenant, user_id, on,
            actor=user_actor(who.principal.user_id), source=address(request),
        )
    )  # fmt: skip
    return HoldOut(user_id=user_id, legal_hold=on, changed=changed)


@router.put("/holds/{user_id}", responses={**REFUSED, 404: {"model": ErrorOut}})
async def place_hold(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request, who: CallerDep, scope: ScopeDep
) -> HoldOut:
    """Place a legal hold on one user's data (retention and erasure leave it alone)."""
    return await _hold(user_id, True, request, who, scope)


@router.delete("/holds/{user_id}", responses={**REFUSED, 404: {"model": ErrorOut}})
async def release_hold(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request, who: CallerDep, scope: ScopeDep
) -> HoldOut:
    """Release one user's legal hold."""
    return await _hold(user_id, False, request, who, scope)
