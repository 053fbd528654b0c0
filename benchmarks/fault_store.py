"""What the fault-matrix benchmark reads back: the spools, the database, the Redis streams, a gateway.

The I/O partner of the pure :mod:`fault_counting`: each function reads one thing and returns
values (and a lost server counts as "not yet", never as an error, where the benchmark polls).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis
from fault_counting import DeadLetterOrigin, PoisonSent, StoredRow, dead_letter_origin, entry_agent
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from realtime import keys
from realtime.protocol import PROTOCOL_VERSION, Heartbeat, Hello, encode

NEWEST_STORED = (
    "SELECT agent_id, max(seq) FROM event WHERE tenant_id = %s AND agent_id = ANY(%s) GROUP BY agent_id"
)
NEWEST_BUILT = (
    "SELECT i.agent_id, max(e.seq) FROM interval i JOIN event e"
    " ON e.tenant_id = i.tenant_id AND e.agent_id = i.agent_id AND e.id = i.start_event_id"
    " WHERE i.tenant_id = %s AND i.kind = 'presence' AND i.agent_id = ANY(%s) GROUP BY i.agent_id"
)


def spool_state(path: Path) -> tuple[int, int]:
    """(next_seq, pending events) of an agent's spool file; (1, 0) when it does not exist yet."""
    if not path.exists():
        return 1, 0
    db = sqlite3.connect(path, timeout=5)
    try:
        next_seq = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        pending = db.execute("SELECT count(*) FROM events").fetchone()
        return (int(next_seq[0]) if next_seq else 1), int(pending[0])
    finally:
        db.close()


def newest_seqs(conninfo: str, tenant: str, agents: Sequence[str], built: bool) -> dict[str, int] | None:
    """Per agent the highest seq stored (``built``: of an event that starts a presence interval);
    None while the database cannot be reached."""
    try:
        with psycopg.connect(conninfo) as conn:
            rows = conn.execute(NEWEST_BUILT if built else NEWEST_STORED, (tenant, list(agents))).fetchall()
    except psycopg.Error:
        return None
    return {str(agent): int(seq) for agent, seq in rows}


def stored_rows(conninfo: str, tenant: str) -> list[StoredRow]:
    """Every row of the tenant's ``event`` table."""
    with psycopg.connect(conninfo) as conn:
        query = "SELECT agent_id, seq, id FROM event WHERE tenant_id = %s"
        return [StoredRow(a, int(s), str(i)) for a, s, i in conn.execute(query, (tenant,))]


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2, decode_responses=True, encoding_errors="replace")


def entry_text(fields: object) -> str:
    """The ``e`` field of a stream entry read with ``decode_responses`` ('' when it has none)."""
    raw = fields.get(keys.ENTRY_FIELD, "") if isinstance(fields, dict) else ""
    return raw if isinstance(raw, str) else ""


def dead_letters(port: int, tenant: str) -> list[DeadLetterOrigin]:
    """What every entry of the tenant's dead-letter stream parks."""
    client = _client(port)
    try:
        letters = client.xrange(keys.dead_letter_stream(tenant))
    finally:
        client.close()
    return [dead_letter_origin(entry_text(fields)) for _, fields in letters or []]


def groups_settled(port: int, tenant: str, groups: Sequence[str], ignore: Collection[str]) -> bool:
    """Each consumer group got every entry of the tenant's stream, and none is still pending but
    those of the agents in ``ignore``; False while Redis cannot be reached."""
    client = _client(port)
    try:
        stream = keys.events_stream(tenant)
        last = client.xinfo_stream(stream)["last-generated-id"]
        found = {g["name"]: g for g in client.xinfo_groups(stream)}
        for name in groups:
            group = found.get(name)
            if group is None or group.get("last-delivered-id") != last:
                return False
            if group["pending"]:
                for entry in client.xpending_range(stream, name, "-", "+", 10_000):
                    got = client.xrange(stream, entry["message_id"], entry["message_id"])
                    if entry_agent(entry_text(got[0][1] if got else None)) not in ignore:
                        return False
        return True
    except redis.RedisError:
        return False
    finally:
        client.close()


def poison_sent(path: Path) -> list[PoisonSent]:
    """The hostile agent's JSON-lines record of what it sent and the replies it got."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [PoisonSent(r["kind"], r["event_id"], r["outcome"]) for r in records]


async def gateway_serves(port: int, token: str) -> bool:
    """The gateway on ``port`` opens a session: hello -> welcome, a heartbeat answered."""
    try:
        async with connect(f"ws://127.0.0.1:{port}/v1/agent", open_timeout=2, ping_interval=None) as ws:
            await ws.send(encode(Hello(token=token, agent_version="faults-probe", protocol=PROTOCOL_VERSION)))
            async with asyncio.timeout(3):
                while json.loads(await ws.recv()).get("type") != "welcome":
                    pass
                await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
                while json.loads(await ws.recv()).get("type") != "heartbeat":
                    pass
        return True
    except (OSError, TimeoutError, WebSocketException, ValueError):
        return False
