"""A message through the real HTTP path, against a one-row baseline on the same database.

Paths: the web chat (`POST /api/chat/messages`, the replies come back in the response) and
Telegram (`POST /telegram/webhook`; the bot answers 200 once the update is stored, handles it
after, and its replies reach a Bot API stand-in through the outbox relay). Each runs in real
`btp-bot serve` processes, on SQLite and on PostgreSQL, with one process and (PostgreSQL) with
two on different ports sharing the database, the load spread over both.

The baseline, measured in the same run on the same database: a bare aiohttp handler (in this
file, in its own process) that parses the same update JSON and commits one row through the
same SQLAlchemy async ORM. Every figure is a ratio against it; absolute numbers are context.

The load generator is its own process: an aiohttp client with a fixed number of connections
that sends for a bounded time after a short warm-up, to 127.0.0.1 only, and stops by itself.
Its modes:
  closed  every connection sends its next request when the previous one was answered
          (as Telegram does with a webhook); for Telegram that is the 200 of the webhook,
          and the replies that reach the stand-in meanwhile are counted as answered.
  e2e     Telegram only: each connection is a user who waits for the bot's reply at the
          stand-in before sending again; latency from the webhook request to that reply.
  open    requests on a fixed schedule (e.g. 100/s) whatever the answers; latency counted
          from the scheduled time, so a stalled server cannot hide its queue.
The Bot API stand-in (tests/botapi.py) runs in the load generator's process, on its event
loop, so a reply's arrival is timed on the same clock as the request that caused it.

Many distinct chats take part (1,000 per measurement, reused round-robin, one message in
flight per chat), and the servers run with RATE_LIMIT_PER_MINUTE=1000000, so the per-chat
limit of 20 messages a minute is not what is measured. Each server starts on a fresh database
(a new SQLite file, or PostgreSQL's `btp_bench` dropped and created again), migrates it on
start, and is stopped with SIGTERM at the end.

Run: `.venv/bin/python benchmarks/http_throughput.py [--quick] [--only sqlite|postgres]
[--seconds N] [--concurrency N] [--rate N] [--postgres-url URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import percentile, table

from tests.support.ports import free_port

HOST = "127.0.0.1"
SECRET = "bench-webhook-secret"
RATE_LIMIT = "1000000"
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/btp_bench"
# Messages the bot answers from its knowledge without ever handing the chat to a person, so
# every message gets a reply however often a chat goes round the script.
SCRIPT: list[tuple[str, str]] = [
    ("你好", "zh-hans"),
    ("手续费怎么收", "zh-hans"),
    ("提现多久能到账", "zh-hans"),
    ("how long does the review take?", "en"),
    ("二维码收款怎么弄", "zh-hans"),
    ("谢谢", "zh-hans"),
]
CHATS = 1_000
CLIENT_TIMEOUT = 30.0


# ---------------------------------------------------------------- processes (orchestrator side)


def btp_bot() -> str:
    beside = Path(sys.executable).parent / "btp-bot"
    found = str(beside) if beside.exists() else shutil.which("btp-bot")
    if not found:
        raise SystemExit("btp-bot is not installed (pip install -e .)")
    return found


def server_env(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a served bot: our database, no per-chat limit, no limit on the web
    chat sessions one address opens (every chat of the run comes from 127.0.0.1), Telegram off
    unless `extra` switches it on. The folder it runs in has no .env file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    env.update(
        DATABASE_URL=database_url,
        RATE_LIMIT_PER_MINUTE=RATE_LIMIT,
        WEBCHAT_SESSIONS_PER_ADDRESS=RATE_LIMIT,
        PYTHONUNBUFFERED="1",
        **(extra or {}),
    )
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, argv: list[str], env: dict[str, str], folder: Path) -> Proc:
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, env=env, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    return Proc(name, popen, log)


def start_server(port: int, env: dict[str, str], folder: Path, name: str) -> Proc:
    return spawn(name, [btp_bot(), "serve", "--host", HOST, "--port", str(port)], env, folder)


def start_baseline(
    port: int, database_url: str, folder: Path, name: str, driver: str = "bot"
) -> Proc:
    argv = [sys.executable, __file__, "--role", "baseline", "--port", str(port)]
    argv += ["--driver", driver]
    return spawn(name, argv, server_env(database_url), folder)


def wait_ready(proc: Proc, port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://{HOST}:{port}/readyz"
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} was not ready within {timeout:.0f} s:\n{proc.tail()}")


def stop(proc: Proc, timeout: float = 30.0) -> bool:
    """SIGTERM, then wait; SIGKILL only if it did not stop in time. True if it stopped alone."""
    if proc.popen.poll() is not None:
        return True
    proc.popen.send_signal(signal.SIGTERM)
    try:
        proc.popen.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait()
        return False


class LoadProcess:
    """The load generator in its own process, spoken to in JSON lines over its stdin/stdout."""

    def __init__(self, script: Path, config: dict[str, Any], folder: Path) -> None:
        self._stderr = (folder / "load.log").open("wb")
        self.log = folder / "load.log"
        self.popen = subprocess.Popen(
            [sys.executable, str(script), "--role", "load", "--config", json.dumps(config)],
            cwd=folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("the load generator did not answer in time")
            ready, _, _ = select.select([self.popen.stdout], [], [], left)
            if not ready:
                continue
            line = self.popen.stdout.readline()
            if not line:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the load generator exited:\n{tail}")
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict):
                    return message

    def send(self, message: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(message) + "\n")
        self.popen.stdin.flush()

    def close(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(OSError):
                self.send({"stop": True})
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.terminate()
                self.popen.wait()
        self._stderr.close()


class CpuSampler:
    """CPU seconds of some processes and of the whole machine, sampled every 0.2 s on the
    monotonic clock (the same clock across processes), to read the CPU used in a window."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        import threading

        self.groups = groups
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sample()
        self._thread.start()

    @staticmethod
    def _process(pid: int) -> float:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return 0.0

    @staticmethod
    def _machine() -> float:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # not idle/iowait
        return busy / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        values = {name: sum(map(self._process, pids)) for name, pids in self.groups.items()}
        values["machine"] = self._machine()
        self.samples.append((time.monotonic(), values))

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cores(self, begin: float, end: float) -> dict[str, float]:
        """Average cores used per group between two monotonic times (nearest samples)."""
        first = min(self.samples, key=lambda sample: abs(sample[0] - begin))
        last = min(self.samples, key=lambda sample: abs(sample[0] - end))
        if last[0] <= first[0]:
            return {}
        span = last[0] - first[0]
        return {name: (last[1][name] - first[1][name]) / span for name in first[1]}


