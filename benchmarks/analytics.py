"""Analytics benchmark: rollups for U users x D days, then a monthly attendance report from them.

Fills a fresh database with a tenant (Asia/Tokyo), U users on a Mon-Fri 09:00-18:00
schedule and D days of realistic intervals (a shift per working day with varied
start and end, presence changes, lunch away, two tasks; ~5 % absences; some
incidents), rebuilds every rollup (workers.rollup.rebuild_rollups) and times it,
then times the monthly attendance report (workers.reports.monthly_attendance)
and a monthly task report for all users.

    python benchmarks/analytics.py --users 1000 --days 90
    python benchmarks/analytics.py --users 1000 --days 90 --db postgresql \
        --database-url postgresql+psycopg://root@127.0.0.1:5432/test

Prints a table, then one line ``RESULT {json}`` (``monthly_report_s``: the slowest
of the timed report runs; ``rollup_user_days_per_s``).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as wall
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench_common import print_result
from sqlalchemy import func, insert, select

from core.settings import sqlite_url
from storage.accounts import create_tenant
from storage.db import create_database, drop_database, make_engine, upgrade
from workers.analytics_store import DAILY, INCIDENTS, INTERVALS, SCHEDULES, USERS, rebuild_rollups
from workers.reports import month_range, monthly_attendance, task_time

log = logging.getLogger("benchmarks.analytics")
TOKYO = ZoneInfo("Asia/Tokyo")
TENANT = "bench"
PAGE = 20_000


def at(day: date, minutes: int) -> datetime:
    """Local minutes after midnight of ``day`` (may exceed 24 h) as UTC."""
    return (datetime.combine(day, wall(0), tzinfo=TOKYO) + timedelta(minutes=minutes)).astimezone(UTC)


def user_day(rng: random.Random, user: int, day: date) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Intervals and incidents of one user's working day."""
    start = 9 * 60 + rng.choice((-20, -5, 0, 0, 0, 5, 15, 45))
    end = 18 * 60 + rng.choice((-60, -10, 0, 0, 10, 30, 90, 180))
    lunch = 12 * 60 + rng.randint(0, 30)
    agent = f"pc-{user}"
    rows: list[dict[str, Any]] = []

    def add(kind: str, value: str, a: int, b: int) -> None:
        rows.append(
            {
                "tenant_id": TENANT,
                "agent_id": agent,
                "user_id": user,
                "kind": kind,
                "value": value,
                "started_at": at(day, a),
                "ended_at": at(day, b),
                "start_event_id": uuid.uuid4().hex,
                "end_event_id": None,
                "closed_by": "event",
            }
        )

    add("duty", "on", start, end)
    add("presence", "present", start, lunch)
    add("presence", "away", lunch, lunch + 50)
    add("presence", "present", lunch + 50, end - 95)
    add("presence", "away", end - 95, end - 85)
    add("presence", "present", end - 85, end)
    add("task", f"project-{user % 7}", start, lunch)
    add("task", "meetings", lunch + 50, lunch + 170)
    incidents = []
    if rng.random() < 0.05:
        incidents.append(
            {
                "tenant_id": TENANT,
                "agent_id": agent,
                "user_id": user,
                "kind": rng.choice(("peeking", "impersonation")),
                "started_at": at(day, start + 100),
                "ended_at": at(day, start + 101),
                "evidence": [],
                "trace": {},
                "source_event_ids": [],
                "review_status": "unreviewed",
                "legal_hold": False,
                "created_at": at(day, start + 101),
                "updated_at": at(day, start + 101),
            }
        )
    return rows, incidents


