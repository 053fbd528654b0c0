"""The REST API under ``/api/v1``: session, the signed-in user (``me``), users; OpenAPI from these models.

A client signs in with ``POST /api/v1/session`` (JSON), keeps the session cookie it gets, and sends
the ``csrf_token`` of the answer in ``X-CSRF-Token`` with every POST, PUT, PATCH and DELETE.
Every read goes through the caller's :class:`~web.scope.Scope`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from storage.account_changes import update_user
from storage.account_rules import AccountError
from web import signin
from web.audit import user_actor
from web.deps import CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.principal import Principal, load_principal
from web.scope import MAX_PAGE, MAX_QUERY, UserView

PREFIX = "/api/v1"
MAX_ID = 2**31 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignInBody(Strict):
    tenant: str = Field(max_length=200)
    login: str = Field(max_length=1000)
    password: str = Field(max_length=1000)


class Me(BaseModel):
    id: int
    tenant: str
    login: str
    name: str
    role: str
    language: str
    time_zone: str
    managed_groups: list[int]
    csrf_token: str  # send it back in X-CSRF-Token with every state-changing request


class MeChange(Strict):
    name: str | None = Field(default=None, max_length=1000)
    language: Literal["ja", "en"] | None = None
    time_zone: str | None = Field(default=None, max_length=64)  # an IANA zone; "" for the tenant's


class PasswordChange(Strict):
    current: str = Field(max_length=1000)
    new: str = Field(max_length=1000)


class UserOut(BaseModel):
    id: int
    login: str
    name: str
    role: str
    enabled: bool
    language: str
    time_zone: str | None
    groups: list[str]


class UserList(BaseModel):
    users: list[UserOut]


class Ended(BaseModel):
    ended: int


class ErrorOut(BaseModel):
    error: str
    message: str


ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "not signed in"},
    403: {"model": ErrorOut, "description": "CSRF token missing or wrong"},
}

router = APIRouter(prefix=PREFIX, responses=ERRORS)


def me_of(principal: Principal, csrf: str) -> Me:
    return Me(
        id=principal.user_id,
        tenant=principal.tenant,
        login=principal.login,
        name=principal.name,
        role=principal.role,
        language=principal.language,
        time_zone=principal.time_zone,
        managed_groups=sorted(principal.managed_groups),
        csrf_token=csrf,
    )


def user_out(view: UserView) -> UserOut:
    return UserOut(**{**view.__dict__, "groups": list(view.groups)})


@router.post("/session", responses={429: {"model": ErrorOut}})
async def create_session(body: SignInBody, request: Request, response: Response, c: ConsoleDep) -> Me:
    """Sign in; the session cookie is set, the answer carries the CSRF token."""
    outcome = await signin.sign_in(c, body.tenant, body.login, body.password, address(request))
    if isinstance(outcome, signin.Refused):
        if outcome.reason == "too_many":
            raise Problem(429, "too_many", seconds=outcome.retry_after_s)
        raise Problem(401, "sign_in_failed")
    response.set_cookie(c.session_cookie, outcome.token, **c.cookie_options())  # type: ignore[arg-type]
    principal = await run_in_threadpool(load_principal, c.engine, outcome.record)
    if principal is None:
        raise Problem(401, "sign_in_failed")
    return me_of(principal, outcome.record.csrf)


@router.delete("/session", status_code=204)
async def delete_session(request: Request, who: CallerDep, c: ConsoleDep) -> Response:
    """Sign out: this session ends."""
    await signin.sign_out(c, who.token, who.session, address(request))
    response = Response(status_code=204)
    response.delete_cookie(c.session_cookie, path="/", secure=c.settings.web_secure_cookie, httponly=True)
    return response


@router.delete("/sessions")
async def delete_sessions(request: Request, who: CallerDep, c: ConsoleDep, response: Response) -> Ended:
    """Sign out everywhere: every session of the user ends, this one too."""
    ended = await signin.sign_out_everywhere(c, who.token, who.session, address(request))
    response.delete_cookie(c.session_cookie, path="/", secure=c.settings.web_secure_cookie, httponly=True)
    return Ended(ended=ended)


@router.get("/me")
async def get_me(who: CallerDep) -> Me:
    """The signed-in user."""
    return me_of(who.principal, who.session.csrf)


@router.patch("/me", responses={422: {"model": ErrorOut}})
async def patch_me(body: MeChange, request: Request, who: CallerDep, c: ConsoleDep) -> Me:
    """Change one's own name, language and/or time zone ("" for the tenant's; audited as ``user.update``)."""
    changes: dict[str, object] = body.model_dump(exclude_none=True)
    if changes.get("time_zone") == "":
        changes["time_zone"] = None
    if changes:
        try:
            await run_in_threadpool(
                lambda: update_user(
                    c.engine, who.principal.tenant, who.principal.login, changes,
                    actor=user_actor(who.principal.user_id), source=address(request),
                )
            )  # fmt: skip
        except AccountError as exc:
            raise Problem(422, "bad_value", reason=str(exc)) from None
    principal = await run_in_threadpool(load_principal, c.engine, who.session)
    return me_of(principal or who.principal, who.session.csrf)


@router.put("/me/password", status_code=204, responses={422: {"model": ErrorOut}, 429: {"model": ErrorOut}})
async def put_password(body: PasswordChange, request: Request, who: CallerDep, c: ConsoleDep) -> Response:
    """Change one's password (the current one required); the user's other sessions end."""
    try:
        await signin.change_password(c, who.token, who.principal, body.current, body.new, address(request))
    except signin.PasswordRefused as exc:
        raise Problem(422, exc.code) from None
    return Response(status_code=204)


@router.get("/users")
async def list_users(
    scope: ScopeDep,
    q: Annotated[str, Query(max_length=MAX_QUERY)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> UserList:
    """The users the caller may see whose login or name contains ``q``."""
    views = await run_in_threadpool(scope.users, q, limit, offset)
    return UserList(users=[user_out(v) for v in views])


@router.get("/users/{user_id}", responses={404: {"model": ErrorOut}})
async def get_user(user_id: Annotated[int, Path(ge=1, le=MAX_ID)], scope: ScopeDep) -> UserOut:
    """One user the caller may see (404 for anyone else, of this tenant or another)."""
    view = await run_in_threadpool(scope.user, user_id)
    if view is None:
        raise Problem(404, "not_found")
    return user_out(view)
