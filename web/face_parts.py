"""What the face-image routes share: the encrypted store, the gate, the limits; who may do what.

:func:`install` puts a :class:`FaceParts` on the application (``app.state.faces``) with the gate
factory of the ``telework`` layer (``telework/face_gate.py``); an application without one (the
console alone, some tests) lists, shows and deletes images, and refuses each uploaded file that
passes the header checks with the reason that it cannot be checked. :func:`upload_limit` is the
body limit of the upload routes (the application's :class:`~web.app.BodyLimit` asks it); every
other route keeps the small one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from core.settings import ServerSettings
from storage.evidence_store import EvidenceStore, open_store
from web.deps import Caller, Problem
from web.faces import FaceGate, GateFactory, Gates, Limits
from web.scope import Scope, UserView

UPLOAD_PATH = re.compile(r"^/(api/v1/)?users/[0-9]{1,10}/faces$")
FORM_OVERHEAD = 64 * 1024  # bytes of a multipart request beyond its files (boundaries, CSRF field)


@dataclass
class FaceParts:
    settings: ServerSettings
    gates: Gates
    _store: EvidenceStore | None = field(default=None, init=False)

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(s.face_upload_max_bytes, s.face_max_side, s.face_images_per_user)

    def store(self, engine: object) -> EvidenceStore:
        """The evidence store (opened at first use: it needs the master key)."""
        if self._store is None:
            self._store = open_store(self.settings, engine)  # type: ignore[arg-type]
        return self._store


def install(app: FastAPI, settings: ServerSettings, factory: GateFactory | None) -> FaceParts:
    parts = FaceParts(settings, Gates(factory))
    app.state.faces = parts
    return parts


def parts_of_app(app: FastAPI) -> FaceParts:
    found = getattr(app.state, "faces", None)
    if found is None:
        found = install(app, app.state.console.settings, None)
    assert isinstance(found, FaceParts)
    return found


def parts_of(request: Request) -> FaceParts:
    return parts_of_app(request.app)


async def gate_of(parts: FaceParts) -> FaceGate | None:
    """The gate (loaded on first use), or None: files that pass the header checks are then refused."""
    return await run_in_threadpool(parts.gates.get)


def upload_limit(method: str, path: str, settings: ServerSettings) -> int | None:
    """Pure: the body limit of a face upload (``POST`` to an upload path), else None."""
    if method == "POST" and UPLOAD_PATH.match(path):
        return settings.face_upload_max_bytes + FORM_OVERHEAD
    return None


async def visible(scope: Scope, user_id: int) -> UserView:
    """The user if the caller may see them (administrators, their managers, themselves), else 404."""
    view = await run_in_threadpool(scope.user, user_id)
    if view is None:
        raise Problem(404, "not_found")
    return view


async def changeable(scope: Scope, who: Caller, user_id: int) -> UserView:
    """The user if the caller may add or delete their images (administrators only), else 403/404.

    A worker does not register their own face: the template decides who counts as them in front
    of the camera, so a worker could enrol someone else to work in their place."""
    view = await visible(scope, user_id)
    if who.principal.role != "admin":
        raise Problem(403, "forbidden")
    return view
