"""A web chat visitor over HTTP, the app serving the web chat, and signed payment notices."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.notifications import sign
from bot.settings import Settings
from bot.types import Language
from tests.support.common import (
    bot_app,
    demo_sqlite,
    listening,
)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class Visitor:
    """One browser tab's worth of API calls, holding the session token."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.token = ""
        self.session_id = ""

    async def open(self) -> Visitor:
        async with self.http.post(f"{self.base}/api/chat/sessions") as response:
            assert response.status == 201
            body = await response.json()
        self.token, self.session_id = body["token"], body["session_id"]
        return self

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.http.post(
            f"{self.base}/api/chat/messages", json=body, headers=self.auth
        ) as response:
            assert response.status == 200, await response.text()
            replies: list[dict[str, Any]] = (await response.json())["replies"]
            return replies

    async def say(self, text: str, client_message_id: str | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"text": text}
        if client_message_id is not None:
            body["client_message_id"] = client_message_id
        return await self.post(body)

    async def press(self, action: str) -> list[dict[str, Any]]:
        return await self.post({"action": action})

    async def history(self, after: int = 0) -> dict[str, Any]:
        async with self.http.get(
            f"{self.base}/api/chat/history", params={"after": str(after)}, headers=self.auth
        ) as response:
            assert response.status == 200, await response.text()
            history: dict[str, Any] = await response.json()
            return history

    async def socket(self) -> aiohttp.ClientWebSocketResponse:
        """As the page connects: the token offered as a subprotocol, never in the URL."""
        return await self.http.ws_connect(
            f"{self.base}/api/chat/ws", protocols=("btp.chat", f"btp.token.{self.token}")
        )


async def pushed_before_pong(socket: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Send `ping`; what was pushed until the `pong` came back."""
    await socket.send_str("ping")
    pushed = []
    async with asyncio.timeout(10):
        while (frame := await socket.receive_json())["type"] != "pong":
            pushed.append(frame["message"])
    return pushed


def text_of(replies: list[dict[str, Any]]) -> str:
    return "\n".join(reply["text"] for reply in replies)


def button(replies: list[dict[str, Any]], label_part: str) -> dict[str, Any]:
    return next(b for r in replies for b in r["buttons"] if label_part in b["label"])


async def next_pushed(socket: aiohttp.ClientWebSocketResponse, text_part: str) -> dict[str, Any]:
    """The first pushed message containing `text_part` (earlier pushes are skipped)."""
    async with asyncio.timeout(10):
        while True:
            frame = await socket.receive_json()
            if frame["type"] == "message" and text_part in frame["message"]["text"]:
                message: dict[str, Any] = frame["message"]
                return message


SECRET = "test-platform-webhook-secret"


PENDING_ORDER = "BT2026112600000013"  # M001's, pending, 15.50


@asynccontextmanager
async def serve_webchat(
    directory: Path, factory: pytest.TempPathFactory, **settings_: Any
) -> AsyncIterator[str]:
    """The whole bot app on a random port of 127.0.0.1, over a fresh demo database."""
    path = directory / "webchat.db"
    shutil.copyfile(await demo_sqlite(factory), path)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{path}",
        platform_webhook_secret=SecretStr(SECRET),
        telegram_bot_token=None,
        default_language=Language.ZH,
        **settings_,
    )
    async with listening(bot_app(settings)) as base:
        yield base


def payment_event(event_id: str, status: str = "paid", amount: str = "15.50") -> bytes:
    event = {
        "id": event_id,
        "type": "payment.status",
        "order_no": PENDING_ORDER,
        "status": status,
        "amount": amount,
    }
    return json.dumps(event).encode()


async def notify(http: aiohttp.ClientSession, base: str, body: bytes) -> dict[str, Any]:
    """What the platform does when an order's status changes: a signed POST."""
    async with http.post(
        f"{base}/platform/notify",
        data=body,
        headers={"Content-Type": "application/json", "X-BTP-Signature": sign(SECRET, body)},
    ) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result
