"""The user's face template from the server (the one source of it), kept and used by the agent.

The gateway sends it in every welcome and again whenever the user's images change
(:class:`~realtime.protocol.face_templates.TemplatePush`). :class:`TemplateSync` keeps the body
made by this agent's engine and model version: it is written to the agent's template file
(0600, atomically) and the running pipeline matches against it at once. A frame without a body
for this engine (the server holds no image of the user yet, or only images embedded by another
engine) leaves the local template as it is, so an agent enrolled before its user's images were
on the server keeps working.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from agent.face.engine import Embedding, FaceEngine, normalise
from agent.face.templates import Template, best_match
from realtime.protocol.face_templates import TemplatePush, decode_embedding

log = logging.getLogger(__name__)

Matcher = Callable[[Embedding], float]


def template_of(frame: TemplatePush, engine: str, model_version: str) -> Template | None:
    """Pure: the frame's template for ``engine`` ``model_version``, or None if it has none."""
    for body in frame.templates:
        if (body.engine, body.model_version) == (engine, model_version):
            vectors = tuple(normalise(decode_embedding(e)) for e in body.embeddings)
            return Template(engine, model_version, vectors)
    return None


class TemplateSync:
    """Applies the server's templates to the template file and, if given, the pipeline's matcher."""

    def __init__(
        self, engine: FaceEngine, path: Path | None, set_matcher: Callable[[Matcher], None] | None
    ) -> None:
        self.engine = engine
        self.path = path
        self.set_matcher = set_matcher
        self.revision: str | None = None  # of the last template applied

    def apply(self, frame: TemplatePush) -> Template | None:
        """Keep ``frame``'s template for this engine; returns it (None: none for this engine)."""
        if frame.revision == self.revision:
            return None
        template = template_of(frame, self.engine.name, self.engine.model_version)
        if template is None and frame.templates:  # images embedded by another engine only
            log.warning(
                "the server's face template is for another engine; keeping the local one",
                extra={"engine": self.engine.name, "server": [b.engine for b in frame.templates]},
            )
            return None
        if template is None:  # the server holds no image of the user (yet): the local one stays
            log.info(
                "no face images of the user on the server; the local template is kept",
                extra={"user": frame.user_id},
            )
            return None
        self.revision = frame.revision
        if self.path is not None:
            template.save(self.path)
        if self.set_matcher is not None:
            self.set_matcher(lambda e: best_match(template, e))
        log.info(
            "face template from the server applied",
            extra={
                "user": frame.user_id,
                "embeddings": len(template.embeddings),
                "revision": frame.revision[:12],
            },
        )
        return template
