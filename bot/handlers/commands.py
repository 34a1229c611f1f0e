"""Slash commands and the language switch, the same on every channel."""

from __future__ import annotations

from bot.context import Context, FlowState, Outcome
from bot.handlers.chitchat import greeting
from bot.nlu.words import Words
from bot.routing import Result, Router
from bot.types import Language

router = Router("commands")

# The phrases naming each language (`knowledge/dialogue.yaml`), and what may stand beside one
# in a request to switch: "can we continue in English please?", "可以用中文回复吗".
_LANGUAGES = {"language_en": Language.EN, "language_zh": Language.ZH}
_AROUND_A_LANGUAGE = ("language_ask", "language_frame", "question", "yes", "apology")


def language_word(text: str, words: Words) -> Language | None:
    """The one language a message asks for, named alone ("english", "中文") or with the
    words of a request around it and nothing else ("sorry, can we speak English?")."""
    named = [
        language
        for kind, language in _LANGUAGES.items()
        if words.means(kind, text, along=_AROUND_A_LANGUAGE)
    ]
    return named[0] if len(named) == 1 else None


@router.command("start")
async def start(ctx: Context) -> Result:
    return greeting(ctx)


@router.command("help")
async def help_(ctx: Context) -> Result:
    return Outcome([ctx.say("help", ctx.human_button())])


@router.command("lang", "language")
@router.action("lang")
async def switch_language(ctx: Context) -> Result:
    chosen = language_word(ctx.argument, ctx.knowledge.words) if ctx.argument else None
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
