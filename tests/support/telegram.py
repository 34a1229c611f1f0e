"""Driving the app's Telegram webhook in-process, with the Bot API stand-in answering."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.storage.models import OutboxItem
from tests import telegram_updates as tg
from tests.botapi import BotApiStub
from webhook_server import RUNTIME

SECRET = "webhook-secret-0123456789"
NOTIFY_SECRET = "notify-secret-0123456789"
CHAT = 424242


class Telegram:
    def __init__(self, client: TestClient[Any, Any], stub: BotApiStub) -> None:
        self.client = client
        self.stub = stub
        self._ids = iter(range(1000, 100000))

    async def post(self, update: dict[str, Any], secret: str | None = SECRET) -> int:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        response = await self.client.post(
            "/telegram/webhook", data=json.dumps(update), headers=headers
        )
        return response.status

    async def say(self, text: str, chat: int = CHAT) -> list[str]:
        """Send a text and wait for the bot's reply to arrive at the Bot API."""
        before = len(self.stub.sent_texts(chat))
        assert await self.post(tg.text_message(next(self._ids), chat, text)) == 200
        return await self.replies(chat, before)

    async def press(self, data: str, chat: int = CHAT) -> list[str]:
        before = len(self.stub.sent_texts(chat))
        assert await self.post(tg.callback_query(next(self._ids), chat, data)) == 200
        return await self.replies(chat, before)

    async def replies(self, chat: int, before: int, timeout: float = 5.0) -> list[str]:
        runtime = self.client.app[RUNTIME]
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            assert runtime.dispatcher is not None
            await runtime.dispatcher.idle()
            await runtime.relay.flush()
            texts = self.stub.sent_texts(chat)
            if len(texts) > before:
                return texts[before:]
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no reply to chat {chat}; calls: {[c.method for c in self.stub.calls]}")

    def last_keyboard(self, chat: int = CHAT) -> list[str]:
        for call in reversed(self.stub.calls):
            markup = call.params.get("reply_markup")
            if call.params.get("chat_id") == chat and markup:
                return [row[0]["callback_data"] for row in markup["inline_keyboard"]]
        return []

    async def settled(self, timeout: float = 5.0) -> list[str]:
        """The outbox statuses once the relay has finished with every row (sent or failed)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with self.client.app[RUNTIME].bot.sessions() as session:
                statuses = list(
                    (await session.scalars(select(OutboxItem.status).order_by(OutboxItem.id))).all()
                )
            if (
                not {"pending", "sending"} & set(statuses)
                or asyncio.get_running_loop().time() > deadline
            ):
                return statuses
            await asyncio.sleep(0.05)

    async def count(self, model: type) -> int:
        async with self.client.app[RUNTIME].bot.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)
