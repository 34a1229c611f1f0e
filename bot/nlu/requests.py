"""Requests that cross a topic boundary: "a payment link please" asks for the action, not the FAQ.

The label table (`knowledge/LABELS.md`) draws some boundaries between a topic the guide
explains and a flow that works on live data: link payments in general (`methods.link`) vs
"make me a link now" (`action.payment_link`); withdrawals in general (`withdraw.how`) vs "where is
my withdrawal" (`status.withdrawal`). The words of a topic and of its flow are the same, so the
matcher's scores alone often put a short request on the topic. What tells them apart is a
marker: a request (please, pls, i need, can you, 帮我, 给我) or a pending thing (where's my,
hasn't arrived, 到哪了, 还没到). Markers, the words that block them (a how-question: how,
怎么) and the moves they make are data (`knowledge/requests.yaml`), not Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.nlu.entities import PLACEHOLDERS
from bot.nlu.normalize import fold, strip_punctuation
from bot.types import Label


def marker_key(text: str) -> str:
    """The form markers and messages are compared in: folded, punctuation as spaces."""
    return strip_punctuation(fold(text))


@dataclass(frozen=True, slots=True)
class Move:
    """A message the matcher puts on `source` belongs to `target` when it has a `kind` marker."""

    source: Label
    target: Label
    kind: str


@dataclass(frozen=True, slots=True)
class RequestWords:
    """Markers per kind, the words that block each kind, and the moves (by source label)."""

    markers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unless: dict[str, tuple[str, ...]] = field(default_factory=dict)
    moves: dict[Label, Move] = field(default_factory=dict)
    _patterns: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False, repr=False)
    _blockers: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        markers: dict[str, list[str]],
        unless: dict[str, list[str]],
        moves: list[Move],
    ) -> RequestWords:
        clean = {k: _clean(words) for k, words in markers.items()}
        blocking = {k: _clean(words) for k, words in unless.items()}
        return cls(
            clean,
            blocking,
            {move.source: move for move in moves},
            {k: p for k, words in clean.items() if (p := _pattern(words)) is not None},
            {k: p for k, words in blocking.items() if (p := _pattern(words)) is not None},
        )

    def has(self, kind: str, key: str) -> bool:
        """`key` (see `marker_key`) carries a marker of `kind` and none of its blocking words."""
        pattern = self._patterns.get(kind)
        if pattern is None or not pattern.search(key):
            return False
        blocker = self._blockers.get(kind)
        return blocker is None or not blocker.search(key)

    def marked(self, key: str) -> bool:
        """`key` carries a marker of any kind: it asks for something."""
        return any(self.has(kind, key) for kind in self._patterns)

    def target(self, label: Label, key: str) -> Label | None:
        """Where a message matched to `label` belongs, if one of its markers moves it."""
        move = self.moves.get(label)
        if move is None or not self.has(move.kind, key):
            return None
        return move.target

    def toward(self, label: Label, key: str) -> Label | None:
        """The flow a marker in `key` asks for, when `label` is that flow or the topic a
        marker moves to it; None without such a marker."""
        moved = self.target(label, key)
        if moved is not None:
            return moved
        into = [m for m in self.moves.values() if m.target == label]
        return label if any(self.has(m.kind, key) for m in into) else None

    def settles(self, first: Label, second: Label, key: str) -> Label | None:
        """The label a marker picks when a topic and its flow tie ("could you send me a link"):
        the flow when the marker is there, else None (the tie stands)."""
        for source, target in ((first, second), (second, first)):
            move = self.moves.get(source)
            if move is not None and move.target == target and self.has(move.kind, key):
                return target
        return None


# "{number}": a bare number beside the words ("链接收款 200", "link 75"), an amount written
# without its unit; not a duration, a count or a date ("24小时", "3天", "2 days").
NUMBER = "{number}"
_NUMBER_PATTERN = (
    r"(?<![a-z0-9])\d{2,7}(?![0-9])"
    r"(?!\s*(?:小时|天|分|秒|个|次|点|号|月|年|周|日|笔|h(?![a-z])|hours?|days?|min|weeks?))"
)


def _clean(words: list[str]) -> tuple[str, ...]:
    """Markers as `marker_key` forms; "{amount}" stands for the amount placeholder (any amount
    the entity extractor finds), and so on for every entity kind; "{number}" (`NUMBER`) for a
    bare number."""
    return tuple(
        dict.fromkeys(
            w.strip() if NUMBER in w else k
            for w in words
            if NUMBER in w or (k := marker_key(_placeholders(w)))
        )
    )


def _placeholders(word: str) -> str:
    for kind, placeholder in PLACEHOLDERS.items():
        word = word.replace("{" + kind + "}", placeholder)
    return word


def _pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """English words and phrases match as whole words; Chinese ones wherever they appear."""
    if not words:
        return None
    ordered = sorted(words, key=len, reverse=True)
    return re.compile(
        "|".join(
            _NUMBER_PATTERN
            if w == NUMBER
            else _with_number(w)
            if NUMBER in w
            else rf"(?<![a-z0-9]){re.escape(w)}(?![a-z])"
            if w.isascii()
            else re.escape(w)
            for w in ordered
        )
    )


def _with_number(phrase: str) -> str:
    """A phrase around a bare number ("{number}的收款码", "qr code for {number}"): its words
    as written (in the compared form), the number where "{number}" stands."""
    parts = [re.escape(marker_key(_placeholders(part))) for part in phrase.split(NUMBER)]
    pattern = r"\s*\d{1,7}(?:\.\d{1,2})?\s*".join(parts)
    return rf"(?<![a-z0-9]){pattern}" if phrase.isascii() else pattern
