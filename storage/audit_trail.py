"""What an audit entry says, the same way at every call site: who, from where, which action, old -> new.

* :class:`AuditAction` is the one vocabulary of audited actions (``tenant.create``, ``user.update``,
  ``agent.revoke``, ``settings.set`` ...);
* :func:`changes` (pure) turns the old and new values of a changed thing into the ``changes``
  part of an entry's detail, ``{field: [old, new]}``, leaving out what did not change and
  withholding the values of fields that identify a person (the audit log outlives an erasure,
  so a name or a login never goes into it: the entry says only that the field changed);
* :func:`detail` (pure) assembles an entry's detail (``source``, ``changes``, other facts) and
  refuses anything that looks like an agent token;
* :func:`audit` appends the entry through :func:`storage.hash_chain_store.append`, inside the
  caller's transaction, so the entry commits or rolls back with the change it records.

``actor`` says who acted (``cli:<OS user>`` for the command line, ``system`` for the server's
own jobs); ``source`` where the request came from (the same ``cli:<OS user>`` on the command
line, an address for requests over the network).
"""

from __future__ import annotations

import getpass
from collections.abc import Collection, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Session

from storage import hash_chain_store
from storage.audit_models import AuditEntry

SYSTEM = "system"  # actor and source of what the server does by itself (and of library callers)
TOKEN_PREFIX = "twa_"  # every agent token starts so; never written into an audit entry
TOKEN_KEYS = frozenset({"token", "token_hash"})


class AuditAction(StrEnum):
    """Every audited action, named ``object.verb``."""

    TENANT_CREATE = "tenant.create"
    TENANT_UPDATE = "tenant.update"
    TENANT_TERMINATE = "tenant.terminate"
    TENANT_REINSTATE = "tenant.reinstate"
    USER_CREATE = "user.create"
    USER_UPDATE = "user.update"
    USER_EXPORT = "user.export"
    USER_ERASE = "user.erase"
    USER_ERASE_REVOKE = "user.erase.revoke"
    USER_ERASE_FINISH = "user.erase.finish"
    AGENT_CREATE = "agent.create"
    AGENT_REVOKE = "agent.revoke"
    AGENT_REISSUE = "agent.reissue"
    AGENT_REASSIGN = "agent.reassign"  # the device given to another user of its tenant
    SETTINGS_SET = "settings.set"
    TASK_CREATE = "task.create"
    TASK_REMOVE = "task.remove"
    TASK_RENAME = "task.rename"
    POLICY_RETENTION = "policy.retention"  # a tenant's retention period (old -> new days)
    POLICY_TENANT_HOLD = "policy.tenant_hold"  # a tenant's legal hold on / off
    POLICY_USER_HOLD = "policy.user_hold"  # a user's legal hold on / off
    RETENTION_PURGE = "retention.purge"  # a retention pass removed data (counts, never contents)
    WEB_SIGN_IN = "web.sign_in"  # the web console's sign-in (web/signin.py, web/credentials.py)
    WEB_SIGN_IN_REFUSED = "web.sign_in_refused"
    WEB_SIGN_OUT = "web.sign_out"
    WEB_SIGN_OUT_EVERYWHERE = "web.sign_out_everywhere"
    WEB_PASSWORD_CHANGE = "web.password_change"
    WEB_PASSWORD_SET = "web.password_set"  # with a set-up code
    WEB_SETUP_CODE_ISSUE = "web.setup_code_issue"
    SCHEDULE_ADD = "schedule.add"  # a user's or a group's weekly entry or dated exception (web/schedules.py)
    SCHEDULE_REMOVE = "schedule.remove"
    SCHEDULE_CHANGE = "schedule.change"  # an entry replaced (old -> new)
    SCHEDULE_IMPORT = "schedule.import"  # a CSV import: one entry with the counts (each row has its own add)
    HOLIDAY_ADD = "holiday.add"  # a tenant's own holiday
    HOLIDAY_REMOVE = "holiday.remove"
    HOLIDAY_CALENDAR = "holiday.calendar"  # the public holiday calendar a tenant observes
    WEB_SECOND_FACTOR_ENROL = "web.second_factor_enrol"  # a TOTP secret made, not on yet (web/totp.py)
    WEB_SECOND_FACTOR_ON = "web.second_factor_on"  # confirmed with a code; recovery codes issued
    WEB_SECOND_FACTOR_OFF = "web.second_factor_off"  # turned off by the user (password or code)
    WEB_SECOND_FACTOR_RESET = "web.second_factor_reset"  # removed by an administrator
    WEB_API_TOKEN_CREATE = "web.api_token_create"  # web/api_tokens.py
    WEB_API_TOKEN_REVOKE = "web.api_token_revoke"
    WEB_PASSWORD_RESET = "web.password_reset"  # by an administrator: a new set-up link, sessions ended
    GROUP_CREATE = "group.create"
    GROUP_RENAME = "group.rename"
    GROUP_DELETE = "group.delete"
    GROUP_MEMBER_ADD = "group.member_add"
    GROUP_MEMBER_REMOVE = "group.member_remove"
    GROUP_MANAGER_ADD = "group.manager_add"
    GROUP_MANAGER_REMOVE = "group.manager_remove"
    FACE_IMAGE_ADD = "face.image_add"  # a face image registered (web/faces.py: console or agent)
    FACE_IMAGE_REJECT = "face.image_reject"  # refused by the gate, with the reason; nothing stored
    FACE_IMAGE_VIEW = "face.image_view"  # a thumbnail or the image shown
    FACE_IMAGE_DELETE = "face.image_delete"


