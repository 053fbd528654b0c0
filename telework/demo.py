"""The demo tenant of ``telework up --demo``: users, agent devices and their tokens.

Tokens are stored hashed only, so the plain tokens live in ``data_dir/demo-agents.json``
(mode 0600) and are reused on later runs; an agent whose token is missing from the
file (or no longer valid) gets a new token.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.private import write_private
from storage.accounts import create_agent, create_tenant, create_user, lookup_token, reissue_token
from storage.models import AgentDevice, Tenant, User

log = logging.getLogger(__name__)

DEMO_TENANT = "demo"
TOKENS_FILE = "demo-agents.json"
NAMES = (
    "Aoi Sato",
    "Haruto Suzuki",
    "Yui Takahashi",
    "Sota Tanaka",
    "Mei Watanabe",
    "Riku Ito",
    "Hina Yamamoto",
    "Ren Nakamura",
    "Sakura Kobayashi",
    "Kaito Kato",
)


def demo_agents(count: int) -> list[tuple[str, str, str]]:
    """Pure: (agent_id, user login, user name) of the first ``count`` demo agents."""
    if count < 0:
        raise ValueError(f"agents: expected >= 0, got {count}")
    out = []
    for i in range(1, count + 1):
        name = NAMES[(i - 1) % len(NAMES)]
        suffix = "" if i <= len(NAMES) else f" {(i - 1) // len(NAMES) + 1}"
        out.append((f"demo-pc-{i:02d}", f"user{i:02d}", name + suffix))
    return out


def read_tokens(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def write_tokens(path: Path, tokens: dict[str, str]) -> None:
    """Write atomically with mode 0600 (the file holds secrets)."""
    write_private(path, json.dumps(tokens, indent=2, sort_keys=True))


def ensure_demo(engine: Engine, data_dir: Path, agents: int) -> Path:
    """Create what is missing of the demo tenant; returns the tokens file."""
    path = data_dir / TOKENS_FILE
    tokens = read_tokens(path)
    with Session(engine) as s:
        if s.get(Tenant, DEMO_TENANT) is None:
            create_tenant(engine, DEMO_TENANT, "Demo Corporation")
        rows = s.execute(select(User.login).where(User.tenant_id == DEMO_TENANT))  # type: ignore[call-overload]
        logins = set(rows.scalars())
    wanted = demo_agents(agents)
    result: dict[str, str] = {}
    for agent_id, login, name in wanted:
        if login not in logins:
            create_user(engine, DEMO_TENANT, login, name, "worker")
        token = tokens.get(agent_id)
        with Session(engine) as s:
            exists = s.get(AgentDevice, agent_id) is not None
        if not exists:
            token = create_agent(engine, DEMO_TENANT, agent_id, login)
            log.info("demo agent created", extra={"agent": agent_id})
        else:
            identity = lookup_token(engine, token) if token else None
            if identity is None or identity.revoked or identity.agent_id != agent_id:
                token = reissue_token(engine, agent_id)
                log.info("demo agent token reissued", extra={"agent": agent_id})
        if token is None:
            raise ValueError(f"no token for demo agent {agent_id!r}")
        result[agent_id] = token
    write_tokens(path, result)
    return path


CAMERA_AGENT = "demo-pc-01"
SIMULATED_TOKENS_FILE = "demo-simulated.json"


def split_camera_agent(tokens: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """Pure: the token of the demo agent that runs the real face pipeline, and the others' tokens."""
    rest = {k: v for k, v in tokens.items() if k != CAMERA_AGENT}
    return tokens.get(CAMERA_AGENT), rest
