"""A schedule CSV import (:mod:`web.schedule_csv`): all rows stored, or none.

Administrators only. The file is parsed and every row checked (logins and group names must be
the tenant's); when any row has a problem nothing is stored and the report lists the problems
(row, column, what was expected, what arrived). Otherwise every row is added, in one transaction,
as a new entry (an import adds to what is there; remove entries in the console or the API to
replace them), each audited as ``schedule.add`` and the import as ``schedule.import``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from sqlmodel import Session, col

from storage.audit_trail import AuditAction, audit
from storage.models import Group, User
from web.audit import at, user_actor
from web.schedule_csv import MAX_ERRORS, Row, RowError, parse, shown
from web.schedules import Entry, Subject, must_change, store_entries
from web.scope import Scope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportReport:
    stored: int  # rows stored (0 when any row failed)
    errors: list[RowError]  # at most MAX_ERRORS
    error_count: int


def entry_of(row: Row) -> Entry:
    return Entry(row.weekday, row.day, row.start, row.end, row.valid_from, row.valid_to)


def import_csv(
    scope: Scope, data: bytes, *, max_bytes: int, max_rows: int, source: str, now: float
) -> ImportReport:
    """Parse, check and (when every row is right) store the CSV ``data``."""
    must_change(scope)
    if len(data) > max_bytes:
        error = RowError(None, None, f"a file of at most {max_bytes} bytes", f"{len(data)} bytes")
        return ImportReport(0, [error], 1)
    parsed = parse(data, max_rows)
    if parsed.error_count:
        return ImportReport(0, parsed.errors, parsed.error_count)
    p = scope.principal
    with Session(scope.engine) as s:
        logins = {r.user for r in parsed.rows if r.user is not None}
        names = {r.group for r in parsed.rows if r.group is not None}
        found_users = s.execute(scope.visible_users().where(col(User.login).in_(sorted(logins)))).scalars()
        users = {u.login: u.id for u in found_users}
        found_groups = s.execute(scope.visible_groups().where(col(Group.name).in_(sorted(names)))).scalars()
        groups = {g.name: g.id for g in found_groups}
        errors: list[RowError] = []
        batches: dict[Subject, list[Entry]] = defaultdict(list)
        for row in parsed.rows:
            if row.user is not None and row.user not in users:
                errors.append(
                    RowError(row.row, "user", "the login of a user of this organisation", shown(row.user))
                )
            elif row.group is not None and row.group not in groups:
                errors.append(
                    RowError(row.row, "group", "the name of a group of this organisation", shown(row.group))
                )
            elif row.user is not None:
                batches[Subject("user", int(users[row.user]), row.user)].append(entry_of(row))
            elif row.group is not None:
                batches[Subject("group", int(groups[row.group]), row.group)].append(entry_of(row))
        if errors:
            return ImportReport(0, errors[:MAX_ERRORS], len(errors))
        for who, new in batches.items():
            store_entries(s, scope, who, new, source=source, now=now)
        audit(
            s, AuditAction.SCHEDULE_IMPORT, actor=user_actor(p.user_id), source=source,
            target=f"tenant:{p.tenant}", tenant_id=p.tenant, rows=len(parsed.rows),
            users=sum(1 for w in batches if w.kind == "user"),
            groups=sum(1 for w in batches if w.kind == "group"), at=at(now),
        )  # fmt: skip
        s.commit()
    log.info("schedule CSV imported", extra={"tenant": p.tenant, "rows": len(parsed.rows)})
    return ImportReport(len(parsed.rows), [], 0)