def cli_actor() -> str:
    """Who a command-line change is recorded as (actor and source): the OS user running it."""
    return f"cli:{getpass.getuser()}"


def changes(
    old: Mapping[str, Any], new: Mapping[str, Any], withheld: Collection[str] = ()
) -> tuple[dict[str, list[Any]], list[str]]:
    """Pure: ``({field: [old, new]} for the fields whose value differs, [withheld fields that changed])``.

    A field missing on one side counts as None there (a creation is ``old={}``). The values of
    ``withheld`` fields are not returned, only their names, sorted.
    """
    shown: dict[str, list[Any]] = {}
    hidden: list[str] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if name in withheld:
            hidden.append(name)
        else:
            shown[name] = [before, after]
    return shown, hidden


def detail(
    source: str,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    *,
    withheld: Collection[str] = (),
    **facts: Any,
) -> dict[str, Any]:
    """Pure: an entry's detail: ``source``, with ``old``/``new`` the ``changes`` (and ``withheld``
    names), then ``facts``. ValueError when any key or value looks like an agent token."""
    out: dict[str, Any] = {"source": source}
    if old is not None or new is not None:
        shown, hidden = changes(old or {}, new or {}, withheld)
        out["changes"] = shown
        if hidden:
            out["withheld"] = hidden
    for key, value in facts.items():
        if key in out:
            raise ValueError(f"audit detail: {key!r} is reserved, got it as a fact")
        out[key] = value
    _no_token(out, "detail")
    return out


def _no_token(value: Any, where: str) -> None:
    if isinstance(value, str):
        if value.startswith(TOKEN_PREFIX):
            raise ValueError(f"audit {where}: expected no agent token, got a value starting {TOKEN_PREFIX!r}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key in TOKEN_KEYS:
                raise ValueError(f"audit {where}: expected no token, got the key {key!r}")
            _no_token(item, f"{where}.{key}")
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _no_token(item, where)


def audit(
    session: Session,
    action: AuditAction,
    *,
    actor: str,
    source: str | None,
    target: str,
    tenant_id: str | None,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    withheld: Collection[str] = (),
    at: datetime | None = None,
    **facts: Any,
) -> AuditEntry:
    """Append the entry of ``action`` in ``session``'s transaction (the caller commits).

    ``source`` None: the same as ``actor``; ``at`` None: now."""
    return hash_chain_store.append(
        session,
        actor=actor,
        action=str(action),
        target=target,
        tenant_id=tenant_id,
        detail=detail(source or actor, old, new, withheld=withheld, **facts),
        at=at,
    )
