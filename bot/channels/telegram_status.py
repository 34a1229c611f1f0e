"""What Telegram itself reports about the bot: who it is and where its webhook points.

`btp-bot telegram status` prints it, so an operator can check a set-up without the token
ever appearing on screen or in a URL typed by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from telegram import Bot

from bot.channels.telegram_http import AiohttpRequest


@dataclass(frozen=True, slots=True)
class TelegramStatus:
    username: str
    webhook_url: str
    pending_updates: int
    last_error_at: datetime | None
    last_error: str | None
    allowed_updates: tuple[str, ...]


async def telegram_status(token: str, api_url: str) -> TelegramStatus:
    """Ask the Bot API (getMe, getWebhookInfo); raises PTB's errors (InvalidToken, NetworkError)."""
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    api = api_url.rstrip("/")
    bot = Bot(token, base_url=f"{api}/bot", request=AiohttpRequest())
    async with bot:
        info = await bot.get_webhook_info()
        return TelegramStatus(
            username=bot.username,
            webhook_url=info.url,
            pending_updates=info.pending_update_count,
            last_error_at=info.last_error_date,
            last_error=info.last_error_message,
            allowed_updates=tuple(info.allowed_updates or ()),
        )
