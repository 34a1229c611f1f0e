"""Two questions in one message: "W0001什么时候到 顺便问下手续费怎么算", "is BT… paid? btw how
long do withdrawals take".

The part before the side marker (`digression` in `knowledge/dialogue.yaml`) goes the usual
way: a flow, an entity, a label. The part after is answered after it when the knowledge
answers it clearly; otherwise the message is read whole, as before.
"""

from __future__ import annotations

from bot.dialogue.policy import CLEAR_QUESTION_SCORE
from bot.nlu.matcher import Matcher
from bot.nlu.words import Words
from bot.types import Language, Parse

# Each part must say something of its own ("问下" at the start is not a second question).
_PART_CHARS = 4


def second_question(
    words: Words, matcher: Matcher, text: str, language: Language
) -> tuple[str, Parse] | None:
    """The first question's text and the parse of the second, or None for one question."""
    parts = words.split_at("digression", text)
    if parts is None:
        return None
    first, second = parts
    if min(len(first.replace(" ", "")), len(second.replace(" ", ""))) < _PART_CHARS:
        return None
    parse = matcher.parse(second, language)
    if not parse.label.is_faq or parse.score < CLEAR_QUESTION_SCORE:
        return None
    return first, parse
