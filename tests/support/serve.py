"""`btp-bot serve` as a real process: started on a free port of 127.0.0.1, waited for until it
answers, and always stopped. The one way tests start the server (the `serve` fixture in
tests/conftest.py, or `serving` where a test restarts or kills it on purpose)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from bot.settings import Settings
from tests.support.common import until
from tests.support.ports import free_port

# How long a fresh process may take to answer its first request: the interpreter starts,
# Alembic migrates, the knowledge is indexed. Minutes only on a machine under heavy load.
START_WITHIN = 120.0


def btp_bot() -> list[str]:
    """The installed console script beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("btp-bot")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "bot.cli"]


def serve_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any of the bot's own settings, plus `settings`
    (upper-case names, as in `.env`): what the server reads is what the test says."""
    fields = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in fields}
    env.update(settings, PYTHONUNBUFFERED="1")
    return env


class ServeProcess:
    """One `btp-bot serve` process; `start` it again after `kill` or `terminate` to restart it
    on the same port and database."""

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str],
        flags: tuple[str, ...] = (),
        ready_path: str = "/healthz",
    ) -> None:
        self.workdir = workdir
        self.env = dict(env)
        self.flags = flags
        self.ready_path = ready_path
        self.port = free_port()
        self.log = workdir / f"serve-{self.port}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the process and wait until `ready_path` answers 200."""
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *btp_bot(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.flags,
                cwd=self.workdir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

        async def ready() -> bool:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"btp-bot serve exited early:\n{self.tail()}")
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(
                        f"{self.url}{self.ready_path}", timeout=aiohttp.ClientTimeout(total=5)
                    ) as response,
                ):
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await until(ready, START_WITHIN, "btp-bot serve to answer", step=0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    async def kill(self) -> None:
        assert self.process is not None and self.process.returncode is None
        self.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.process.wait(), 10)

    async def terminate(self, timeout: float) -> None:
        """SIGTERM, and fail if the process has not exited within `timeout` seconds."""
        assert self.process is not None and self.process.returncode is None
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"btp-bot serve still running {timeout} s after SIGTERM:\n{self.tail()}"
            ) from None

    async def stop(self) -> None:
        """Whatever state it is in: SIGTERM, then SIGKILL if it lingers."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.send_signal(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)


@asynccontextmanager
async def serving(
    workdir: Path,
    env: Mapping[str, str],
    *flags: str,
    ready_path: str = "/healthz",
    start: bool = True,
) -> AsyncIterator[ServeProcess]:
    """A `ServeProcess` (started unless `start=False`), stopped on the way out."""
    process = ServeProcess(workdir, env, flags, ready_path)
    try:
        if start:
            await process.start()
        yield process
    finally:
        await process.stop()
