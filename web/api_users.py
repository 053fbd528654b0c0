"""The REST API of an administrator's user changes: create, edit (and enable/disable), password reset.

``POST /api/v1/users`` creates a user and answers a one-time set-up link (never a password);
``PATCH /api/v1/users/{id}`` changes name, role, language, time zone (null: the tenant's) and
``enabled`` (disabling ends the user's sessions at once); ``POST /api/v1/users/{id}/setup-link``
resets the password: a new link, the old password stops working, the user's sessions end.
A user out of the caller's scope is 404; a manager or a worker changing anyone is 403 (their own
data: ``/api/v1/me``); a change that would leave the tenant without an enabled administrator is 409.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from storage.account_rules import MAX_LOGIN, MAX_NAME, MAX_TIME_ZONE, AccountError
from web import session_store, user_admin
from web.api import ERRORS, MAX_ID, PREFIX, ErrorOut, Strict, UserOut, user_out
from web.deps import CallerDep, ConsoleDep, Problem, ScopeDep, SessionCallerDep, address
from web.scope import Scope, UserView

router = APIRouter(prefix=PREFIX, responses=ERRORS)
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
RoleName = Literal["admin", "manager", "worker"]
LanguageName = Literal["ja", "en"]


class UserNew(Strict):
    login: str = Field(min_length=1, max_length=MAX_LOGIN)
    name: str = Field(min_length=1, max_length=MAX_NAME)
    role: RoleName = "worker"
    language: LanguageName = "ja"
    time_zone: str | None = Field(default=None, max_length=MAX_TIME_ZONE)  # None: the tenant's


class UserChange(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    role: RoleName | None = None
    language: LanguageName | None = None
    time_zone: str | None = Field(default=None, max_length=MAX_TIME_ZONE)  # null: the tenant's
    enabled: bool | None = None


class SetupLink(BaseModel):
    setup_link: str  # shown once: the user sets their password with it
    expires_in_s: int


class UserCreated(BaseModel):
    user: UserOut
    setup_link: str
    expires_in_s: int


def require_admin(scope: Scope) -> None:
    if scope.principal.role != "admin":
        raise Problem(403, "forbidden")


async def target(scope: Scope, user_id: int) -> UserView:
    """The user ``user_id`` if the caller sees them (else 404) and is an administrator (else 403)."""
    view = await run_in_threadpool(scope.user, user_id)
    if view is None:
        raise Problem(404, "not_found")
    require_admin(scope)
    return view


def change_problem(exc: Exception) -> Problem:
    """The answer to a refused change of :mod:`web.user_admin`."""
    if isinstance(exc, user_admin.LastAdmin):
        return Problem(409, f"users_last_admin_{exc}")
    if isinstance(exc, user_admin.LoginTaken):
        return Problem(409, "users_login_taken")
    return Problem(422, "bad_value", reason=str(exc))


CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such user in the caller's scope"},
    409: {
        "model": ErrorOut,
        "description": "the login is taken, the tenant's last administrator, or oneself",
    },
    422: {"model": ErrorOut, "description": "a value is refused"},
}


@router.post("/users", status_code=201, responses=CHANGE_ERRORS)
async def create_user(
    body: UserNew, request: Request, who: SessionCallerDep, scope: ScopeDep, c: ConsoleDep
) -> UserCreated:
    """Create a user of the caller's tenant (administrators); the answer has their one-time set-up link."""
    require_admin(scope)
    actor = user_admin.actor_of(who.principal.user_id, address(request), c.clock)
    try:
        user_id, link = await run_in_threadpool(
            lambda: user_admin.create(
                c.engine, who.principal.tenant, body.model_dump(), actor,
                base_url=c.settings.web_base_url, ttl_s=c.settings.web_setup_code_ttl_s,
            )
        )  # fmt: skip
    except (AccountError, user_admin.LoginTaken) as exc:
        raise change_problem(exc) from None
    view = await run_in_threadpool(scope.user, user_id)
    assert view is not None
    return UserCreated(user=user_out(view), setup_link=link, expires_in_s=c.settings.web_setup_code_ttl_s)


async def apply_change(
    c: ConsoleDep, who: CallerDep, scope: Scope, user_id: int, changes: dict[str, Any], source: str
) -> UserView:
    """Make ``changes`` to a user the caller may change; a disabled user's sessions end at once."""
    await target(scope, user_id)
    actor = user_admin.actor_of(who.principal.user_id, source, c.clock)
    try:
        done = await run_in_threadpool(
            user_admin.edit, c.engine, who.principal.tenant, user_id, changes, actor
        )
    except (AccountError, user_admin.LastAdmin) as exc:
        raise change_problem(exc) from None
    if "enabled" in done and not done["enabled"][1]:
        await session_store.end_user_sessions(c.redis, who.principal.tenant, user_id)
    view = await run_in_threadpool(scope.user, user_id)
    if view is None:  # the caller changed themselves out of their own scope: not possible for an admin
        raise Problem(404, "not_found")
    return view


@router.patch("/users/{user_id}", responses=CHANGE_ERRORS)
async def patch_user(
    user_id: UserId, body: UserChange, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> UserOut:
    """Change a user's name, role, language, time zone (null: the tenant's) or enabled (administrators)."""
    changes = {k: v for k, v in body.model_dump().items() if k in body.model_fields_set}
    for name in ("name", "role", "language", "enabled"):
        if name in changes and changes[name] is None:
            raise Problem(422, "bad_value", reason=f"{name}: expected a value, got null")
    view = await apply_change(c, who, scope, user_id, changes, address(request))
    return user_out(view)


@router.post("/users/{user_id}/setup-link", status_code=201, responses=CHANGE_ERRORS)
async def reset_password(
    user_id: UserId, request: Request, who: SessionCallerDep, scope: ScopeDep, c: ConsoleDep
) -> SetupLink:
    """Reset a user's password (administrators): a new one-time set-up link; their sessions end."""
    await target(scope, user_id)
    link = await reset_link(c, who, user_id, address(request))
    return SetupLink(setup_link=link, expires_in_s=c.settings.web_setup_code_ttl_s)


async def reset_link(c: ConsoleDep, who: CallerDep, user_id: int, source: str) -> str:
    """A new set-up link for another user; one's own password is changed on the profile (409)."""
    if user_id == who.principal.user_id:
        raise Problem(409, "users_reset_self")
    actor = user_admin.actor_of(who.principal.user_id, source, c.clock)
    link = await run_in_threadpool(
        lambda: user_admin.reset_password(
            c.engine, who.principal.tenant, user_id, actor,
            base_url=c.settings.web_base_url, ttl_s=c.settings.web_setup_code_ttl_s,
        )
    )  # fmt: skip
    await session_store.end_user_sessions(c.redis, who.principal.tenant, user_id)
    return link
