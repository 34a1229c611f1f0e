"""Slash commands and the language switch, the same on every channel."""

from __future__ import annotations

from bot.context import Context, FlowState, Outcome
from bot.handlers.chitchat import greeting
from bot.nlu.words import Words
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


def language_word(text: str, words: Words | None = None) -> Language | None:
    """The language a message names, alone ("english", "中文") or, with `words`, asked for
    in a few words around it ("可以说中文吗", "can you reply in english pls":
    `language_ask` in `knowledge/dialogue.yaml`)."""
    alone = _LANGUAGE_WORDS.get(text.strip().lower())
    if alone is not None or words is None or not words.contains("language_ask", text):
        return alone
    rest = words.without(("language_ask", "question", "yes"), text).split()
    named = [w for w in rest if w not in words.fillers]
    return _LANGUAGE_WORDS.get("".join(named)) if len(named) == 1 else None


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
    view = ctx.conversation
    had_flow = view.flow is not None
    # The flow cancelled is kept for one message: "no wait, I do want it" takes it back.
    cancelled = (
        FlowState(view.flow, view.flow_step, dict(view.slots))
        if view.flow is not None and view.flow_step is not None
        else None
    )
    return Outcome([ctx.say("cancelled", had_flow=had_flow)], end_flow=True, cancelled=cancelled)
