"""The fixed words of a conversation (`knowledge/dialogue.yaml`): yes, no, cancel, back to the
bot, and markers such as a correction ("不对，是260"), an upset user ("烦死了") or a complaint
("我要投诉").

Kept as data so a support lead can add "好滴" or "sure thing" without touching Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.nlu.normalize import fold, strip_punctuation

ANSWERS = ("yes", "no", "cancel", "back_to_bot", "continue")
MARKERS = ("correction", "upset", "urgent", "complaint")
KINDS = (*ANSWERS, *MARKERS)


def phrase_key(text: str) -> str:
    """The form phrases and messages are compared in."""
    return strip_punctuation(fold(text))


@dataclass(frozen=True, slots=True)
class Words:
    """Phrases that mean yes, no, and the other fixed answers (`knowledge/dialogue.yaml`)."""

    phrases: dict[str, frozenset[str]] = field(default_factory=dict)
    fillers: frozenset[str] = frozenset()

    def means(self, kind: str, text: str) -> bool:
        """`text` is only phrases of `kind` (and fillers): "行，发吧", "ok go ahead"."""
        phrases = self.phrases.get(kind, frozenset())
        answer = phrase_key(text)
        if not answer:
            return False
        if answer in phrases:
            return True
        if answer.isascii():
            return _covered_words(answer.split(), phrases, self.fillers)
        return _covered_chars(answer.replace(" ", ""), phrases, self.fillers)

    def contains(self, kind: str, text: str) -> bool:
        """Some phrase of `kind` appears in `text` (for markers: "不对", "actually", "烦死了")."""
        folded = f" {phrase_key(text)} "
        for phrase in self.phrases.get(kind, frozenset()):
            if phrase.isascii():
                if f" {phrase} " in folded:
                    return True
            elif phrase in folded:
                return True
        return False


def _covered_words(words: list[str], phrases: frozenset[str], fillers: frozenset[str]) -> bool:
    """The words can be cut into phrases and fillers, at least one phrase (longest first)."""
    i, found = 0, False
    while i < len(words):
        for size in range(min(5, len(words) - i), 0, -1):
            chunk = " ".join(words[i : i + size])
            if chunk in phrases or chunk in fillers:
                found = found or chunk in phrases
                i += size
                break
        else:
            return False
    return found


def _covered_chars(answer: str, phrases: frozenset[str], fillers: frozenset[str]) -> bool:
    """The same for text without spaces between words (Chinese, or Chinese and "ok" mixed)."""
    pieces = sorted(
        {p.replace(" ", ""): p in phrases for p in (*fillers, *phrases)}.items(),
        key=lambda item: len(item[0]),
        reverse=True,
    )
    i, found = 0, False
    while i < len(answer):
        for piece, is_phrase in pieces:
            if piece and answer.startswith(piece, i):
                found = found or is_phrase
                i += len(piece)
                break
        else:
            return False
    return found
