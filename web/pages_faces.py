"""The face-image page of a user: thumbnails, upload (one verdict per file), delete.

The page shows what the API does (:mod:`web.api_faces`): administrators, the user's managers
and the user see it; only administrators get the upload form and the delete buttons. Times are
in the signed-in user's time zone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import File, Form, Path, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRouter
from starlette.concurrency import run_in_threadpool

from storage import face_images
from storage.face_images import FaceImage
from web import faces
from web.api import MAX_ID
from web.api_faces import delete_one, register_all
from web.deps import Caller, CallerDep, ConsoleDep, ScopeDep
from web.face_parts import changeable, visible
from web.i18n import text
from web.pages import lang_of, render
from web.scope import UserView

router = APIRouter(include_in_schema=False)
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
ImageId = Annotated[int, Path(ge=1, le=MAX_ID)]


def shown_time(moment: datetime, zone: str) -> str:
    """Pure: ``moment`` in ``zone``, to the minute."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _page(
    request: Request,
    who: Caller,
    user: UserView,
    images: list[FaceImage],
    *,
    results: list[faces.FaceOutcome] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    zone = who.principal.time_zone
    return render(
        "faces.html", lang_of(request, who), status=status, who=who, user=user, images=images,
        added={i.id: shown_time(i.created_at, zone) for i in images}, results=results or [],
        may_change=who.principal.role == "admin", notice=notice,
    )  # fmt: skip


@router.get("/users/{user_id}/faces")
async def faces_page(
    request: Request, user_id: UserId, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> HTMLResponse:
    user = await visible(scope, user_id)
    images = await run_in_threadpool(face_images.images, c.engine, who.principal.tenant, user_id)
    notice = None
    if request.query_params.get("deleted"):
        notice = text("faces_deleted", lang_of(request, who))
    return _page(request, who, user, images, notice=notice)


@router.post("/users/{user_id}/faces")
async def faces_upload(
    request: Request,
    user_id: UserId,
    who: CallerDep,
    scope: ScopeDep,
    c: ConsoleDep,
    files: Annotated[list[UploadFile], File()],
    csrf: Annotated[str, Form(max_length=1000)] = "",
) -> HTMLResponse:
    """Gate and store each file; the page lists each file's verdict (nothing kept of a refused one)."""
    user = await changeable(scope, who, user_id)
    results = await register_all(request, who, c, user_id, files)
    images = await run_in_threadpool(face_images.images, c.engine, who.principal.tenant, user_id)
    status = 200 if any(r.image is not None for r in results) else 422
    return _page(request, who, user, images, results=results, status=status)


@router.post("/users/{user_id}/faces/{image_id}/delete")
async def faces_delete(
    request: Request,
    user_id: UserId,
    image_id: ImageId,
    who: CallerDep,
    scope: ScopeDep,
    c: ConsoleDep,
    csrf: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    await changeable(scope, who, user_id)
    await delete_one(request, who, c, user_id, image_id)
    return RedirectResponse(f"/users/{user_id}/faces?deleted=1", status_code=303)
