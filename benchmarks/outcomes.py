"""The outcome checker over a platform of 10,000 merchants and 1,000,000 payment attempts.

On PostgreSQL (`--database-url`, default `$BENCH_DATABASE_URL`): the schema by Alembic, then
the platform filled with `generate_series` (10,000 merchants and logins, 500,000 orders with
two attempts each over 30 days, their channel records, 20,000 links), a month of settled
outcome checks (`--history`, 300,000) and a day's pending ones (`--pending`, 10,000, every
kind). Then one pass of the checker (`check_pass`, the server's job) through the embedded
platform, timed against its interval (`OUTCOME_CHECK_SECONDS`, 300 s), the report over 30
days, and the query plans (EXPLAIN ANALYZE) of the statements a pass and the report run.

    BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bench_outcomes \\
        .venv/bin/python benchmarks/outcomes.py [--quick]

Everything in the database named is dropped and made again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import table
from sqlalchemy import text

from bot.outcomes.checker import _PENDING, _REPEAT, check_pass
from bot.outcomes.report import outcome_report
from bot.platform.sql import SqlPlatform
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.models import Base

INTERVAL = timedelta(seconds=300)

SEED = [
    # 10,000 merchants, one login each (half logged in a week ago).
    """INSERT INTO platform_merchants (id, name, status)
       SELECT 'M' || lpad(i::text, 6, '0'), 'merchant ' || i, 'active'
       FROM generate_series(1, :merchants) i""",
    """INSERT INTO platform_accounts (merchant_id, login, password_hash, failed_attempts, status,
                                      last_login_at)
       SELECT 'M' || lpad(i::text, 6, '0'), 'login' || i, 'x', 0, 'active',
              CASE WHEN i % 2 = 0 THEN CAST(:now AS timestamptz) - interval '7 days' END
       FROM generate_series(1, :merchants) i""",
    # Orders spread over 30 days and the merchants; two attempts each: 1,000,000 attempts.
    """INSERT INTO platform_orders (order_no, merchant_id, amount_fen, currency, method, status,
                                    created_at, updated_at)
       SELECT 'BT' || lpad(i::text, 16, '0'),
              'M' || lpad((1 + i % :merchants)::text, 6, '0'), 1000 + i % 5000, 'CNY', 'qr',
              CASE WHEN i % 5 < 3 THEN 'paid' ELSE 'failed' END,
              CAST(:now AS timestamptz) - make_interval(secs => (i % 2592000)),
              CAST(:now AS timestamptz) - make_interval(secs => (i % 2592000))
       FROM generate_series(1, :orders) i""",
    """INSERT INTO platform_payment_attempts (order_no, status, failure_code, at)
       SELECT 'BT' || lpad(i::text, 16, '0'), 'failed', 'network_timeout',
              CAST(:now AS timestamptz) - make_interval(secs => (i % 2592000))
       FROM generate_series(1, :orders) i""",
    """INSERT INTO platform_payment_attempts (order_no, status, failure_code, at)
       SELECT 'BT' || lpad(i::text, 16, '0'),
              CASE WHEN i % 5 < 3 THEN 'succeeded' ELSE 'failed' END,
              CASE WHEN i % 5 < 3 THEN NULL ELSE 'bank_declined' END,
              CAST(:now AS timestamptz) - make_interval(secs => (i % 2592000)) + interval '1 minute'
       FROM generate_series(1, :orders) i""",
    """INSERT INTO platform_channel_records (order_no, status, synced_at)
       SELECT 'BT' || lpad(i::text, 16, '0'),
              CASE WHEN i % 5 < 3 OR i % 7 = 0 THEN 'paid' ELSE 'failed' END,
              CAST(:now AS timestamptz)
       FROM generate_series(1, :orders) i""",
    """INSERT INTO platform_payment_links (id, merchant_id, amount_fen, url, created_at, paid_at)
       SELECT 'PL' || lpad(i::text, 14, '0'), 'M' || lpad((1 + i % :merchants)::text, 6, '0'),
              5000, 'https://pay.example/l/' || i, CAST(:now AS timestamptz) - interval '2 hours',
              CASE WHEN i % 2 = 0 THEN CAST(:now AS timestamptz) - interval '1 hour' END
       FROM generate_series(1, :links) i""",
    # The chats the checks belong to.
    """INSERT INTO conversations (channel, chat_id, state, language, language_pinned, slots,
                                  suspended, failures, findings, created_at, updated_at)
       SELECT 'telegram', 'chat' || i, 'bot', 'zh', false, '{}', '[]', 0, '{}',
              CAST(:now AS timestamptz), CAST(:now AS timestamptz)
       FROM generate_series(1, :conversations) i""",
    # A month of settled checks, then a day's pending ones of every kind.
    """INSERT INTO outcome_checks (conversation_id, kind, topic, subject, started_at, due_at,
                                   status, checked_at)
       SELECT 1 + i % :conversations, 'payment_link', 'payment_link', 'PL_OLD' || i,
              CAST(:now AS timestamptz) - make_interval(secs => 86400 + i % 2505600),
              CAST(:now AS timestamptz) - make_interval(secs => i % 2505600),
              CASE WHEN i % 3 = 0 THEN 'not_verified' ELSE 'verified' END, CAST(:now AS timestamptz)
       FROM generate_series(1, :history) i""",
    """INSERT INTO outcome_checks (conversation_id, kind, topic, subject, started_at, due_at,
                                   status)
       SELECT 1 + i % :conversations,
              (ARRAY['payment_link', 'password_reset', 'resync', 'payment_failure', 'faq',
                     'payment_link', 'faq', 'payment_link', 'password_reset', 'faq'])[1 + i % 10],
              (ARRAY['payment_link', 'password_reset', 'data_sync', 'payment_failure',
                     'fees.rates', 'payment_link', 'account.login', 'payment_link',
                     'password_reset', 'fees.rates'])[1 + i % 10],
              CASE i % 10
                WHEN 0 THEN 'PL' || lpad((1 + i % :links)::text, 14, '0')
                WHEN 5 THEN 'PL' || lpad((1 + i % :links)::text, 14, '0')
                WHEN 7 THEN 'PL' || lpad((1 + i % :links)::text, 14, '0')
                WHEN 1 THEN 'login' || (1 + i % :merchants)
                WHEN 8 THEN 'login' || (1 + i % :merchants)
                WHEN 2 THEN 'BT' || lpad((1 + i % :orders)::text, 16, '0')
                WHEN 3 THEN 'BT' || lpad((1 + i % :orders)::text, 16, '0')
                WHEN 6 THEN 'account.login'
                ELSE 'fees.rates' END,
              CAST(:now AS timestamptz) - make_interval(secs => i % 86400),
              CAST(:now AS timestamptz) - make_interval(secs => i % 86400) + CASE i % 10
                WHEN 2 THEN interval '1 hour' WHEN 4 THEN interval '72 hours'
                WHEN 6 THEN interval '72 hours' WHEN 9 THEN interval '72 hours'
                ELSE interval '24 hours' END,
              'pending'
       FROM generate_series(1, :pending) i""",
]

PLANS: dict[str, tuple[Any, dict[str, Any]]] = {
    "pending batch (checker)": (
        _PENDING,
        {"after": 0, "batch": 200},
    ),
    "repeat contact (FAQ check)": (
        _REPEAT,
        {
            "conversation_id": 5,
            "subject": "fees.rates",
            "started_at": "day_ago",
            "due_at": "in_two_days",
            "id": 0,
        },
    ),
    "merchant's orders since (failure check)": (
        text(
            "SELECT * FROM platform_orders WHERE merchant_id = 'M000042' AND created_at >= :since"
            " ORDER BY created_at DESC LIMIT 50"
        ),
        {"since": None},
    ),
    "an order's attempts (failure and re-sync checks)": (
        text(
            "SELECT * FROM platform_payment_attempts WHERE order_no = 'BT0000000000004242'"
            " ORDER BY at, id"
        ),
        {},
    ),
}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--quick", action="store_true", help="a tenth of everything")
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=300_000)
    args = parser.parse_args()
    if not args.database_url or not args.database_url.startswith("postgresql"):
        raise SystemExit("set --database-url or BENCH_DATABASE_URL to a PostgreSQL database")
    scale = 10 if args.quick else 1
    now = datetime.now(UTC)
    sizes = {
        "merchants": 10_000 // scale,
        "orders": 500_000 // scale,
        "links": 20_000 // scale,
        "conversations": 20_000 // scale,
        "history": args.history // scale,
        "pending": args.pending // scale,
        "now": now,
    }
    engine = create_engine(args.database_url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await upgrade(engine)
    started = time.perf_counter()
    async with engine.begin() as connection:
        # Filling the platform takes longer than any statement of the bot may.
        await connection.execute(text("SET LOCAL statement_timeout = 0"))
        for statement in SEED:
            await connection.execute(text(statement), sizes)
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        for table_name in Base.metadata.tables:
            await connection.execute(text(f"ANALYZE {table_name}"))
        attempts = await connection.scalar(text("SELECT count(*) FROM platform_payment_attempts"))
    seeded = time.perf_counter() - started
    print(
        f"seeded {sizes['merchants']:,} merchants, {attempts:,} payment attempts,"
        f" {sizes['history']:,} settled and {sizes['pending']:,} pending checks in {seeded:.0f} s"
    )

    sessions = session_factory(engine)
    gateway = SqlPlatform(sessions, shares_bot_database=False)
    started = time.perf_counter()
    result = await check_pass(engine, gateway, now=now)
    pass_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = await outcome_report(sessions, timedelta(days=30), now=now)
    report_seconds = time.perf_counter() - started
    second = time.perf_counter()
    again = await check_pass(engine, gateway, now=now)
    again_seconds = time.perf_counter() - second
    settled = ", ".join(f"{n:,} {s.value}" for s, n in result.settled.items())
    print(
        table(
            ["step", "rows", "seconds", "interval", "share of interval"],
            [
                [
                    f"checker pass ({settled})",
                    f"{result.looked:,}",
                    f"{pass_seconds:.1f}",
                    f"{INTERVAL.total_seconds():.0f} s",
                    f"{pass_seconds / INTERVAL.total_seconds():.0%}",
                ],
                [
                    "next pass (what stayed pending)",
                    f"{again.looked:,}",
                    f"{again_seconds:.1f}",
                    f"{INTERVAL.total_seconds():.0f} s",
                    f"{again_seconds / INTERVAL.total_seconds():.0%}",
                ],
                [
                    "report over 30 days",
                    f"{report.total.checks:,}",
                    f"{report_seconds:.2f}",
                    "-",
                    "-",
                ],
            ],
        )
    )
    async with engine.connect() as connection:
        for name, (statement, parameters) in PLANS.items():
            moments = {
                None: now - timedelta(days=1),
                "day_ago": now - timedelta(days=1),
                "in_two_days": now + timedelta(days=2),
            }
            values = {
                key: moments[value] if value is None or value in moments else value
                for key, value in parameters.items()
            }
            compiled = statement.compile(
                dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
            )
            plan = await connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + str(compiled),
                _positional(compiled, values),
            )
            print(f"\n### {name}\n```")
            print("\n".join(row[0] for row in plan))
            print("```")
    await engine.dispose()


def _positional(compiled: object, values: dict[str, object]) -> tuple[object, ...]:
    """The parameters in the order asyncpg's $n placeholders want them."""
    names: list[str] = list(getattr(compiled, "positiontup", None) or [])
    bound: dict[str, object] = dict(getattr(compiled, "params", {}))
    bound.update({k: v for k, v in values.items() if k in bound or k in names})
    return tuple(_plain(bound[name]) for name in names)


def _plain(value: object) -> object:
    return getattr(value, "value", value)


if __name__ == "__main__":
    asyncio.run(main())
