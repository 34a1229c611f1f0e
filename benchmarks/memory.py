"""Resident memory of one `btp-bot serve` process as web chat conversations pile up.

One server on a fresh SQLite file (RATE_LIMIT_PER_MINUTE=1000000, Telegram off). RSS is VmRSS
from /proc/<pid>/status: right after start (the baseline, in the same run), then after 10,000
and after 20,000 conversations. A conversation opens a web chat session (POST
/api/chat/sessions) and sends two or three messages (POST /api/chat/messages, alternately),
answered from the knowledge. The load runs in its own process, 16 conversations at a time,
to 127.0.0.1, and pauses at each checkpoint while RSS is read (after a second of quiet).
Goals: under 200 MB after 10,000 conversations, and no growth from 10,000 to 20,000 beyond
noise. Run: `.venv/bin/python benchmarks/memory.py [--quick] [--concurrency N]`; `--quick`
reads at 1,000 and 2,000, with two messages in every conversation (a smoke run that fits the
test suite's time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import table
from http_throughput import (
    HOST,
    SCRIPT,
    LoadProcess,
    server_env,
    sqlite_url,
    start_server,
    stop,
    wait_ready,
)

from tests.support.ports import free_port

SETTLE = 1.0


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


# ---------------------------------------------------------------- the load generator


async def load_main(config: dict[str, Any]) -> None:
    import aiohttp

    target = config["target"]
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, json.loads(line))
        loop.call_soon_threadsafe(commands.put_nowait, {"stop": True})

    loop.run_in_executor(None, reader)
    print(json.dumps({"waiting": True}), flush=True)
    counts = {"conversations": 0, "messages": 0, "errors": 0}

    async def conversation(client: aiohttp.ClientSession, number: int) -> None:
        try:
            async with client.post(f"{target}/api/chat/sessions") as response:
                token = (await response.json(content_type=None))["token"]
            messages = 2 + number % 2 if config["two_or_three"] else 2
            for turn in range(messages):
                text, _ = SCRIPT[(number + turn) % len(SCRIPT)]
                async with client.post(
                    f"{target}/api/chat/messages",
                    json={"text": text},
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    body = await response.json(content_type=None)
                    if response.status != 200 or not body.get("replies"):
                        counts["errors"] += 1
                counts["messages"] += 1
        except Exception:
            counts["errors"] += 1
        counts["conversations"] += 1

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=config["concurrency"])
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        done = 0
        for checkpoint in config["checkpoints"]:
            if (await commands.get()).get("stop"):
                break
            numbers = iter(range(done, checkpoint))
            started = time.monotonic()

            async def runner(numbers: Any = numbers) -> None:
                for number in numbers:
                    await conversation(client, number)

            await asyncio.gather(*(runner() for _ in range(config["concurrency"])))
            done = checkpoint
            print(
                json.dumps({**counts, "seconds": time.monotonic() - started}),
                flush=True,
            )
    await commands.get()
    sys.stdout.flush()
    os._exit(0)  # the stdin reader thread may still be blocked


# ---------------------------------------------------------------- the run


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="read at 1,000 and 2,000")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--role", choices=["load"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.role == "load":
        asyncio.run(load_main(json.loads(options.config)))
        return
    checkpoints = [1_000, 2_000] if options.quick else [10_000, 20_000]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="btp-bench-") as name:
        folder = Path(name)
        port = free_port()
        server = start_server(port, server_env(sqlite_url(folder, "memory.db")), folder, "server")
        load = None
        try:
            wait_ready(server, port)
            time.sleep(SETTLE)
            points = [("right after start", 0, 0, rss_kib(server.popen.pid), 0.0)]
            config = {
                "target": f"http://{HOST}:{port}",
                "checkpoints": checkpoints,
                "concurrency": options.concurrency,
                "two_or_three": not options.quick,
            }
            load = LoadProcess(Path(__file__).resolve(), config, folder)
            load.read(60)
            errors = 0
            for checkpoint in checkpoints:
                load.send({"go": True})
                reached = load.read(3600)
                time.sleep(SETTLE)
                errors = reached["errors"]
                points.append(
                    (
                        f"after {checkpoint:,} conversations",
                        reached["conversations"],
                        reached["messages"],
                        rss_kib(server.popen.pid),
                        reached["seconds"],
                    )
                )
        finally:
            clean = stop(server)
            if load is not None:
                load.close()
    start_rss = points[0][3]["VmRSS"]
    rows = []
    for label, conversations, messages, rss, seconds in points:
        rows.append(
            [
                label,
                f"{conversations:,}",
                f"{messages:,}",
                mib(rss["VmRSS"]),
                f"{rss['VmRSS'] / start_rss:.2f}x",
                mib(rss["VmHWM"]),
                f"{seconds:.0f} s" if seconds else "-",
            ]
        )
    first, second = points[1][3]["VmRSS"], points[2][3]["VmRSS"]
    print(f"# Memory of one btp-bot serve process ({time.monotonic() - started:.0f} s in all)\n")
    print(
        table(
            [
                "point",
                "conversations",
                "messages",
                "RSS (VmRSS)",
                "vs right after start",
                "peak (VmHWM)",
                "load time for the step",
            ],
            rows,
        )
    )
    print(
        f"\nfrom {checkpoints[0]:,} to {checkpoints[1]:,} conversations: "
        f"{(second - first) / 1024:+.1f} MB ({(second - first) / first:+.1%}); "
        f"{options.concurrency} conversations at a time; {errors} errors"
        + ("" if clean else "; the server did not stop on SIGTERM within 30 s (killed)")
    )


if __name__ == "__main__":
    main()
