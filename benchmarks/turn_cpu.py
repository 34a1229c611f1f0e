"""CPU per message through `Engine.handle`, one message at a time, on a SQLite file.

Throughput on a shared, busy machine says more about the neighbours than about the code; the
CPU a turn costs (`time.process_time`, which counts this process only) survives the noise
better. Each of 40 chats is sent its first message (not measured), then rounds of the HTTP
script's later messages, each text made distinct (trailing question marks and spaces) so that
no cache sees the same text twice. Compare two commits by running this alternately with
`PYTHONPATH` pointing at each tree (see README.md, "Comparing two commits").

Run: `.venv/bin/python benchmarks/turn_cpu.py [chats] [rounds]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bot
from bot.app import open_bot
from bot.settings import Settings
from bot.types import IncomingMessage

TEXTS = [
    "手续费怎么收",
    "提现多久能到账",
    "how long does the review take?",
    "二维码收款怎么弄",
    "谢谢",
]


async def measure(chats: int, rounds: int) -> list[float]:
    """CPU milliseconds per message, one figure per round."""
    root = Path(bot.__file__).resolve().parent.parent  # the tree on PYTHONPATH
    per_round: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{folder}/turn.db",
            knowledge_dir=root / "knowledge",
            rate_limit_per_minute=1_000_000,
        )
        async with open_bot(settings) as running:
            for chat in range(chats):
                await running.engine.handle(
                    IncomingMessage("telegram", f"c{chat}", f"u{chat}", f"first{chat}", "你好")
                )
            sent = 0
            for number in range(rounds):
                started, count = time.process_time(), 0
                for chat in range(chats):
                    for index, text in enumerate(TEXTS):
                        sent += 1
                        distinct = text + "?" * (1 + sent % 13) + " " * (sent % 11)
                        message_id = f"{number}:{chat}:{index}"
                        await running.engine.handle(
                            IncomingMessage(
                                "telegram", f"c{chat}", f"u{chat}", message_id, distinct
                            )
                        )
                        count += 1
                per_round.append((time.process_time() - started) * 1000 / count)
    return per_round


def main() -> None:
    chats = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    per_round = asyncio.run(measure(chats, rounds))
    tree = Path(bot.__file__).resolve().parent.parent
    print(
        f"{tree}: CPU per message, median {statistics.median(per_round):.3f} ms, "
        f"min {min(per_round):.3f} ms, rounds {[round(r, 3) for r in per_round]}"
    )


if __name__ == "__main__":
    main()
