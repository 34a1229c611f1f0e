"""Messages per second through `Engine.handle` on SQLite, against a one-row baseline.

A scripted conversation (greeting, FAQ questions in zh and en, a button press, a feedback
vote, an out-of-scope question, a flow request, thanks) runs in many chats at once. The
baseline, measured in the same run on the same kind of database file, is one transaction per
message that writes one row through the same SQLAlchemy async ORM: the floor any durable
message handling pays. Run: `.venv/bin/python benchmarks/engine_throughput.py [chats]`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, percentile, table

from bot.app import open_bot
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.models import ProcessedInbound
from bot.types import IncomingMessage

SCRIPT: list[tuple[str, str | None]] = [
    ("你好", None),
    ("手续费怎么收", None),
    ("", "fb:fees.rates:yes"),
    ("提现多久能到账", None),
    ("how long does the review take?", None),
    ("你们能贷款吗", None),
    ("订单BT2026112600000001支付失败了", None),
    ("", "faq:security.encryption"),
    ("二维码收款怎么弄", None),
    ("谢谢", None),
]


async def run_engine(database: Path, chats: int) -> tuple[float, list[float], int]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database}", knowledge_dir=ROOT / "knowledge"
    )
    latencies: list[float] = []
    async with open_bot(settings) as bot:

        async def conversation(chat: int) -> None:
            for number, (text, action) in enumerate(SCRIPT):
                message = IncomingMessage(
                    "bench", f"c{chat}", f"u{chat}", f"{chat}:{number}", text, action
                )
                start = time.perf_counter()
                await bot.engine.handle(message)
                latencies.append((time.perf_counter() - start) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(conversation(chat) for chat in range(chats)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, chats * len(SCRIPT)


async def run_baseline(database: Path, chats: int) -> tuple[float, list[float], int]:
    db = create_engine(f"sqlite+aiosqlite:///{database}")
    await upgrade(db)
    sessions = session_factory(db)
    latencies: list[float] = []

    async def conversation(chat: int) -> None:
        for number in range(len(SCRIPT)):
            start = time.perf_counter()
            async with sessions() as session, session.begin():
                session.add(ProcessedInbound(channel="bench", message_id=f"{chat}:{number}"))
            latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(conversation(chat) for chat in range(chats)))
    elapsed = time.perf_counter() - start
    await db.dispose()
    return elapsed, latencies, chats * len(SCRIPT)


async def main(chats: int) -> None:
    rows = []
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, runner in (("one-row baseline", run_baseline), ("Engine.handle", run_engine)):
            elapsed, latencies, count = await runner(Path(folder) / f"{name[:3]}.db", chats)
            results[name] = count / elapsed
            rows.append(
                [
                    name,
                    f"{count}",
                    f"{count / elapsed:,.0f}/s",
                    f"{percentile(latencies, 50):.1f} / {percentile(latencies, 99):.1f} ms",
                ]
            )
    ratio = results["Engine.handle"] / results["one-row baseline"]
    print(table(["path (SQLite, WAL)", "messages", "throughput", "latency p50 / p99"], rows))
    print(
        f"\nEngine.handle throughput = {ratio:.2f}x the one-row baseline ({chats} concurrent chats)"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
