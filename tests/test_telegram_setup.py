"""README's "Telegram in five steps", followed with the Bot API stand-in in place of Telegram.

The `.env` is the repository's `.env.example` with the blanks filled in as step 2 says; the
server is the real `btp-bot serve`, started as steps 3 and 4 say, and checked as step 5 says.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest

from bot.settings import PROJECT_ROOT
from tests.botapi import BotApiStub
from tests.support.serve import ServeProcess, btp_bot, serve_environment, serving
from tests.telegram_updates import text_message

SECRET = "s3cret_from-step-2"
PUBLIC_URL = "https://bot.example.com/telegram/webhook"
pytestmark = pytest.mark.skipif(
    not Path(sys.executable).with_name("btp-bot").exists(), reason="btp-bot is not installed"
)


def _env_file(workdir: Path, stub: BotApiStub, *, webhook: bool) -> None:
    """Step 2 (and 4): `cp .env.example .env` and fill in the blanks."""
    filled = {
        "TELEGRAM_BOT_TOKEN": stub.token,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_WEBHOOK_URL": PUBLIC_URL if webhook else "",
        "# TELEGRAM_API_URL": None,  # the stand-in instead of api.telegram.org
    }
    lines = []
    for line in (PROJECT_ROOT / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        if key in filled:
            value = filled[key]
            line = f"TELEGRAM_API_URL={stub.url}" if value is None else f"{key}={value}"
        lines.append(line)
    (workdir / ".env").write_text("\n".join(lines) + "\n")


def _environment(workdir: Path) -> dict[str, str]:
    """The shell's environment without any of the bot's settings: only `.env` speaks."""
    return serve_environment(DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'bot.db'}")


def _serving(workdir: Path, *flags: str) -> AbstractAsyncContextManager[ServeProcess]:
    return serving(workdir, _environment(workdir), *flags, ready_path="/readyz")


async def _answered(stub: BotApiStub, chat_id: int) -> list[str]:
    for _ in range(600):
        if texts := stub.sent_texts(chat_id):
            return texts
        await asyncio.sleep(0.1)
    raise AssertionError("the bot never answered")


async def test_polling_on_a_laptop(tmp_path: Path) -> None:
    async with BotApiStub() as stub:
        _env_file(tmp_path, stub, webhook=False)
        async with _serving(tmp_path, "--telegram-polling"):  # step 3
            stub.push_update(text_message(1, 4101, "你好"))
            assert await _answered(stub, 4101)
        assert not stub.webhook.get("url")


async def test_webhook_behind_a_public_url(tmp_path: Path) -> None:
    async with BotApiStub() as stub:
        _env_file(tmp_path, stub, webhook=True)
        async with _serving(tmp_path) as server:  # step 4
            url = server.url
            assert stub.webhook["url"] == PUBLIC_URL
            assert stub.webhook["secret_token"] == SECRET
            # What the reverse proxy forwards from Telegram's call to the public URL.
            async with aiohttp.ClientSession() as http:
                headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
                update = text_message(2, 4102, "hello")
                async with http.post(f"{url}/telegram/webhook", json=update, headers=headers) as r:
                    assert r.status == 200
            assert await _answered(stub, 4102)
            # Step 5: what Telegram reports.
            status = await asyncio.create_subprocess_exec(
                *btp_bot(),
                "telegram",
                "status",
                cwd=tmp_path,
                env=_environment(tmp_path),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output = (await asyncio.wait_for(status.communicate(), 60))[0].decode()
            assert status.returncode == 0, output
            assert PUBLIC_URL in output and "Pending updates: 0" in output
            assert stub.token not in output
