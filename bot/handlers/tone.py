"""How the user sounds: upset, urgent, or complaining, and the short acknowledgement that goes
first in the same reply ("抱歉让您着急了") before the turn's actual answer.

The words come from `knowledge/dialogue.yaml` (complaint, upset, urgent); repeated "!!" or "？？"
count as urgent. The engine puts the acknowledgement before the answer; this module only decides.
"""

from __future__ import annotations

import re
from enum import StrEnum

from bot.context import Context
from bot.nlu.words import Words
from bot.types import Reply

_REPEATED_MARKS = re.compile(r"[!！?？]{2,}")
# A message typed in capitals is shouted: at least this many letters, none of them lower case.
_SHOUTED_LETTERS = 12
_SHOUTED_RUN = re.compile(r"\b[A-Z]{2,}(?:[\s,.!?]+[A-Z]{2,}){2,}\b")
_TONE_KINDS = ("upset", "urgent")


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
    if _shouted(text):
        return Tone.UPSET
    return None


def _shouted(text: str) -> bool:
    """In capitals: the whole message, or a run of three words or more in it ("WHERE IS MY
    MONEY. withdrew it days ago"), not a lone acronym ("QR", "ATM")."""
    letters = [c for c in text if c.isascii() and c.isalpha()]
    if len(letters) >= _SHOUTED_LETTERS and all(c.isupper() for c in letters):
        return True
    return any(
        sum(c.isalpha() for c in run.group(0)) >= _SHOUTED_LETTERS - 2
        for run in _SHOUTED_RUN.finditer(text)
    )


def calm(words: Words, text: str) -> str:
    """What the message asks with its tone set aside ("烦死了！！我的钱到底什么时候到账" asks
    "我的钱什么时候到账"): the acknowledgement answers the tone, the request is read without it.
    A complaint's words stay (they may ask for a person); a calm message is returned as is."""
    if not (words.contains("upset", text) or words.contains("urgent", text)):
        return text.lower() if _shouted(text) else text
    return words.without(_TONE_KINDS, text, keep=("complaint",), punctuation=True)


def acknowledgement(ctx: Context) -> Reply | None:
    """A one-line `dialogue/ack` for an upset, urgent or complaining user; None otherwise."""
    tone = tone_of(ctx)
    if tone is None:
        return None
    return ctx.say("dialogue/ack", kind=tone.value)
