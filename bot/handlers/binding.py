"""Binding a chat to a merchant with the one-time code from the merchant's back office.

A 6-digit code falls to guessing unless wrong codes are counted where a guesser cannot shed
them: per chat, per client (the web chat's peer address, the Telegram user) and across all
chats together. Over the global limit binding pauses for everyone, right codes included (a code
tried is a guess), until the window has room again; see docs/SECURITY.md for the numbers.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bot.context import Context, Outcome
from bot.nlu.normalize import fold, strip_punctuation
from bot.platform.gateway import BindCodesPaused
from bot.platform.models import MerchantStatus
from bot.routing import Result, Router

router = Router("binding")

BIND_LIMIT = 5
BIND_WINDOW = timedelta(minutes=15)
CLIENT_LIMIT = 3
CLIENT_WINDOW = timedelta(hours=1)
GLOBAL_KEY = "bind:global"
_MAX_CLIENT = 80
BIND_TEXT = re.compile(r"^\s*(?:绑定|綁定|bind)\s*[:：]?\s*([A-Za-z0-9]{4,32})\s*$", re.IGNORECASE)


# Inside a sentence ("我是商家 绑定 482913", "我的绑定码是275160", "ok my bind code is 482913")
# only a code of digits counts, so "如何绑定 account" is a question about binding, not a wrong
# code. The words between the verb and the code are the ones people use for "the code is".
BIND_IN_TEXT = re.compile(
    r"(?:绑定|綁定|\bbind(?:ing)?)\s*(?:码|碼|代码|代碼|号|號|\bcode\b)?\s*"
    r"(?:是|为|為|\bis\b|=)?\s*[:：]?\s*(\d{4,12})(?!\w)"
    # "im the shop owner, my code is 275160", "商户码是275160" (but not a verification code).
    r"|(?<!verification )(?<!sms )(?<!otp )\bcode\s*(?:is|:|=)\s*(\d{6})(?!\w)"
    # "the bind code for my shop is 482931", "绑定码我看了下是482913".
    r"|\bbind(?:ing)?\s+code\b[^\d]{0,24}?(?:\bis\b|:|=)\s*(\d{6})(?!\w)"
    r"|绑定码[^\d]{0,10}?(?:是|为|為|[:：])\s*(\d{6})(?!\w)"
    r"|(?<!验证)(?<!校验)(?<!短信)(?<!动态)码\s*(?:是|为|為|[:：])\s*(\d{6})(?!\w)",
    re.IGNORECASE,
)


# Right after the bot asked for a code (a request refused for want of a binding), the code on
# its own is the answer: "482913", "code is 482913", "码是275160", "哦是482913".
_SIX_DIGITS = re.compile(r"(?<![\d.,])(\d{6})(?![\d.,])")
# What may stand beside a code sent by a chat that was asked for one ("找到了 482913", "ok its
# 275160", "绑定码？我找找…… 275160"): a few words, no other number.
_CODE_WORDS = 6
_CODE_CHARS = 12


def asked_code_in(text: str) -> str | None:
    """The bind code in a short message that carries one 6-digit number and no other digit;
    None otherwise. Only for a chat that was just asked for its code."""
    found = _SIX_DIGITS.findall(text)
    if len(found) != 1:
        return None
    rest = strip_punctuation(fold(_SIX_DIGITS.sub(" ", text)))
    if any(c.isdigit() for c in rest):
        return None
    words = rest.split()
    short = len(words) <= _CODE_WORDS if rest.isascii() else len("".join(words)) <= _CODE_CHARS
    return found[0] if short else None


def bind_code_in(text: str) -> str | None:
    match = BIND_TEXT.match(text) or BIND_IN_TEXT.search(text)
    return next((group for group in match.groups() if group), None) if match else None


def _client_key(ctx: Context) -> str | None:
    client = ctx.message.client
    return f"bind:client:{ctx.message.channel}:{client[:_MAX_CLIENT]}" if client else None


@router.command("bind")
async def bind(ctx: Context) -> Result:
    code = ctx.argument.strip() or bind_code_in(ctx.message.text) or ""
    chat_key, client_key = f"bind:{ctx.conversation.id}", _client_key(ctx)
    global_window = ctx.settings.bind_limit[1]
    # The keys in this order only (chat, client, global): see `recent_counter` in
    # bot/turn_writer.py.
    if await ctx.recent(chat_key, BIND_WINDOW) >= BIND_LIMIT:
        return Outcome([ctx.say("bind/locked", ctx.human_button())], solved=False)
    if client_key is not None and await ctx.recent(client_key, CLIENT_WINDOW) >= CLIENT_LIMIT:
        minutes = int(CLIENT_WINDOW.total_seconds() // 60)
        return Outcome(
            [ctx.say("bind/client_locked", ctx.human_button(), minutes=minutes)], solved=False
        )
    if not code:
        return Outcome([ctx.say("bind/how")])
    wrong_everywhere = await ctx.recent(GLOBAL_KEY, global_window)
    if wrong_everywhere >= ctx.settings.bind_global_limit:
        minutes = ctx.settings.bind_global_window_minutes
        return Outcome([ctx.say("bind/paused", ctx.human_button(), minutes=minutes)], solved=False)
    try:
        merchant_id = await ctx.gateway.redeem_bind_code(code)
    except BindCodesPaused:
        # The platform's own count across all its clients (other bot processes too).
        minutes = ctx.settings.bind_global_window_minutes
        return Outcome([ctx.say("bind/paused", ctx.human_button(), minutes=minutes)], solved=False)
    merchant = await ctx.gateway.get_merchant(merchant_id) if merchant_id else None
    if merchant is None:
        keys = [chat_key, GLOBAL_KEY] + ([client_key] if client_key else [])
        tripped = ["bind_global"] if wrong_everywhere + 1 >= ctx.settings.bind_global_limit else []
        # A wrong code is the user's wrong input, asked again, never the bot failing.
        return Outcome([ctx.say("bind/wrong_code")], rate_events=keys, tripped=tripped)
    # Under review or suspended, the merchant has nothing to look up yet: say what that means.
    buttons = () if merchant.status is MerchantStatus.ACTIVE else (ctx.human_button(),)
    done = ctx.say("bind/done", *buttons, name=merchant.name, status=merchant.status.value)
    return Outcome([done], bind_merchant=merchant.id)