async def _handled(url: str, begin: float, end: float) -> int:
    """Telegram updates the bot finished handling between two wall-clock times."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from bot.storage.db import create_engine
    from bot.storage.models import InboundUpdate

    db = create_engine(url)
    try:
        async with db.connect() as connection:
            count = await connection.scalar(
                select(func.count())
                .select_from(InboundUpdate)
                .where(
                    InboundUpdate.processed_at >= datetime.fromtimestamp(begin, UTC),
                    InboundUpdate.processed_at <= datetime.fromtimestamp(end, UTC),
                )
            )
    finally:
        await db.dispose()
    return int(count or 0)


# ---------------------------------------------------------------- databases


def sqlite_url(folder: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{folder / name}"


def _pg_dsn(url: str, database: str | None = None) -> tuple[str, str]:
    """(asyncpg DSN of the maintenance database, name of the benchmark database)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database or "btp_bench"
    admin = parsed.set(drivername="postgresql", database=database or "postgres")
    return admin.render_as_string(hide_password=False), name


async def _pg_recreate(url: str) -> None:
    import asyncpg

    dsn, name = _pg_dsn(url)
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _pg_drop(url: str) -> None:
    import asyncpg

    dsn, name = _pg_dsn(url)
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def postgres_available(url: str) -> str | None:
    """None when PostgreSQL answers at `url`, else why not."""
    try:
        asyncio.run(_pg_recreate(url))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# ---------------------------------------------------------------- the baseline server


def run_baseline(port: int, driver: str) -> None:
    """A bare aiohttp handler: parse the update JSON, commit one row through the ORM.

    `driver` "aiosqlite": SQLite through SQLAlchemy's stock aiosqlite adapter (the engine the
    load issue's orientation figures were measured with), not the bot's inline connection."""
    from aiohttp import web
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bot.settings import Settings
    from bot.storage.db import create_engine, session_factory, upgrade
    from bot.storage.models import ProcessedInbound

    url = Settings().database_url
    sessions_key = web.AppKey("sessions", async_sessionmaker[AsyncSession])

    async def resources(app: web.Application) -> Any:
        stock = driver == "aiosqlite" and url.startswith("sqlite")
        db = create_engine(url, async_creator=None) if stock else create_engine(url)
        await upgrade(db)
        app[sessions_key] = session_factory(db)
        yield
        await db.dispose()

    async def webhook(request: web.Request) -> web.Response:
        update = json.loads(await request.read())
        async with request.app[sessions_key]() as session, session.begin():
            session.add(ProcessedInbound(channel="bench", message_id=str(update["update_id"])))
        return web.json_response({"ok": True})

    async def ready(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.cleanup_ctx.append(resources)
    app.router.add_post("/telegram/webhook", webhook)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None, shutdown_timeout=5)


# ---------------------------------------------------------------- the load generator


@dataclass
class Sample:
    start: float
    end: float
    ok: bool


