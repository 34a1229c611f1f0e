"""Password-reset notices: mailed through a real SMTP server on 127.0.0.1, or kept in the outbox
with the token cut short; never logged whole."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message as EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_gateway
from bot.platform.tables import NotificationOutboxRow
from bot.render import Renderer
from bot.settings import Settings
from bot.storage.db import session_factory


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_reset_link_is_mailed_when_smtp_is_configured(
    db: AsyncEngine,
    world: None,
    settings: Settings,
    renderer: Renderer,
    smtp: tuple[_Inbox, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox, port = smtp
    # The test server speaks plain SMTP; a deployment keeps SMTP_STARTTLS on.
    configured = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False}
    )
    gateway = build_gateway(configured, session_factory(db), renderer)
    caplog.set_level(logging.DEBUG)
    result = await gateway.start_password_reset("wang")
    assert result.sent
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert mail["To"] == "wang@example.com"
    body = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    token = body.split("token=")[1].split()[0]
    assert len(token) >= 24
    assert "重置" in body and "reset" in body
    assert token not in caplog.text
    async with session_factory(db)() as session:
        assert (await session.scalars(select(NotificationOutboxRow))).all() == []


async def test_without_smtp_the_outbox_keeps_a_redacted_notice(
    db: AsyncEngine,
    world: None,
    settings: Settings,
    renderer: Renderer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = build_gateway(settings, session_factory(db), renderer)
    caplog.set_level(logging.DEBUG)
    assert (await gateway.start_password_reset("li")).sent
    async with session_factory(db)() as session:
        notice = await session.scalar(select(NotificationOutboxRow))
    assert notice is not None
    assert notice.recipient == "l***@example.com"
    token_part = notice.body.split("token=")[1].split()[0]
    assert token_part.endswith("…") and len(token_part) == 5
    assert "li@example.com" not in caplog.text
