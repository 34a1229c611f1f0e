"""Binding a chat to a merchant with the one-time code from the merchant's back office.

Five wrong codes in 15 minutes lock binding for the chat, so codes cannot be guessed.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bot.context import Context, Outcome
from bot.routing import Result, Router

router = Router("binding")

BIND_LIMIT = 5
BIND_WINDOW = timedelta(minutes=15)
BIND_TEXT = re.compile(r"^\s*(?:绑定|綁定|bind)\s*[:：]?\s*([A-Za-z0-9]{4,32})\s*$", re.IGNORECASE)


def bind_code_in(text: str) -> str | None:
    match = BIND_TEXT.match(text)
    return match.group(1) if match else None


@router.command("bind")
async def bind(ctx: Context) -> Result:
    code = ctx.argument.strip() or bind_code_in(ctx.message.text) or ""
    key = f"bind:{ctx.conversation.id}"
    if await ctx.recent(key, BIND_WINDOW) >= BIND_LIMIT:
        return Outcome([ctx.say("bind/locked", ctx.human_button())], solved=False)
    if not code:
        return Outcome([ctx.say("bind/how")])
    merchant_id = await ctx.gateway.redeem_bind_code(code)
    merchant = await ctx.gateway.get_merchant(merchant_id) if merchant_id else None
    if merchant is None:
        return Outcome([ctx.say("bind/wrong_code")], solved=False, rate_events=[key])
    return Outcome([ctx.say("bind/done", name=merchant.name)], bind_merchant=merchant.id)
