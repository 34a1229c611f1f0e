"""FAQ answers from the knowledge base, with related questions and a helpful/not-helpful vote."""

from __future__ import annotations

from dataclasses import replace

from bot.context import Context, Outcome
from bot.platform.gateway import PlatformError
from bot.platform.models import MerchantStatus
from bot.routing import UNHANDLED, Result, Router
from bot.types import Button, Label, Reply

router = Router("faq")


async def answer(ctx: Context, label: Label) -> Outcome:
    entry = ctx.knowledge.entries[label]
    related = [ctx.knowledge.entries[r] for r in entry.related[:2]]
    buttons = (
        Button(ctx.ui("helpful"), f"fb:{label.value}:yes"),
        Button(ctx.ui("unhelpful"), f"fb:{label.value}:no"),
        *(Button(r.title[ctx.language], f"faq:{r.id.value}") for r in related),
    )
    # The related questions travel as buttons only: a "Related: …" line said the same twice.
    reply = ctx.say("faq_answer", *buttons, answer=entry.answer[ctx.language])
    note = await _merchant_note(ctx, label)
    if note is not None:
        # "那我现在能收款吗" from a merchant still under review: the guide's answer, and first
        # what the merchant's own status means for it (replies say what the data shows).
        reply = reply.prefaced(note)
        if label == Label.ONBOARDING_REVIEW:
            reply = replace(reply, buttons=(*reply.buttons, ctx.human_button()))
    return Outcome([reply], answered=label)


# Answers about collecting and withdrawing, and about the review, that a bound merchant's
# status changes: a merchant under review or suspended cannot do what they explain yet.
_STATUS_MATTERS = frozenset(
    {
        Label.METHODS_QR,
        Label.METHODS_LINK,
        Label.METHODS_APP,
        Label.METHODS_CHOOSE,
        Label.COLLECT_FLOW,
        Label.WITHDRAW_HOW,
        Label.ONBOARDING_REVIEW,
    }
)


async def _merchant_note(ctx: Context, label: Label) -> Reply | None:
    """What a bound merchant's status means for this answer, when it is not active."""
    merchant_id = ctx.identity.merchant_id
    if label not in _STATUS_MATTERS or not ctx.identity.is_merchant or merchant_id is None:
        return None
    try:
        merchant = await ctx.gateway.get_merchant(merchant_id)
    except PlatformError:
        return None  # the guide's answer stands on its own
    if merchant is None or merchant.status == MerchantStatus.ACTIVE:
        return None
    return ctx.say("faq_merchant_note", label=label.value, merchant_status=merchant.status.value)


def unclear(ctx: Context) -> Outcome:
    """The last answer did not help ("这个回答我没看懂", "what does that mean"). It names what
    it was about, asks which part to explain, offers the related questions and a person, and
    counts as a "not helpful" vote on that answer (the knowledge loop reads those)."""
    label = _label(ctx.conversation.last_label)
    entry = ctx.knowledge.entries.get(label) if label is not None else None
    if entry is None:
        live = label is not None and label.value.split(".")[0] in _LIVE_TOPICS
        topic = ctx.ui(label.value) if live and label is not None else None
        reply = ctx.say("dialogue/unclear", ctx.human_button(), topic=topic, related=False)
        return Outcome([reply])
    related = [
        Button(ctx.knowledge.entries[r].title[ctx.language], f"faq:{r.value}")
        for r in entry.related[:2]
    ]
    reply = ctx.say(
        "dialogue/unclear",
        *related,
        ctx.human_button(),
        topic=entry.title[ctx.language],
        related=bool(related),
    )
    return Outcome([reply], feedback=(entry.id, False))


def _label(value: str | None) -> Label | None:
    try:
        return Label(value) if value else None
    except ValueError:
        return None


# Labels of the flows over live data: their names are in the templates' `ui` words.
_LIVE_TOPICS = frozenset({"diagnose", "status", "action"})


@router.faq_entries
async def faq_label(ctx: Context) -> Result:
    assert ctx.parse is not None
    if ctx.parse.label not in ctx.knowledge.entries:
        return UNHANDLED
    return await answer(ctx, ctx.parse.label)


@router.action("faq")
async def faq_button(ctx: Context) -> Result:
    try:
        label = Label(ctx.argument)
    except ValueError:
        return UNHANDLED
    if label not in ctx.knowledge.entries:
        return UNHANDLED
    return await answer(ctx, label)


@router.action("fb")
async def feedback(ctx: Context) -> Result:
    entry_id, _, vote = ctx.argument.rpartition(":")
    try:
        label = Label(entry_id)
    except ValueError:
        return UNHANDLED
    if label not in ctx.knowledge.entries or vote not in {"yes", "no"}:
        return UNHANDLED
    helpful = vote == "yes"
    if helpful:
        return Outcome([ctx.say("feedback_thanks")], feedback=(label, True))
    reply = ctx.say("feedback_sorry", ctx.human_button())
    return Outcome([reply], solved=False, feedback=(label, False))