@dataclass
class Tally:
    """What one load run saw: request samples, replies at the stand-in, errors."""

    requests: list[Sample] = field(default_factory=list)
    replies: list[tuple[float, float]] = field(default_factory=list)  # (sent, reply arrived)
    errors: dict[str, int] = field(default_factory=dict)
    sessions: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def summarise(tally: Tally, begin: float, end: float, unanswered: int) -> dict[str, Any]:
    window = end - begin
    done = [s for s in tally.requests if s.ok and begin <= s.end <= end]
    timed = [(s.end - s.start) * 1000 for s in tally.requests if s.ok and s.start >= begin]
    answered = [(a - s) * 1000 for s, a in tally.replies if begin <= a <= end]
    e2e = [(a - s) * 1000 for s, a in tally.replies if s >= begin]
    e2e += [float("inf")] * unanswered

    def spread(samples: list[float]) -> list[float] | None:
        if not samples:
            return None
        return [percentile(samples, 50), percentile(samples, 99)]

    offset = time.time() - time.monotonic()
    return {
        "window": window,
        "begin": begin,
        "end": end,
        "wall_begin": begin + offset,
        "wall_end": end + offset,
        "requests": len(timed),
        "throughput": len(done) / window,
        "latency": spread(timed),
        "answered": len(answered),
        "answered_rate": len(answered) / window,
        "e2e": spread(e2e),
        "e2e_count": len(e2e),
        "unanswered": unanswered,
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
        "sessions": tally.sessions,
    }


class Chats:
    """Chats (Telegram chat ids, web chat tokens) with one message in flight each: a chat goes
    back in line once answered, so it comes round again only after all the others. Each chat
    walks through SCRIPT. When every chat waits for an answer, new Telegram chats are made."""

    def __init__(self, keys: list[Any], fresh: Iterator[Any] | None = None) -> None:
        self._free: deque[Any] = deque(keys)
        self._fresh = fresh
        self._turn: dict[Any, int] = {}

    def take(self) -> Any:
        if self._free:
            chat = self._free.popleft()
        elif self._fresh is not None:
            chat = next(self._fresh)
        else:
            raise RuntimeError("more requests in flight than chats")
        self._turn[chat] = self._turn.get(chat, -1) + 1
        return chat

    def give_back(self, chat: Any) -> None:
        self._free.append(chat)

    def text(self, chat: Any) -> tuple[str, str]:
        return SCRIPT[self._turn[chat] % len(SCRIPT)]

    def __len__(self) -> int:
        return len(self._free)

    def __contains__(self, chat: object) -> bool:
        return chat in self._free


