"""How the user sounds: upset, urgent, or complaining, and the short acknowledgement that goes
first in the same reply ("抱歉让您着急了") before the turn's actual answer.

The words come from `knowledge/dialogue.yaml` (complaint, upset, urgent); repeated "!!" or "？？"
count as urgent. The engine puts the acknowledgement before the answer; this module only decides.
"""

from __future__ import annotations

import re
from enum import StrEnum

from bot.context import Context
from bot.types import Reply

_REPEATED_MARKS = re.compile(r"[!！?？]{2,}")


class Tone(StrEnum):
    """The first that applies wins: a complaint is also upset, an upset user often urgent."""

    COMPLAINT = "complaint"
    UPSET = "upset"
    URGENT = "urgent"


def tone_of(ctx: Context) -> Tone | None:
    """The tone of the typed text, or None for a calm message (and for a pressed button)."""
    text = ctx.message.text
    if not text.strip():
        return None
    words = ctx.knowledge.words
    for tone in Tone:
        if words.contains(tone.value, text):
            return tone
    if _REPEATED_MARKS.search(text):
        return Tone.URGENT
    return None


def acknowledgement(ctx: Context) -> Reply | None:
    """A one-line `dialogue/ack` for an upset, urgent or complaining user; None otherwise."""
    tone = tone_of(ctx)
    if tone is None:
        return None
    return ctx.say("dialogue/ack", kind=tone.value)
