"""The fixed words of a conversation (`knowledge/dialogue.yaml`): yes, no, cancel, back to the
bot, and markers such as a correction ("不对，是260"), an upset user ("烦死了") or a complaint
("我要投诉").

Kept as data so a support lead can add "好滴" or "sure thing" without touching Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from bot.nlu.normalize import fold, strip_punctuation

ANSWERS = (
    "yes",
    "no",
    "cancel",
    "back_to_bot",
    "continue",
    "resume",
    "leave_message",
    "unclear",
)
# Markers added after knowledge versions were first published (see `LATER_KINDS`).
# `about_reply`: the words that may stand beside `unclear` ("这个回答我没看懂", "your answer").
_LATER_MARKERS = (
    "about_reply",
    "vague",
    "that_one",
    "merchant_side",
    "take_back",
    "ask_help",
    "language_ask",
    "to_person",
    "ask_bot",
    "apology",
    "why",
    "money_taken",
    "which_one",
    "number_is",
    "payment_side",
    "in_general",
    "language_en",
    "language_zh",
    "language_frame",
    "also",
    "i_am_merchant",
)
MARKERS = (
    "correction",
    "upset",
    "urgent",
    "complaint",
    "digression",
    "bind_how",
    "question",
    *_LATER_MARKERS,
)
KINDS = (*ANSWERS, *MARKERS)
# Kinds added after knowledge versions were first published: a version without them loads.
LATER_KINDS = ("resume", "leave_message", "unclear", *_LATER_MARKERS)
# The shortest back-to-the-bot phrase that counts when said in passing, inside a longer message
# ("返回机器人", "back to the bot"; not "back" in "call me back").
BACK_IN_PASSING = 5
# A kind's phrases in English and in Chinese, each with its length (see `Words._split`).
_Split = tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]


@lru_cache(maxsize=128)
def phrase_key(text: str) -> str:
    """The form phrases and messages are compared in (kept for the last texts: a turn asks
    about the same message several times, cancel, back to the bot, yes, no, the markers)."""
    return strip_punctuation(fold(text))


def few(text: str, words: int, chars: int) -> bool:
    """A message of at most `words` English words, or `chars` characters once it has Chinese
    (punctuation and spaces as in the compared form)."""
    key = phrase_key(text)
    return len(key.split()) <= words if key.isascii() else len(key) <= chars


@dataclass(frozen=True, slots=True)
class Words:
    """Phrases that mean yes, no, and the other fixed answers (`knowledge/dialogue.yaml`)."""

    phrases: dict[str, frozenset[str]] = field(default_factory=dict)
    fillers: frozenset[str] = frozenset()
    # What `means` cuts a text into, per (kind, along), longest first: built on first use, not
    # for every message (the engine asks about cancel and back-to-the-bot on every one).
    _pieces: dict[tuple[str, tuple[str, ...]], _Pieces] = field(
        default_factory=dict, compare=False, repr=False
    )
    _splits: dict[str, _Split] = field(default_factory=dict, compare=False, repr=False)
    _markers: dict[tuple[str, int], re.Pattern[str]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def means(self, kind: str, text: str, *, along: tuple[str, ...] = ()) -> bool:
        """`text` is only phrases of `kind` (and fillers): "行，发吧", "ok go ahead"; with
        `along`, phrases of those kinds may stand beside ("算了，返回机器人")."""
        phrases = self.phrases.get(kind, frozenset())
        answer = phrase_key(text)
        if not answer:
            return False
        if answer in phrases:
            return True
        pieces = self._pieces.get((kind, along))
        if pieces is None:
            fillers = self.fillers.union(*(self.phrases.get(o, frozenset()) for o in along))
            pieces = self._pieces[(kind, along)] = _Pieces.of(phrases, fillers)
        if answer.isascii():
            return _covered_words(answer.split(), phrases, pieces.fillers)
        return _covered_chars(answer.replace(" ", ""), pieces.by_first)

    def leads(self, kind: str, text: str) -> bool:
        """`text` begins with a phrase of `kind` and goes on ("不用再发链接了", "no, not now")."""
        answer = phrase_key(text)
        words, chars = self._split(kind)
        spaced, joined = f"{answer} ", answer.replace(" ", "")
        return any(spaced.startswith(p) for p, _ in words) or any(
            joined.startswith(p) for p, _ in chars
        )

    def _past_fillers(self, answer: str) -> str:
        """`answer` (compared form) without the filler words it begins with ("hmm um 算了")."""
        words = answer.split(" ")
        start = 0
        while start < len(words) - 1 and words[start] in self.fillers:
            start += 1
        return " ".join(words[start:])

    def back_to_bot(self, text: str, *, in_passing: bool) -> bool:
        """`text` asks to go back to the bot: only that ("nvm back to bot", "算了，返回机器人"),
        or, `in_passing`, inside a longer message in words long enough to mean it."""
        if self.means("back_to_bot", text, along=("cancel",)):
            return True
        return in_passing and self.contains("back_to_bot", text, shortest=BACK_IN_PASSING)

    def after_lead(self, kind: str, text: str, *, past_fillers: bool = False) -> str | None:
        """What follows the longest phrase of `kind` that `text` begins with ("好的 确认重置"
        → "确认重置"), in the compared form; None when it begins with none. With
        `past_fillers`, the phrase may come after fillers ("hmm never mind, …")."""
        answer = phrase_key(text)
        if past_fillers:
            answer = self._past_fillers(answer)
        words, chars = self._split(kind)
        spaced, joined = f"{answer} ", answer.replace(" ", "")
        lead = max((p for p, _ in words if spaced.startswith(p)), key=len, default=None)
        if lead is not None:
            return spaced[len(lead) :].strip()
        lead = max((p for p, _ in chars if joined.startswith(p)), key=len, default=None)
        return joined[len(lead) :] if lead is not None else None

    def contains(self, kind: str, text: str, *, shortest: int = 1) -> bool:
        """Some phrase of `kind` appears in `text` (for markers: "不对", "actually", "烦死了");
        `shortest` leaves out phrases too short to mean much inside a longer text."""
        return self._marker(kind, shortest).search(f" {phrase_key(text)} ") is not None

    def after_last(self, kind: str, text: str) -> str | None:
        """What follows the last phrase of `kind` in `text`, in the compared form ("12块 哦不对
        15块5" → "15块5" for a correction); None when no phrase of `kind` is in it."""
        marker, key = self._marker(kind, 1), f" {phrase_key(text)} "
        end, at = None, 0
        # An English phrase is matched with the spaces around it: the next may start on the
        # space the last one ended with ("no wait actually 55").
        while (found := marker.search(key, at)) is not None:
            end, at = found.end(), max(found.end() - 1, found.start() + 1)
        return key[end:].strip() if end is not None else None

    def split_at(self, kind: str, text: str, *, shortest: int = 2) -> tuple[str, str] | None:
        """`text` cut at the first phrase of `kind` in it, in the compared form: what comes
        before and after ("W0001什么时候到 顺便问下手续费怎么算" at a side marker); None when
        no phrase of `kind` (of at least `shortest` characters) is in it."""
        key = f" {phrase_key(text)} "
        found = self._marker(kind, shortest).search(key)
        if found is None:
            return None
        return key[: found.start()].strip(), key[found.end() :].strip()

    def _marker(self, kind: str, shortest: int) -> re.Pattern[str]:
        marker = self._markers.get((kind, shortest))
        if marker is None:
            words, chars = self._split(kind)
            # " phrase " for English (whole words), the phrase itself for Chinese, longest
            # first; one search instead of a loop over the phrases.
            alternatives = [f" {re.escape(p)}" for p, size in words if size >= shortest]
            alternatives += [re.escape(p) for p, size in chars if size >= shortest]
            alternatives.sort(key=len, reverse=True)
            pattern = "|".join(alternatives) or r"(?!)"
            marker = self._markers[(kind, shortest)] = re.compile(pattern)
        return marker

    def without(
        self,
        kinds: tuple[str, ...],
        text: str,
        *,
        keep: tuple[str, ...] = (),
        punctuation: bool = False,
    ) -> str:
        """`text` (in its compared form) with the phrases of `kinds` taken out, but for those
        that are also phrases of `keep`: what an upset message asks once its tone is set
        aside ("烦死了！！我的提现呢" asks "我的提现呢"). The text itself when nothing is left.
        With `punctuation`, the text keeps its punctuation (folded, not compared): the clauses
        of a long message stay apart ("wtf where is my money!!! been waiting forever")."""
        kept = frozenset().union(*(self.phrases.get(k, frozenset()) for k in keep))
        phrases = sorted(
            {p for kind in kinds for p in self.phrases.get(kind, frozenset())} - kept,
            key=len,
            reverse=True,
        )
        answer = f" {fold(text) if punctuation else phrase_key(text)} "
        bounds = (r"(?<![a-z0-9])", r"(?![a-z0-9])") if punctuation else ("(?<= )", "(?= )")
        for phrase in phrases:
            if phrase.isascii():
                answer = re.sub(rf"{bounds[0]}{re.escape(phrase)}{bounds[1]}", " ", answer)
            else:
                answer = answer.replace(phrase, " ")
        rest = " ".join(answer.split())
        return rest or text

    def _split(self, kind: str) -> _Split:
        """The phrases of `kind` in English (each with a space after) and in Chinese, with
        their lengths: built on first use, not for every message."""
        split = self._splits.get(kind)
        if split is None:
            phrases = sorted(self.phrases.get(kind, frozenset()))
            split = self._splits[kind] = (
                tuple((f"{p} ", len(p)) for p in phrases if p.isascii()),
                tuple((p, len(p)) for p in phrases if not p.isascii()),
            )
        return split


def _covered_words(words: list[str], phrases: frozenset[str], fillers: frozenset[str]) -> bool:
    """The words can be cut into phrases and fillers, at least one of them a phrase (every cut
    is tried: "回到刚才那个" is 回到 + 刚才那个 when 回到刚才 + 那个 fails)."""
    # reach[i]: 0 not reachable, 1 reachable by fillers only, 2 reachable with a phrase.
    reach = [0] * (len(words) + 1)
    reach[0] = 1
    for i in range(len(words)):
        if not reach[i]:
            continue
        for size in range(1, min(5, len(words) - i) + 1):
            chunk = " ".join(words[i : i + size])
            if chunk in phrases:
                reach[i + size] = 2
            elif chunk in fillers:
                reach[i + size] = max(reach[i + size], reach[i])
    return reach[-1] == 2


@dataclass(frozen=True, slots=True)
class _Pieces:
    fillers: frozenset[str]
    # Every phrase and filler without its spaces, and whether it is a phrase, by its first
    # character, longest first: a text is tried only against pieces that can start where it is
    # (most messages are not fixed words, and fail at their first character).
    by_first: dict[str, tuple[tuple[str, bool], ...]]

    @classmethod
    def of(cls, phrases: frozenset[str], fillers: frozenset[str]) -> _Pieces:
        pieces = {p.replace(" ", ""): p in phrases for p in (*fillers, *phrases)}
        ordered = sorted(pieces.items(), key=lambda item: len(item[0]), reverse=True)
        by_first: dict[str, list[tuple[str, bool]]] = {}
        for piece, phrase in ordered:
            if piece:
                by_first.setdefault(piece[0], []).append((piece, phrase))
        return cls(fillers, {first: tuple(found) for first, found in by_first.items()})


def _covered_chars(answer: str, by_first: dict[str, tuple[tuple[str, bool], ...]]) -> bool:
    """The same for text without spaces between words (Chinese, or Chinese and "ok" mixed)."""
    reach = [0] * (len(answer) + 1)
    reach[0] = 1
    for i in range(len(answer)):
        if not reach[i]:
            continue
        for piece, is_phrase in by_first.get(answer[i], ()):
            if answer.startswith(piece, i):
                end = i + len(piece)
                reach[end] = max(reach[end], 2 if is_phrase else reach[i])
    return reach[-1] == 2