def fill(engine: Any, users: int, first: date, days: int) -> dict[str, int]:
    create_tenant(engine, TENANT, "Benchmark", time_zone="Asia/Tokyo")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(USERS),
            [
                {
                    "tenant_id": TENANT,
                    "login": f"u{i:05d}",
                    "name": f"User {i}",
                    "role": "worker",
                    "enabled": True,
                    "language": "ja",
                    "created_at": now,
                }
                for i in range(users)
            ],
        )
        ids = list(conn.execute(select(USERS.c.id).where(USERS.c.tenant_id == TENANT)).scalars())
        conn.execute(
            insert(SCHEDULES),
            [
                {
                    "tenant_id": TENANT,
                    "user_id": u,
                    "weekday": wd,
                    "start_time": wall(9),
                    "end_time": wall(18),
                    "created_at": now,
                }
                for u in ids
                for wd in range(5)
            ],
        )
    rng = random.Random(7)
    counts = {"intervals": 0, "incidents": 0}
    pending: list[dict[str, Any]] = []
    pending_incidents: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            if pending:
                conn.execute(insert(INTERVALS), pending)
            if pending_incidents:
                conn.execute(insert(INCIDENTS), pending_incidents)
        counts["intervals"] += len(pending)
        counts["incidents"] += len(pending_incidents)
        pending.clear()
        pending_incidents.clear()

    for n, user in enumerate(ids):
        for d in range(days):
            day = first + timedelta(days=d)
            if day.weekday() >= 5 or rng.random() < 0.05:
                continue
            rows, incidents = user_day(rng, user, day)
            pending.extend(rows)
            pending_incidents.extend(incidents)
        if len(pending) >= PAGE:
            flush()
        if n % 200 == 199:
            log.info("filled %d / %d users (%d intervals)", n + 1, users, counts["intervals"] + len(pending))
    flush()
    return counts


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="tw-bench-analytics-"))
    drop_db: str | None = None
    if args.db == "postgresql":
        drop_db = f"tw_bench_{uuid.uuid4().hex[:8]}"
        url = create_database(args.database_url, drop_db)
    else:
        url = sqlite_url(work)
    engine = make_engine(url)
    try:
        upgrade(engine)
        first = date(2026, 1, 1)
        last = first + timedelta(days=args.days - 1)
        t0 = time.perf_counter()
        counts = fill(engine, args.users, first, args.days)
        fill_s = time.perf_counter() - t0
        log.info("filled in %.1f s; rebuilding rollups", fill_s)
        t0 = time.perf_counter()
        done = rebuild_rollups(engine, TENANT, first, last, now=datetime.now(UTC))
        rollup_s = time.perf_counter() - t0
        with engine.connect() as conn:
            rollup_rows = int(conn.execute(select(func.count()).select_from(DAILY)).scalar_one())
        month_first, month_last = month_range(first.year, first.month + 1 if args.days > 58 else first.month)
        timings = []
        report: list[Any] = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            report = monthly_attendance(engine, TENANT, month_first.year, month_first.month)
            timings.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tasks = task_time(engine, TENANT, month_first, month_last)
        task_s = time.perf_counter() - t0
        if len(report) != args.users:
            raise RuntimeError(f"expected {args.users} report rows, got {len(report)}")
        return {
            "db": args.db,
            "users": args.users,
            "days": args.days,
            "intervals": counts["intervals"],
            "incidents": counts["incidents"],
            "fill_s": round(fill_s, 2),
            "rollup_s": round(rollup_s, 2),
            "rollup_user_days": done.days,
            "rollup_user_days_per_s": round(done.days / rollup_s, 1),
            "rollup_rows": rollup_rows,
            "report_month": f"{month_first:%Y-%m}",
            "report_rows": len(report),
            "monthly_report_first_s": round(timings[0], 4),
            "monthly_report_median_s": round(statistics.median(timings), 4),
            "monthly_report_s": round(max(timings), 4),
            "monthly_task_report_s": round(task_s, 4),
            "task_rows": len(tasks),
            "worked_hours_total": round(sum(r.stats.worked_s for r in report) / 3600, 1),
        }
    finally:
        engine.dispose()
        if drop_db:
            drop_database(args.database_url, drop_db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of the monthly report")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TELEWORK_BENCH_DATABASE_URL"),
        help="PostgreSQL server URL; a fresh database is created on it and dropped at the end",
    )
    args = parser.parse_args()
    if args.users < 1 or args.days < 1 or args.repeat < 1:
        parser.error("--users, --days and --repeat must be positive")
    if args.db == "postgresql" and not args.database_url:
        parser.error("--db postgresql needs --database-url (or TELEWORK_BENCH_DATABASE_URL)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    result = run(args)
    print_result(result)


if __name__ == "__main__":
    main()
