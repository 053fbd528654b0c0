"""Redis key names. Pure.

Every key of a tenant carries the tenant in a hash tag (``{tenant}``) so all of
a tenant's keys live in one Redis Cluster slot and multi-key commands and Lua
scripts on them stay legal in a cluster.
"""

from __future__ import annotations

TENANTS = "tw:tenants"  # set of tenants that have produced events (worker discovery)
PERSIST_GROUP = "persist"  # consumer group of the persistence workers
BUILD_GROUP = "build"  # consumer group of the interval and incident builder
# The groups every entry of a tenant stream must be done with before it may be trimmed
# (workers/trim.py); a stream is not trimmed at all while one of them does not exist yet.
REQUIRED_GROUPS = (PERSIST_GROUP, BUILD_GROUP)
ENTRY_FIELD = "e"  # the stream entry field holding a StreamEvent JSON


def events_stream(tenant: str) -> str:
    """Stream of StreamEvent entries of one tenant."""
    return f"tw:{{{tenant}}}:events"


def dead_letter_stream(tenant: str) -> str:
    """Stream of DeadLetter entries of one tenant."""
    return f"tw:{{{tenant}}}:dead"


def live_hash(tenant: str) -> str:
    """Hash agent_id -> LiveState JSON of one tenant."""
    return f"tw:{{{tenant}}}:live"


def live_channel(tenant: str) -> str:
    """Pub/sub channel on which every LiveState change of a tenant is published."""
    return f"tw:{{{tenant}}}:live"


def tenant_of(key: str) -> str:
    """The tenant named by a key's hash tag: ``tw:{acme}:events`` -> ``acme``."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start < 0 or end < 0:
        raise ValueError(f"expected a key with a {{tenant}} hash tag, got {key!r}")
    return key[start + 1 : end]


SETTINGS_CHANNEL_PATTERN = "tw:*:settings"  # matches every tenant's settings_channel


def settings_key(tenant: str) -> str:
    """Cache of a tenant's SettingsLayers JSON (its agent settings overrides; the database holds them).

    Releases before settings lived in the database kept the tenant's AgentSettings JSON under
    ``tw:{tenant}:settings``; that key is no longer read.
    """
    return f"tw:{{{tenant}}}:settings-cache"


def settings_channel(tenant: str) -> str:
    """Pub/sub channel on which a tenant's changed SettingsLayers JSON is announced."""
    return f"tw:{{{tenant}}}:settings"


TASKS_CHANNEL_PATTERN = "tw:*:tasks"  # matches every tenant's tasks_channel


def tasks_channel(tenant: str) -> str:
    """Pub/sub channel on which a tenant's new task list is published (a ``tasks`` frame's JSON)."""
    return f"tw:{{{tenant}}}:tasks"
