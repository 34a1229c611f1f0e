"""Incident detection over a large platform: 10,000 merchants and 1,000,000 payment attempts.

The embedded platform's tables on PostgreSQL are filled with generate_series (one order per
attempt, the attempts spread evenly over the last 24 hours, a burst of `network_timeout`
failures from 300 merchants in the last 5 minutes), then `IncidentDetector.run_once` is timed
(the gateway's `recent_payment_attempts` over the last 10 minutes, the rule, the write), and the
query plan of the read is printed (EXPLAIN ANALYZE). The goal: a run well within its interval
(60 s). Nothing is compared with a baseline: the figure is against the interval.

Run: `BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bench_incident
.venv/bin/python benchmarks/incidents.py [attempts] [runs]` (the database is emptied first).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta

from _common import median, table
from sqlalchemy import text

from bot.incidents.job import IncidentDetector
from bot.platform.sql import SqlPlatform
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.models import Base

MERCHANTS = 10_000
BURST = 3_000
BURST_MERCHANTS = 300

_FILL = [
    """INSERT INTO platform_merchants (id, name, status)
       SELECT 'B' || lpad(i::text, 6, '0'), 'merchant ' || i, 'active'
       FROM generate_series(0, :merchants - 1) AS i""",
    # Orders and attempts: attempt i at now - i * 86400 / n seconds, 2 % failing as usual.
    """INSERT INTO platform_orders (order_no, merchant_id, amount_fen, currency, method, status,
                                   created_at, updated_at)
       SELECT 'BT' || lpad(i::text, 16, '0'), 'B' || lpad((i % :merchants)::text, 6, '0'),
              1000 + i % 5000, 'CNY', (ARRAY['qr', 'link', 'app'])[1 + i % 3],
              CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'paid' END,
              now() - (i * 86400.0 / :attempts) * interval '1 second',
              now() - (i * 86400.0 / :attempts) * interval '1 second'
       FROM generate_series(0, :attempts - 1) AS i""",
    """INSERT INTO platform_payment_attempts (order_no, status, failure_code, at)
       SELECT 'BT' || lpad(i::text, 16, '0'),
              CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
              CASE WHEN i % 50 = 0 THEN
                (ARRAY['insufficient_balance', 'network_timeout', 'bank_declined'])[1 + i % 3]
              END,
              now() - (i * 86400.0 / :attempts) * interval '1 second'
       FROM generate_series(0, :attempts - 1) AS i""",
    # The burst: timeouts on the QR channel from many merchants in the last 5 minutes.
    """INSERT INTO platform_orders (order_no, merchant_id, amount_fen, currency, method, status,
                                   created_at, updated_at)
       SELECT 'BX' || lpad(i::text, 16, '0'), 'B' || lpad((i % :burst_merchants)::text, 6, '0'),
              1000, 'CNY', 'qr', 'failed', now() - (i % 300) * interval '1 second',
              now() - (i % 300) * interval '1 second'
       FROM generate_series(0, :burst - 1) AS i""",
    """INSERT INTO platform_payment_attempts (order_no, status, failure_code, at)
       SELECT 'BX' || lpad(i::text, 16, '0'), 'failed', 'network_timeout',
              now() - (i % 300) * interval '1 second'
       FROM generate_series(0, :burst - 1) AS i""",
    "ANALYZE",
]

_PLAN = """EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT o.merchant_id, o.method, a.status, a.at, a.failure_code
FROM platform_payment_attempts a JOIN platform_orders o ON o.order_no = a.order_no
WHERE a.at >= now() - interval '10 minutes'
ORDER BY a.at DESC, a.id DESC LIMIT 20000"""


async def main(attempts: int, runs: int) -> None:
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        sys.exit("set BENCH_DATABASE_URL=postgresql+asyncpg://... (a database to empty)")
    # Filling a million rows takes longer than a message's statement may.
    settings = Settings(
        database_url=url, incident_interval_seconds=60.0, database_statement_timeout=600.0
    )
    db = create_engine(url, settings)
    await upgrade(db)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    started = time.perf_counter()
    async with db.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        values = {
            "merchants": MERCHANTS,
            "attempts": attempts,
            "burst": BURST,
            "burst_merchants": BURST_MERCHANTS,
        }
        for statement in _FILL[:-1]:
            await connection.execute(text(statement), values)
    async with db.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("ANALYZE"))
    filled = time.perf_counter() - started
    sessions = session_factory(db)
    gateway = SqlPlatform(sessions, shares_bot_database=False)
    moment = [datetime.now(UTC)]
    detector = IncidentDetector(sessions, gateway, settings, clock=lambda: moment[0])
    timings, seen, opened = [], 0, 0
    for _ in range(runs):
        begun = time.perf_counter()
        result = await detector.run_once()
        timings.append(time.perf_counter() - begun)
        assert result.ran
        seen, opened = result.attempts, opened + result.opened
        moment[0] += timedelta(seconds=60)  # the next interval (the burst stays in the window)
    async with db.connect() as connection:
        plan = [row[0] for row in await connection.execute(text(_PLAN))]
        size = await connection.scalar(
            text("SELECT pg_size_pretty(pg_relation_size('ix_platform_payment_attempts_at'))")
        )
    await db.dispose()
    print(f"filled {MERCHANTS:,} merchants and {attempts + BURST:,} attempts in {filled:.1f} s")
    print(
        table(
            ["attempts in 24 h", "in the window", "runs", "run median", "run max", "opened"],
            [
                [
                    f"{attempts + BURST:,}",
                    f"{seen:,}",
                    str(runs),
                    f"{median(timings) * 1000:.0f} ms",
                    f"{max(timings) * 1000:.0f} ms",
                    str(opened),
                ]
            ],
        )
    )
    print(f"\nix_platform_payment_attempts_at: {size}\n")
    print("\n".join(plan))


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(arguments + [1_000_000, 5][len(arguments) :])))
