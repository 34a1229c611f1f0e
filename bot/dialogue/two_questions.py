"""Two questions in one message: "W0001什么时候到 顺便问下手续费怎么算", "is BT… paid? btw how
long do withdrawals take".

The part before the side marker (`digression` or `also` in `knowledge/dialogue.yaml`) goes the usual
way: a flow, an entity, a label. The part after is answered after it when the knowledge
answers it clearly; otherwise the message is read whole, as before.
"""

from __future__ import annotations

from bot.dialogue.policy import CLEAR_QUESTION_SCORE
from bot.nlu.matcher import Matcher
from bot.nlu.words import Words
from bot.types import Language, Parse

# Where a second question starts: a side marker ("顺便问下", "btw"), or a plain "also" /
# "另外" (`also`: it joins two asks here, but does not make a question in a flow a side one).
_MARKERS = ("digression", "also")
# Each part must say something of its own ("问下" at the start is not a second question).
_PART_CHARS = 4


def second_question(
    words: Words, matcher: Matcher, text: str, language: Language
) -> tuple[str, Parse] | None:
    """The first question's text and the parse of the second, or None for one question."""
    for kind in _MARKERS:
        parts = words.split_at(kind, text)
        if parts is None:
            continue
        first, second = parts
        if min(len(first.replace(" ", "")), len(second.replace(" ", ""))) < _PART_CHARS:
            continue
        parse = matcher.parse(second, language)
        if parse.label.is_faq and parse.score >= CLEAR_QUESTION_SCORE:
            return first, parse
    return None
