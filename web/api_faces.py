"""The face-image API: a user's images, upload (several files at once), thumbnail, delete.

Administrators, the user's managers and the user see the list and the thumbnails; only
administrators upload and delete (:func:`web.face_parts.changeable`). An upload answers one
verdict per file: the image stored, or the reason it was refused. Every view is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Path, Request, Response, UploadFile
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from realtime import templates_push
from storage import face_images
from storage.face_images import FaceImage, FaceImageError
from web import faces
from web.api import MAX_ID, PREFIX, ErrorOut
from web.audit import user_actor
from web.console import Console
from web.deps import Caller, CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.face_parts import changeable, gate_of, parts_of, visible

MAX_FILES = 10  # files in one upload request

router = APIRouter(prefix=PREFIX)
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
ImageId = Annotated[int, Path(ge=1, le=MAX_ID)]
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut}}


class FaceOut(BaseModel):
    id: int
    user_id: int
    source: str  # console | agent
    width: int | None
    height: int | None
    engine: str
    created_at: datetime


class FaceList(BaseModel):
    images: list[FaceOut]


class FileVerdict(BaseModel):
    file: str
    accepted: bool
    image: FaceOut | None  # the stored image when accepted
    reason: str | None  # why it was refused (nothing was stored)


class UploadOut(BaseModel):
    results: list[FileVerdict]


def face_out(image: FaceImage) -> FaceOut:
    return FaceOut(
        id=image.id,
        user_id=image.user_id,
        source=image.source,
        width=image.width,
        height=image.height,
        engine=image.engine,
        created_at=image.created_at,
    )


async def register_all(
    request: Request, who: Caller, c: Console, user_id: int, files: list[UploadFile]
) -> list[faces.FaceOutcome]:
    """Gate and store each uploaded file for the user (the caller already checked who may);
    announce the user's new template when one was stored."""
    if not 1 <= len(files) <= MAX_FILES:
        raise Problem(422, "face_file_count", most=MAX_FILES)
    parts = parts_of(request)
    gate = await gate_of(parts)
    store = parts.store(c.engine)
    tenant = who.principal.tenant
    outcomes: list[faces.FaceOutcome] = []
    for upload in files:
        data = await upload.read(parts.limits.max_bytes + 1)  # a larger file is refused by its length

        def one(data: bytes = data, name: str = upload.filename or "file") -> faces.FaceOutcome:
            return faces.register(
                c.engine, store, gate, parts.limits, tenant=tenant, user_id=user_id, name=name, data=data,
                source="console", actor=user_actor(who.principal.user_id), address=address(request),
                now=c.clock(),
            )  # fmt: skip

        outcomes.append(await run_in_threadpool(one))
    if any(o.image is not None for o in outcomes):
        await templates_push.announce(c.redis, tenant, user_id)
    return outcomes


@router.get("/users/{user_id}/faces", responses=NOT_FOUND)
async def list_faces(user_id: UserId, scope: ScopeDep, c: ConsoleDep) -> FaceList:
    """The user's registered face images (administrators, the user's managers, the user)."""
    await visible(scope, user_id)
    found = await run_in_threadpool(face_images.images, c.engine, scope.principal.tenant, user_id)
    return FaceList(images=[face_out(i) for i in found])


@router.post("/users/{user_id}/faces", responses={**NOT_FOUND, 403: {"model": ErrorOut}})
async def upload_faces(
    user_id: UserId,
    request: Request,
    who: CallerDep,
    scope: ScopeDep,
    c: ConsoleDep,
    files: Annotated[list[UploadFile], File(description="JPEG, PNG, WebP or BMP photos of the user")],
) -> UploadOut:
    """Register face images of the user (administrators): each goes through the agent's gate."""
    await changeable(scope, who, user_id)
    outcomes = await register_all(request, who, c, user_id, files)
    results = [
        FileVerdict(
            file=o.name,
            accepted=o.image is not None,
            image=None if o.image is None else face_out(o.image),
            reason=o.reason,
        )
        for o in outcomes
    ]
    return UploadOut(results=results)


@router.get(
    "/users/{user_id}/faces/{image_id}/thumbnail",
    responses={**NOT_FOUND, 200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
)
async def face_thumbnail(
    user_id: UserId, image_id: ImageId, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> Response:
    """A small JPEG of one image, made from the encrypted original on each request (audited)."""
    await visible(scope, user_id)
    tenant = who.principal.tenant
    found = await run_in_threadpool(face_images.image, c.engine, tenant, user_id, image_id)
    if found is None:
        raise Problem(404, "not_found")
    store = parts_of(request).store(c.engine)
    try:
        jpeg = await run_in_threadpool(lambda: faces.thumbnail(face_images.image_bytes(store, tenant, found)))
    except FaceImageError:
        raise Problem(404, "face_image_unreadable") from None
    actor = user_actor(who.principal.user_id)
    await run_in_threadpool(
        lambda: faces.viewed(
            c.engine, tenant=tenant, user_id=user_id, image_id=image_id, actor=actor,
            address=address(request), now=c.clock(), kind="thumbnail",
        )
    )  # fmt: skip
    return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "private, no-store"})


@router.delete(
    "/users/{user_id}/faces/{image_id}", status_code=204, responses={**NOT_FOUND, 403: {"model": ErrorOut}}
)
async def delete_face(
    user_id: UserId, image_id: ImageId, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> Response:
    """Delete one image (administrators); the user's template is rebuilt and pushed again."""
    await changeable(scope, who, user_id)
    await delete_one(request, who, c, user_id, image_id)
    return Response(status_code=204)


async def delete_one(request: Request, who: Caller, c: Console, user_id: int, image_id: int) -> None:
    """Delete image ``image_id`` of ``user_id`` (the caller already checked), announce; 404 if none."""
    store = parts_of(request).store(c.engine)
    gone = await run_in_threadpool(
        lambda: faces.remove(
            c.engine, store, tenant=who.principal.tenant, user_id=user_id, image_id=image_id,
            actor=user_actor(who.principal.user_id), address=address(request), now=c.clock(),
        )
    )  # fmt: skip
    if gone is None:
        raise Problem(404, "not_found")
    await templates_push.announce(c.redis, who.principal.tenant, user_id)