class LoadGenerator:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.kind: str = config["kind"]  # baseline | webchat | telegram
        self.mode: str = config["mode"]  # closed | e2e | open
        self.targets: list[str] = config["targets"]
        self.tally = Tally()
        first, count = 100_000, int(config.get("chats", CHATS))
        self.chats = Chats(list(range(first, first + count)), itertools.count(first + count))
        self.update_ids = itertools.count(1)
        self.target_turn = itertools.count()
        self.pending: dict[int, float] = {}  # chat -> when its message was sent
        self.waiters: dict[int, asyncio.Future[float]] = {}
        self.stub: Any = None

    # -- the Bot API stand-in

    async def start_stub(self) -> str:
        from tests.botapi import BotApiStub

        generator = self

        class ReplyStub(BotApiStub):
            """Keeps no call log (a long run would pile it up); tells the generator instead."""

            def _record(self, call: Any) -> None:
                if not call.failed and call.method in ("sendMessage", "sendPhoto"):
                    generator.on_reply(call.params.get("chat_id"), call.at)

        self.stub = ReplyStub()
        await self.stub.start()
        return str(self.stub.url)

    def on_reply(self, chat: Any, at: float) -> None:
        sent = self.pending.pop(chat, None) if isinstance(chat, int) else None
        if sent is None:
            return  # a second part of an answer already counted
        self.tally.replies.append((sent, at))
        waiter = self.waiters.pop(chat, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(at)
        self.chats.give_back(chat)

    # -- requests

    def target(self) -> str:
        return self.targets[next(self.target_turn) % len(self.targets)]

    async def post_update(self, client: Any, chat: int, sent: float) -> bool:
        """One webhook request (to the bot or the baseline); records its sample."""
        from tests.telegram_updates import text_message

        text, language = self.chats.text(chat)
        update = text_message(next(self.update_ids), chat, text, language_code=language)
        ok = False
        try:
            async with client.post(
                f"{self.target()}/telegram/webhook",
                data=json.dumps(update, ensure_ascii=False).encode(),
                headers={
                    "Content-Type": "application/json",
                    "X-Telegram-Bot-Api-Secret-Token": SECRET,
                },
            ) as response:
                await response.read()
                ok = response.status == 200
                if not ok:
                    self.tally.error(f"http {response.status}")
        except Exception as exc:
            self.tally.error(type(exc).__name__)
        self.tally.requests.append(Sample(sent, time.monotonic(), ok))
        return ok

    async def post_message(self, client: Any, token: str) -> None:
        text, _ = self.chats.text(token)
        start = time.monotonic()
        ok = False
        try:
            async with client.post(
                f"{self.target()}/api/chat/messages",
                json={"text": text},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                body = await response.json(content_type=None)
                ok = response.status == 200 and bool(body.get("replies"))
                if not ok:
                    status = response.status
                    self.tally.error(f"http {status}" if status != 200 else "no replies")
        except Exception as exc:
            self.tally.error(type(exc).__name__)
        self.tally.requests.append(Sample(start, time.monotonic(), ok))

    async def open_sessions(self, client: Any, count: int, concurrency: int) -> None:
        """Web chat sessions for the run (not timed); they become the chats."""
        numbers = iter(range(count))
        tokens: list[str] = []

        async def opener() -> None:
            for _ in numbers:
                async with client.post(f"{self.target()}/api/chat/sessions") as response:
                    body = await response.json(content_type=None)
                    if response.status != 201:
                        raise RuntimeError(f"opening a session answered {response.status}")
                    tokens.append(body["token"])

        await asyncio.gather(*(opener() for _ in range(concurrency)))
        self.chats = Chats(tokens)
        self.tally.sessions = len(tokens)

    # -- every chat's first message, before the measured window

    async def first_messages(self, client: Any, concurrency: int) -> dict[str, float]:
        """Send each chat its first message and wait for the answer, outside the window.

        A chat's first message costs more than the ones after it (its conversation and
        identity are created, the greeting goes out). With a fixed warm-up, first messages
        were the window's first ~1,000 messages, so their share of it grew as the machine
        slowed (about half of a 12 s window at 130 messages/s, a fifth at 230/s), and a
        slow day measured a different mix. Every row now measures a chat's later messages;
        this round's own rate is reported beside them."""
        loop = asyncio.get_running_loop()
        chats = [self.chats.take() for _ in range(len(self.chats))]
        todo = iter(chats)
        start = time.monotonic()

        async def sender() -> None:
            for chat in todo:
                if self.kind == "webchat":
                    await self.post_message(client, chat)
                    continue
                waiter: asyncio.Future[float] = loop.create_future()
                self.waiters[chat], self.pending[chat] = waiter, time.monotonic()
                if await self.post_update(client, chat, self.pending[chat]):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter, timeout=CLIENT_TIMEOUT)
                self.pending.pop(chat, None)
                self.waiters.pop(chat, None)

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        took = time.monotonic() - start
        for chat in chats:
            if chat not in self.chats:
                self.chats.give_back(chat)
        return {"count": len(chats), "rate": len(chats) / took if took else 0.0}

    # -- one connection's loop

    async def worker(self, client: Any, end: float) -> None:
        loop = asyncio.get_running_loop()
        while time.monotonic() < end:
            if self.kind == "webchat":
                chat = self.chats.take()
                await self.post_message(client, chat)
                self.chats.give_back(chat)
                continue
            if self.kind == "baseline":
                chat = self.chats.take()
                await self.post_update(client, chat, time.monotonic())
                self.chats.give_back(chat)
                continue
            chat = self.chats.take()
            sent = time.monotonic()
            waiter: asyncio.Future[float] | None = None
            if self.mode == "e2e":
                waiter = loop.create_future()
                self.waiters[chat] = waiter
            self.pending[chat] = sent
            if not await self.post_update(client, chat, sent):
                self.pending.pop(chat, None)
                self.waiters.pop(chat, None)
                self.chats.give_back(chat)
                continue
            if waiter is not None:
                try:
                    await asyncio.wait_for(waiter, timeout=CLIENT_TIMEOUT)
                except TimeoutError:
                    self.tally.error("no reply")
                    self.pending.pop(chat, None)
                    self.waiters.pop(chat, None)

    async def scheduled(self, client: Any, chat: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        if self.kind == "telegram":
            self.pending[chat] = at
        if not await self.post_update(client, chat, at):
            self.pending.pop(chat, None)
        if self.kind == "baseline":
            self.chats.give_back(chat)

    # -- a whole run

    async def run(self) -> dict[str, Any]:
        import aiohttp

        seconds = float(self.config["seconds"])
        warm = float(self.config["warm"])
        concurrency = int(self.config["concurrency"])
        limit = concurrency if self.mode != "open" else 256
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            if self.kind == "webchat":
                await self.open_sessions(client, int(self.config.get("chats", CHATS)), concurrency)
            first = None
            if self.kind != "baseline":
                first = await self.first_messages(client, concurrency)
            begin = time.monotonic() + warm
            end = begin + seconds
            unanswered = 0
            if self.mode == "open":
                rate = float(self.config["rate"])
                count = int(rate * (warm + seconds))
                start = time.monotonic()
                tasks = []
                for number in range(count):
                    at = start + number / rate
                    await asyncio.sleep(max(0.0, at - time.monotonic()))
                    tasks.append(asyncio.create_task(self.scheduled(client, self.chats.take(), at)))
                begin, end = start + warm, start + warm + seconds
                await asyncio.gather(*tasks)
                drain = time.monotonic() + float(self.config["drain"])
                while self.pending and time.monotonic() < drain:
                    await asyncio.sleep(0.05)
                unanswered = sum(1 for sent in self.pending.values() if sent >= begin)
                result = summarise(self.tally, begin, end, unanswered)
            else:
                await asyncio.gather(*(self.worker(client, end) for _ in range(concurrency)))
                backlog = sum(1 for sent in self.pending.values() if sent <= end)
                result = summarise(self.tally, begin, end, 0)
                result["backlog"] = backlog
        result["first"] = first
        return result


async def load_main(config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def reader() -> None:
        for line in sys.stdin:
            with contextlib.suppress(ValueError):
                loop.call_soon_threadsafe(commands.put_nowait, json.loads(line))
        loop.call_soon_threadsafe(commands.put_nowait, {"stop": True})

    loop.run_in_executor(None, reader)
    generator = LoadGenerator(config)
    if config.get("stub"):
        print(json.dumps({"stub": await generator.start_stub()}), flush=True)
    else:
        print(json.dumps({"waiting": True}), flush=True)
    command = await commands.get()
    if command.get("go"):
        try:
            result = await generator.run()
        except Exception as exc:
            result = {"failed": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"result": result}), flush=True)
        await commands.get()  # stay up (the stand-in answers) until the servers stopped
    if generator.stub is not None:
        await generator.stub.close()
    os._exit(0)  # the stdin reader thread may still be blocked


# ---------------------------------------------------------------- measurements


@dataclass
class Spec:
    database: str  # sqlite | postgres
    processes: int
    kind: str  # baseline | webchat | telegram
    mode: str  # closed | e2e | open
    label: str
    # The baseline's SQLite driver: "bot" (bot.storage.db.create_engine, as the bot runs) or
    # "aiosqlite" (SQLAlchemy's stock aiosqlite adapter, each call on aiosqlite's thread).
    driver: str = "bot"


@dataclass
class Measured:
    spec: Spec
    result: dict[str, Any]
    clean_stop: bool


def measure(spec: Spec, options: argparse.Namespace) -> Measured:
    with tempfile.TemporaryDirectory(prefix="btp-bench-") as name:
        folder = Path(name)
        if spec.database == "postgres":
            url = options.postgres_url
            asyncio.run(_pg_recreate(url))
        else:
            url = sqlite_url(folder, "bench.db")
        ports = [free_port() for _ in range(spec.processes)]
        config = {
            "kind": spec.kind,
            "mode": spec.mode,
            "targets": [f"http://{HOST}:{port}" for port in ports],
            "seconds": options.seconds,
            "warm": options.warm,
            "concurrency": options.concurrency,
            "rate": options.rate,
            "drain": options.drain,
            "chats": options.chats,
            "stub": spec.kind == "telegram",
        }
        phases = [("start", time.monotonic())]
        load = LoadProcess(Path(__file__).resolve(), config, folder)
        servers: list[Proc] = []
        clean = True
        try:
            hello = load.read(60)
            extra = None
            if spec.kind == "telegram":
                extra = {
                    "TELEGRAM_BOT_TOKEN": "123456:TEST-token",
                    "TELEGRAM_WEBHOOK_SECRET": SECRET,
                    "TELEGRAM_API_URL": str(hello["stub"]),
                    "TELEGRAM_MAX_RATE": str(options.telegram_rate),
                }
            # One after the other: the first one migrates the fresh database.
            for number, port in enumerate(ports):
                label = f"server{number}"
                if spec.kind == "baseline":
                    proc = start_baseline(port, url, folder, label, spec.driver)
                else:
                    proc = start_server(port, server_env(url, extra), folder, label)
                servers.append(proc)
                wait_ready(proc, port)
            phases.append(("ready", time.monotonic()))
            if options.pin and spec.processes == 1:
                pin([proc.popen.pid for proc in servers], load.popen.pid)
            sampler = CpuSampler(
                {"bot": [proc.popen.pid for proc in servers], "load": [load.popen.pid]}
            )
            load.send({"go": True})
            budget = options.warm + options.seconds + options.drain + 120 + options.chats / 20
            try:
                result = load.read(budget).get("result", {})
            finally:
                sampler.stop()
            if "failed" in result:
                raise RuntimeError(f"load run failed: {result['failed']}")
            result["cpu"] = sampler.cores(result["begin"], result["end"])
            phases.append(("load", time.monotonic()))
        finally:
            for proc in servers:
                clean = stop(proc) and clean
            phases.append(("stop", time.monotonic()))
            load.close()
        try:
            if spec.kind == "telegram":
                handled = asyncio.run(_handled(url, result["wall_begin"], result["wall_end"]))
                result["handled_rate"] = handled / result["window"]
        finally:
            if spec.database == "postgres":
                with contextlib.suppress(Exception):
                    asyncio.run(_pg_drop(url))
    steps = ", ".join(
        f"{name} {at - before:.1f} s" for (_, before), (name, at) in itertools.pairwise(phases)
    )
    print(f"  {steps}", file=sys.stderr, flush=True)
    return Measured(spec, result, clean)


def pin(server_pids: list[int], load_pid: int) -> None:
    """The server on one core and the load generator on another (`--pin`), as in the load
    issue's orientation figures: a server then cannot borrow the second core for a thread."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return
    for pid in server_pids:
        for task in os.listdir(f"/proc/{pid}/task"):  # every thread, not only the main one
            os.sched_setaffinity(int(task), {cores[-1]})
    os.sched_setaffinity(load_pid, {cores[0]})


def plan(options: argparse.Namespace) -> Iterator[Spec]:
    for spec in _plan(options):
        if options.kinds is not None and spec.kind not in options.kinds:
            continue
        if options.modes is None or spec.mode in options.modes:
            yield spec


def _plan(options: argparse.Namespace) -> Iterator[Spec]:
    databases = ["sqlite", "postgres"] if options.only is None else [options.only]
    for database in databases:
        yield Spec(database, 1, "baseline", "closed", "one-row baseline")
        if database == "sqlite":
            yield Spec(database, 1, "baseline", "closed", STOCK_LABEL, driver="aiosqlite")
        yield Spec(database, 1, "webchat", "closed", "web chat POST /api/chat/messages")
        yield Spec(database, 1, "telegram", "closed", "Telegram webhook (200 once stored)")
        yield Spec(database, 1, "telegram", "e2e", "Telegram end to end (update to reply)")
        if database == "sqlite":
            yield Spec(database, 1, "baseline", "open", "one-row baseline")
            yield Spec(database, 1, "telegram", "open", "Telegram webhook")
        if database == "postgres":
            yield Spec(database, 2, "baseline", "closed", "one-row baseline")
            yield Spec(database, 2, "webchat", "closed", "web chat POST /api/chat/messages")
            yield Spec(database, 2, "telegram", "closed", "Telegram webhook (200 once stored)")
            yield Spec(database, 2, "telegram", "e2e", "Telegram end to end (update to reply)")
        if not options.quick:
            # The baselines again at the end: the machine is noisy, the ratio takes the mean.
            yield Spec(database, 1, "baseline", "closed", "one-row baseline (again)")
            if database == "sqlite":
                yield Spec(
                    database, 1, "baseline", "closed", f"{STOCK_LABEL} (again)", driver="aiosqlite"
                )


def ms(pair: list[float] | None) -> str:
    if not pair:
        return "-"
    return " / ".join("> drain" if v == float("inf") else f"{v:.1f}" for v in pair) + " ms"


def cpu(result: dict[str, Any]) -> str:
    used = result.get("cpu") or {}
    if not used:
        return "-"
    return f"{used['bot']:.2f} / {used['load']:.2f} / {used['machine']:.2f}"


DB_NAMES = {"sqlite": "SQLite (WAL)", "postgres": "PostgreSQL"}
STOCK_LABEL = "one-row baseline, stock aiosqlite driver"
CPU_HEADER = "CPU cores: bot / load / machine"


def headline(m: Measured) -> float:
    """The row's throughput: replies delivered for the end-to-end run, else answered requests."""
    return float(m.result["answered_rate" if m.spec.mode == "e2e" else "throughput"])


def report(results: list[Measured], options: argparse.Namespace) -> None:
    closed = [m for m in results if m.spec.mode in ("closed", "e2e")]
    baselines: dict[tuple[str, int], float] = {}
    for m in closed:
        if m.spec.kind == "baseline":
            key = (m.spec.database, m.spec.processes)
            runs = [
                n.result["throughput"]
                for n in closed
                if n.spec.kind == "baseline"
                and n.spec.driver == "bot"
                and (n.spec.database, n.spec.processes) == key
            ]
            if runs:
                baselines[key] = sum(runs) / len(runs)
    stock_runs = [m.result["throughput"] for m in closed if m.spec.driver == "aiosqlite"]
    stock = sum(stock_runs) / len(stock_runs) if stock_runs else None

    def ratio(m: Measured, value: float) -> str:
        base = baselines.get((m.spec.database, m.spec.processes))
        if m.spec.driver != "bot":
            return "-"
        return f"{value / base:.2f}x" if base else "-"

    def versus_stock(value: float) -> str:
        return f"{value / stock:.2f}x" if stock else "-"

    rows = []
    for m in closed:
        r = m.result
        rows.append(
            [
                DB_NAMES[m.spec.database],
                str(m.spec.processes),
                m.spec.label,
                f"{r['answered'] if m.spec.mode == 'e2e' else r['requests']:,}",
                f"{headline(m):,.0f}/s",
                ratio(m, headline(m)),
                ms(r["e2e"] if m.spec.mode == "e2e" else r["latency"]),
                str(r["errors"]) + (f" {r['error_kinds']}" if r["errors"] else ""),
                cpu(r),
            ]
        )
    print(
        f"\nClosed loop: {options.concurrency} connections, {options.seconds:g} s measured after "
        f"{options.warm:g} s of warm-up, per row; before it, every chat's first message was "
        "sent and answered (not measured, see below). Ratio: against the one-row baseline on "
        "the same database with the same number of processes (the mean of its runs). CPU: "
        "cores used in the window by the bot (all its processes), the load generator, and the "
        "whole machine (2 cores, shared).\n"
    )
    print(
        table(
            [
                "database",
                "processes",
                "path",
                "requests",
                "throughput",
                "ratio to baseline",
                "latency p50 / p99",
                "errors",
                CPU_HEADER,
            ],
            rows,
        )
    )
    firsts = [m for m in closed if m.result.get("first")]
    if firsts:
        print(
            "\nA chat's first message (it creates the chat's rows and is answered with the "
            "greeting), sent to every chat before each row's window and waited for, "
            f"{options.concurrency} at a time; ratio against the same row's later messages.\n"
        )
        print(
            table(
                ["database", "processes", "path", "chats", "first messages", "vs later ones"],
                [
                    [
                        DB_NAMES[m.spec.database],
                        str(m.spec.processes),
                        m.spec.label,
                        f"{m.result['first']['count']:,}",
                        f"{m.result['first']['rate']:,.0f}/s",
                        f"{m.result['first']['rate'] / headline(m):.2f}x" if headline(m) else "-",
                    ]
                    for m in firsts
                ],
            )
        )
    if stock:
        rows = []
        for m in closed:
            if m.spec.database != "sqlite" or m.spec.kind == "baseline":
                continue
            figures = [(m.spec.label, headline(m))]
            if m.spec.kind == "telegram" and m.spec.mode == "closed":
                figures.append(("Telegram updates handled", m.result.get("handled_rate", 0.0)))
            for label, value in figures:
                rows.append([label, f"{value:,.0f}/s", ratio(m, value), versus_stock(value)])
        print(
            "\nSQLite, one process, against both one-row baselines: the bot's own engine "
            f"(above) and SQLAlchemy's stock aiosqlite driver ({stock:,.0f}/s in this run, the "
            "mean of its runs).\n"
        )
        print(
            table(
                ["path", "throughput", "vs baseline, bot's engine", "vs baseline, stock aiosqlite"],
                rows,
            )
        )

    telegram = [m for m in closed if m.spec.kind == "telegram"]
    if telegram:
        rows = []
        for m in telegram:
            r = m.result
            rows.append(
                [
                    DB_NAMES[m.spec.database],
                    str(m.spec.processes),
                    "webhook 200" if m.spec.mode == "closed" else "reply",
                    f"{r['throughput']:,.0f}/s",
                    f"{r.get('handled_rate', 0):,.0f}/s ({ratio(m, r.get('handled_rate', 0))})",
                    f"{r['answered_rate']:,.0f}/s ({ratio(m, r['answered_rate'])})",
                    f"{r.get('backlog', 0):,}",
                    ms(r["e2e"]) if r["e2e"] else "none came before the run's end",
                ]
            )
        print(
            "\nTelegram, per connection the next update after the webhook's 200 (as Telegram "
            "sends them) or after the bot's reply reached the Bot API stand-in: updates stored, "
            "updates the bot finished handling (inbound_updates.processed_at in the window), "
            "replies delivered, each against the baseline; and the updates stored but not "
            "answered when the window closed.\n"
        )
        print(
            table(
                [
                    "database",
                    "processes",
                    "next update after",
                    "webhook 200s",
                    "handled (vs baseline)",
                    "replies delivered (vs baseline)",
                    "backlog at the end",
                    "update to reply p50 / p99",
                ],
                rows,
            )
        )

    pairs: dict[tuple[str, str], dict[int, Any]] = {}
    for m in closed:
        if m.spec.database == "postgres" and "again" not in m.spec.label:
            pairs.setdefault((m.spec.kind, m.spec.mode), {})[m.spec.processes] = m
    pairs = {key: both for key, both in pairs.items() if len(both) == 2}
    if pairs:
        rows = []
        for both in pairs.values():
            one, two = both[1], both[2]
            compared: list[tuple[str, float, float]] = [
                (one.spec.label, headline(one), headline(two))
            ]
            if one.spec.kind == "telegram" and one.spec.mode == "closed":
                compared.append(
                    (
                        "Telegram updates handled (webhook driven)",
                        one.result.get("handled_rate", 0.0),
                        two.result.get("handled_rate", 0.0),
                    )
                )
            for label, a, b in compared:
                shown = f"{b / a:.2f}x" if a else "-"
                rows.append(
                    [label, f"{a:,.0f}/s", f"{b:,.0f}/s", shown, cpu(one.result), cpu(two.result)]
                )
        print("\nPostgreSQL, two processes against one (same load, same database):\n")
        print(
            table(
                [
                    "path",
                    "1 process",
                    "2 processes",
                    "2 / 1",
                    f"{CPU_HEADER} (1)",
                    f"{CPU_HEADER} (2)",
                ],
                rows,
            )
        )

    opened = [m for m in results if m.spec.mode == "open"]
    if opened:
        base = next((m.result for m in opened if m.spec.kind == "baseline"), None)
        rows = []
        for m in opened:
            r = m.result
            versus = "-"
            if base and base["latency"] and r["latency"]:
                versus = (
                    f"{r['latency'][0] / base['latency'][0]:.2f}x / "
                    f"{r['latency'][1] / base['latency'][1]:.2f}x"
                )
            tg = m.spec.kind == "telegram"
            rows.append(
                [
                    m.spec.label,
                    f"{r['requests']:,}",
                    ms(r["latency"]),
                    versus,
                    f"{r['handled_rate']:,.0f}/s" if tg else "-",
                    ms(r["e2e"]) if tg else "-",
                    f"{r['unanswered']:,}" if tg else "-",
                    str(r["errors"]),
                    cpu(r),
                ]
            )
        print(
            f"\nOpen loop on SQLite, one process: {options.rate:g} messages/s on a fixed schedule "
            f"for {options.seconds:g} s (after {options.warm:g} s not counted); latency from the "
            "scheduled time; replies awaited up to "
            f"{options.drain:g} s after the last request (later: unanswered, counted as > drain)."
            "\n"
        )
        print(
            table(
                [
                    "path",
                    "requests",
                    "HTTP response p50 / p99",
                    "ratio to baseline p50 / p99",
                    "handled",
                    "update to reply p50 / p99",
                    "unanswered",
                    "errors",
                    CPU_HEADER,
                ],
                rows,
            )
        )
    if any(not m.clean_stop for m in results):
        names = [f"{m.spec.label} ({m.spec.database})" for m in results if not m.clean_stop]
        print("\nnot stopped by SIGTERM within 30 s (killed): " + ", ".join(names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--seconds", type=float, help="measured seconds per row (15; quick 3)")
    parser.add_argument("--concurrency", type=int, default=48, help="connections (48)")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop messages/s (100)")
    parser.add_argument(
        "--telegram-rate",
        type=float,
        default=1000.0,
        help="the bot's Bot API calls/s limit, TELEGRAM_MAX_RATE (1000: the stand-in has no "
        "flood limit, so the bot is measured rather than Telegram's 30/s)",
    )
    parser.add_argument(
        "--kinds", nargs="+", choices=["baseline", "webchat", "telegram"], help="rows to run"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=["closed", "e2e", "open"], help="rows to run, by mode"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="one-process rows: the server pinned to one core, the load generator to another",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--role", choices=["baseline", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--driver", default="bot", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.role == "baseline":
        run_baseline(options.port, options.driver)
        return
    if options.role == "load":
        asyncio.run(load_main(json.loads(options.config)))
        return
    if options.seconds is None:
        options.seconds = 3.0 if options.quick else 15.0
    options.warm = min(2.0, options.seconds / 4)
    # How long the open loop waits for the last replies; a short smoke run waits little.
    options.drain = 3.0 if options.quick else min(30.0, 2 * options.seconds + 5)
    options.chats = 200 if options.quick else CHATS
    options.postgres_url = options.postgres_url or DEFAULT_PG_URL
    if options.only != "sqlite":
        why = postgres_available(options.postgres_url)
        if why is not None:
            if options.only == "postgres":
                raise SystemExit(f"PostgreSQL is not reachable: {why}")
            print(f"PostgreSQL skipped (not reachable: {why})")
            options.only = "sqlite"
    started = time.monotonic()
    results = []
    for spec in plan(options):
        shown = f"{spec.database} x{spec.processes} {spec.label} [{spec.mode}]"
        print(f"measuring {shown} ...", file=sys.stderr, flush=True)
        results.append(measure(spec, options))
    print(f"# HTTP throughput ({time.monotonic() - started:.0f} s in all)")
    report(results, options)


if __name__ == "__main__":
    main()
