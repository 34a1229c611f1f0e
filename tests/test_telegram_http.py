"""PTB's transport on aiohttp: what reaches the Bot API, and failures as PTB's own errors."""

from __future__ import annotations

import asyncio
import io
import socket

import pytest
import segno
from aiohttp import web
from aiohttp.test_utils import TestServer
from telegram import Bot
from telegram.error import NetworkError, TimedOut

from bot.channels.telegram_http import AiohttpRequest
from tests.botapi import BotApiStub


async def test_messages_and_photos_reach_the_bot_api() -> None:
    async with BotApiStub() as stub:
        bot = Bot(stub.token, base_url=f"{stub.url}/bot", request=AiohttpRequest())
        async with bot:
            sent = await bot.send_message(chat_id=5, text="你好 <b>不是标记</b>")
            png = io.BytesIO()
            segno.make("https://pay.btp.example/l/1").save(png, kind="png", scale=4)
            photo = await bot.send_photo(chat_id=5, photo=png.getvalue())
        assert sent.text == "你好 <b>不是标记</b>" and sent.chat.id == 5
        assert photo.photo
        assert [call.method for call in stub.calls if call.method.startswith("send")] == [
            "sendMessage",
            "sendPhoto",
        ]


async def test_a_refused_connection_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    request = AiohttpRequest()
    bot = Bot("123:abc", base_url=f"http://127.0.0.1:{port}/bot", request=request)
    with pytest.raises(NetworkError):
        await bot.initialize()
    await request.shutdown()


async def test_a_silent_server_is_a_timeout() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", hang)
    async with TestServer(app, host="127.0.0.1") as server:
        request = AiohttpRequest(read_timeout=0.2)
        bot = Bot("123:abc", base_url=f"{server.make_url('/bot')}", request=request)
        with pytest.raises(TimedOut):
            await bot.initialize()
        await request.shutdown()
