"""Slash commands and the language switch, the same on every channel."""

from __future__ import annotations

from bot.context import Context, Outcome
from bot.handlers.chitchat import greeting
from bot.routing import Result, Router
from bot.types import Language

router = Router("commands")

_LANGUAGE_WORDS = {
    "en": Language.EN,
    "english": Language.EN,
    "英文": Language.EN,
    "英语": Language.EN,
    "zh": Language.ZH,
    "cn": Language.ZH,
    "chinese": Language.ZH,
    "中文": Language.ZH,
    "汉语": Language.ZH,
    "普通话": Language.ZH,
}


def language_word(text: str) -> Language | None:
    return _LANGUAGE_WORDS.get(text.strip().lower())


@router.command("start")
async def start(ctx: Context) -> Result:
    return greeting(ctx)


@router.command("help")
async def help_(ctx: Context) -> Result:
    return Outcome([ctx.say("help", ctx.human_button())])


@router.command("lang", "language")
@router.action("lang")
async def switch_language(ctx: Context) -> Result:
    chosen = language_word(ctx.argument) if ctx.argument else None
    if chosen is None:
        # No argument: toggle to the other language.
        chosen = Language.EN if ctx.language == Language.ZH else Language.ZH
    ctx.language = chosen
    return Outcome([ctx.say("language_switched")], language=chosen, pin_language=True)


@router.command("cancel")
@router.action("cancel")
async def cancel(ctx: Context) -> Result:
    had_flow = ctx.conversation.flow is not None
    return Outcome([ctx.say("cancelled", had_flow=had_flow)], end_flow=True)
