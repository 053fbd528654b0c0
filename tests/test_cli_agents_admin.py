"""`telework admin agent create | list | revoke | reissue` through the real CLI on SQLite and PostgreSQL:
last seen from Redis, tokens never audited, disabled users and terminated tenants refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import redis as redis_client
from sqlalchemy.engine import Engine

from realtime import keys
from realtime.protocol import LiveState, encode
from storage import accounts, directory
from tests.admin_world import WHO, admin, entries, last_seq, ok, run, stamp

__all__ = ["admin"]  # the fixture


def test_agent_list_shows_user_status_and_last_seen_from_redis(
    admin: Engine, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """agent list: each device's user and status, last seen, online and agent version from the live
    hash ("never" when it never connected); without Redis "?" and one warning."""
    ok(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    ok(["admin", "user", "create", "--tenant", "acme", "aiko", "--name", "Aiko"], capsys)
    for argv in (["pc-1", "--user", "aiko"], ["pc-2"], ["pc-3"]):
        ok(["admin", "agent", "create", "--tenant", "acme", *argv], capsys)
    ok(["admin", "agent", "revoke", "pc-3"], capsys)
    seen = datetime(2026, 12, 1, 9, 30, 5, tzinfo=UTC)
    live = LiveState(
        tenant="acme", agent_id="pc-1", user="Aiko", online=True, last_seen=seen, agent_version="0.1.0"
    )
    client = redis_client.Redis.from_url(redis_url)
    client.hset(keys.live_hash("acme"), "pc-1", encode(live))
    client.close()
    rows = {a.id: a for a in directory.agents(admin, "acme")}
    made = {k: stamp(a.created_at) for k, a in rows.items()}
    revoked = rows["pc-3"].revoked_at
    assert revoked is not None
    monkeypatch.setenv("TELEWORK_REDIS_URL", redis_url)
    assert ok(["admin", "agent", "list", "--tenant", "acme"], capsys) == (
        f"ID    USER  STATUS{' ' * 29}LAST SEEN                  ONLINE  VERSION  CREATED\n"
        f"pc-1  aiko  active{' ' * 29}2026-12-01T09:30:05+00:00  yes     0.1.0    {made['pc-1']}\n"
        f"pc-2  -     active{' ' * 29}never                      no      -        {made['pc-2']}\n"
        f"pc-3  -     revoked {stamp(revoked)}  never                      no      -        {made['pc-3']}\n"
    )
    monkeypatch.setenv("TELEWORK_REDIS_URL", "redis://127.0.0.1:1/0")
    code, out, err = run(["admin", "agent", "list", "--tenant", "acme"], capsys)
    assert (code, out.splitlines()[1].split()[:5]) == (0, ["pc-1", "aiko", "active", "?", "?"])
    assert err.startswith("telework admin: warning: last seen unknown (redis: ConnectionError: ")


def test_tokens_are_printed_once_and_never_audited(admin: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    """create and reissue print a token that works; the audit entries hold neither it nor its hash;
    the reissued one replaces the old and lifts a revocation; a second revoke says so and writes nothing."""
    ok(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    before = last_seq(admin)
    first = ok(["admin", "agent", "create", "--tenant", "acme", "pc-1"], capsys).splitlines()[1]
    assert ok(["admin", "agent", "revoke", "pc-1"], capsys) == "agent pc-1 revoked\n"
    assert ok(["admin", "agent", "revoke", "pc-1"], capsys) == "agent pc-1 was already revoked\n"
    out = ok(["admin", "agent", "reissue", "pc-1"], capsys).splitlines()
    assert out[0] == "agent pc-1 has a new token (shown only once; the old one no longer works):"
    second = out[1]
    assert accounts.lookup_token(admin, first) is None
    identity = accounts.lookup_token(admin, second)
    assert identity is not None and not identity.revoked
    assert entries(admin, before) == [
        ("agent.create", "agent:pc-1", "acme", WHO, {"source": WHO, "changes": {}}),
        ("agent.revoke", "agent:pc-1", "acme", WHO, {"source": WHO, "changes": {"revoked": [False, True]}}),
        ("agent.reissue", "agent:pc-1", "acme", WHO, {"source": WHO, "changes": {"revoked": [True, False]}}),
    ]
    text = json.dumps(entries(admin))
    for secret in (first, second, accounts.hash_token(first), accounts.hash_token(second), "twa_"):
        assert secret not in text


def test_disabled_users_and_terminated_tenants_have_their_agents_refused(
    admin: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A disabled user's device and every device of a terminated tenant count as revoked (lookup and the
    gateway's bulk re-check); enabling and reinstating let them in again."""
    ok(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    ok(["admin", "user", "create", "--tenant", "acme", "aiko", "--name", "Aiko"], capsys)
    token = ok(["admin", "agent", "create", "--tenant", "acme", "pc-1", "--user", "aiko"], capsys).split()[-1]
    spare = ok(["admin", "agent", "create", "--tenant", "acme", "pc-2"], capsys).split()[-1]
    hashes = {accounts.hash_token(token), accounts.hash_token(spare)}

    def refused() -> tuple[bool, bool, set[str]]:
        one, two = accounts.lookup_token(admin, token), accounts.lookup_token(admin, spare)
        assert one is not None and two is not None
        return one.revoked, two.revoked, accounts.invalid_tokens(admin, hashes)

    assert refused() == (False, False, set())
    ok(["admin", "user", "update", "--tenant", "acme", "aiko", "--disable"], capsys)
    assert refused() == (True, False, {accounts.hash_token(token)})
    ok(["admin", "user", "update", "--tenant", "acme", "aiko", "--enable"], capsys)
    ok(["admin", "tenant", "terminate", "acme", "--yes"], capsys)
    assert refused() == (True, True, hashes)
    ok(["admin", "tenant", "reinstate", "acme"], capsys)
    assert refused() == (False, False, set())
