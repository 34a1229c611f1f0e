"""Messages the platform sends merchants outside the chat (password reset links).

With SMTP configured the message is mailed through aiosmtplib; otherwise it goes to an outbox
table and one log line. Neither the outbox nor the log holds the secret part of a link.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession

from bot.platform.tables import NotificationOutboxRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str
    recipient: str
    subject: str
    body: str
    secret: str = ""

    def redacted(self) -> str:
        """The body with the secret cut to a short prefix: enough to tell notices apart."""
        if not self.secret:
            return self.body
        return self.body.replace(self.secret, self.secret[:4] + "…")


class Notifier(Protocol):
    async def send(self, session: AsyncSession, notice: Notice) -> None: ...


def mask_recipient(recipient: str) -> str:
    name, at, domain = recipient.partition("@")
    if at:
        return f"{name[:1]}***@{domain}"
    return f"{recipient[:3]}****{recipient[-4:]}" if len(recipient) >= 7 else "****"


class OutboxNotifier:
    """Stores the notice (secret redacted) in the outbox table, in the caller's transaction."""

    async def send(self, session: AsyncSession, notice: Notice) -> None:
        session.add(
            NotificationOutboxRow(
                kind=notice.kind,
                recipient=mask_recipient(notice.recipient),
                subject=notice.subject,
                body=notice.redacted(),
            )
        )
        log.info(
            "%s notice for %s queued in the outbox", notice.kind, mask_recipient(notice.recipient)
        )


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    sender: str = "no-reply@btp.example"
    start_tls: bool = True


class SmtpNotifier:
    """Mails notices to email recipients; phone recipients fall back to the outbox (no SMS here)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._outbox = OutboxNotifier()

    async def send(self, session: AsyncSession, notice: Notice) -> None:
        if "@" not in notice.recipient:
            await self._outbox.send(session, notice)
            return
        message = EmailMessage()
        message["From"] = self._settings.sender
        message["To"] = notice.recipient
        message["Subject"] = notice.subject
        message.set_content(notice.body)
        await aiosmtplib.send(
            message,
            hostname=self._settings.host,
            port=self._settings.port,
            username=self._settings.username,
            password=self._settings.password,
            start_tls=self._settings.start_tls,
            timeout=10,
        )
        log.info("%s notice mailed to %s", notice.kind, mask_recipient(notice.recipient))
