"""The live state's compare-and-set writes: Lua scripts and the commands that run them. Pure.

Every write of an agent's live state (:mod:`realtime.live`) is one ``EVAL`` of a script here,
over two names that share the tenant's hash tag (:func:`realtime.keys.live_hash` and
:func:`realtime.keys.live_channel`), so the scripts stay legal in Redis Cluster. The commands
are plain tuples: the gateway's group-committed pipeline (:mod:`realtime.batcher`) runs them
with ``execute_command`` and hands each session its own reply. The owner's writes, one per frame,
name their script by its digest (``EVALSHA``: Redis neither receives nor hashes the text again);
after a Redis restart or ``SCRIPT FLUSH`` the batcher sends those that met ``NOSCRIPT`` again as
``EVAL`` with the text (:data:`SCRIPTS`), so no write fails for it. The rarer takeover
(:func:`compare_and_set`) always carries its text.

Ownership: :class:`~realtime.protocol.LiveState` names the session that owns it
(``session_id``). A session opening takes ownership (:func:`compare_and_set` from the exact
value it read, retried by the caller on a conflict). After that only the owner may write
(:func:`owner_write`): a write finding another owner changes nothing and answers
:data:`NOT_OWNER`, and that session has been replaced by a newer one (on this gateway or on
another). The reaper marks stale states offline with the same :func:`compare_and_set`.
"""

from __future__ import annotations

import hashlib

from realtime import keys
from realtime.batcher import Command

# Replies of OWNER_WRITE.
NOT_OWNER = 0  # another session owns the stored state: nothing written
WRITTEN = 1  # written (and published, unless a refresh found the state as the session believed)
REPUBLISHED = 2  # a refresh found the stored state missing or different: written and published

# KEYS[1] live hash, KEYS[2] live channel; ARGV[1] agent, ARGV[2] expected JSON ('' = absent),
# ARGV[3] new JSON. Writes and publishes ARGV[3] only if the stored value is exactly ARGV[2].
COMPARE_AND_SET = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current or '') == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS[1] live hash, KEYS[2] live channel; ARGV[1] agent, ARGV[2] the writing session,
# ARGV[3] new JSON, ARGV[4] '' (always publish) or the JSON the session believes is stored
# (a refresh: publish only when the stored value differs from it).
# A stored state owned by another session is left alone (0). An absent or unreadable state,
# or one without an owner, is written.
OWNER_WRITE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and type(stored.session_id) == 'string'
      and stored.session_id ~= ARGV[2] then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == '' then
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return 1
end
if current ~= ARGV[4] then
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return 2
end
return 1
"""


def digest(script: str) -> str:
    """The SHA1 by which Redis caches ``script`` (what ``EVALSHA`` names)."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


OWNER_WRITE_SHA = digest(OWNER_WRITE)
SCRIPTS = {OWNER_WRITE_SHA: OWNER_WRITE}  # digest -> text, for an EVALSHA that meets NOSCRIPT


def compare_and_set(tenant: str, agent_id: str, expected: str | None, new: str) -> Command:
    """Store and publish ``new`` only if the stored JSON is exactly ``expected`` (None: absent)."""
    hash_key, channel = keys.live_hash(tenant), keys.live_channel(tenant)
    return ("EVAL", COMPARE_AND_SET, 2, hash_key, channel, agent_id, expected or "", new)


def owner_write(
    tenant: str, agent_id: str, session_id: str, new: str, believed: str | None = None
) -> Command:
    """Store ``new`` if ``session_id`` owns the state (or nobody does); publish it unless
    ``believed`` is given and is exactly what was stored (a heartbeat refresh)."""
    hash_key, channel = keys.live_hash(tenant), keys.live_channel(tenant)
    return ("EVALSHA", OWNER_WRITE_SHA, 2, hash_key, channel, agent_id, session_id, new, believed or "")
