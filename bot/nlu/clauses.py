"""Cutting a long message into clauses, so the question weighs more than the story around it.

"我是开奶茶店的，平时生意还行，我想知道手续费怎么收": the matcher scores the whole text and each
clause; the clause that asks (it starts with 我想知道 / "i want to know", or ends in a question
mark, or else comes last) is the question. The words that start a clause are data
(`knowledge/clauses.yaml`), not Python.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from bot.nlu.normalize import fold

# Punctuation that ends a clause, Chinese and Western; a question mark is kept as a sign.
_BREAKS = re.compile(r"[，,。．.！!？?；;…~～\n]+")
_QUESTION_MARKS = frozenset("?？")


@dataclass(frozen=True, slots=True)
class Clause:
    text: str
    asks: bool


@dataclass(frozen=True, slots=True)
class ClauseWords:
    """`ask`: words that start the question ("我想知道"); `join`: words that start any clause."""

    ask: tuple[str, ...] = ()
    join: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, ask: list[str], join: list[str]) -> ClauseWords:
        ask_t = tuple(dict.fromkeys(fold(w).strip() for w in ask if w.strip()))
        join_t = tuple(dict.fromkeys(fold(w).strip() for w in join if w.strip()))
        words = sorted((*ask_t, *join_t), key=len, reverse=True)
        pattern = re.compile("|".join(_word_pattern(w) for w in words)) if words else None
        return cls(ask_t, join_t, pattern)

    def split(self, folded: str, *, shortest: int = 4) -> list[Clause]:
        """The clauses of a folded text, in order; pieces shorter than `shortest` characters
        (亲, "hi") join the clause after them."""
        pieces: list[tuple[str, bool, bool]] = []  # (text, starts with an ask word, ends in ?)
        for match in _segments(folded):
            segment, mark = match
            starts = [0]
            if self._pattern is not None:
                starts += [m.start() for m in self._pattern.finditer(segment) if m.start() > 0]
            bounds = [*sorted(set(starts)), len(segment)]
            for i, (a, b) in enumerate(itertools.pairwise(bounds)):
                text = segment[a:b].strip()
                if text:
                    last = i == len(bounds) - 2
                    pieces.append((text, self._asks(text), last and mark))
        clauses: list[Clause] = []
        carry = ""
        carry_asks = False
        for text, asks, question in pieces:
            text = f"{carry} {text}".strip() if carry else text
            asks = asks or carry_asks
            if len(text.replace(" ", "")) < shortest:
                carry, carry_asks = text, asks
                continue
            carry, carry_asks = "", False
            clauses.append(Clause(text, asks or question))
        if carry:
            if clauses:
                previous = clauses.pop()
                clauses.append(Clause(f"{previous.text} {carry}", previous.asks or carry_asks))
            else:
                clauses.append(Clause(carry, carry_asks))
        return clauses

    def question(self, clauses: list[Clause]) -> int:
        """Index of the clause that asks: the last one marked, else the last clause."""
        marked = [i for i, clause in enumerate(clauses) if clause.asks]
        return marked[-1] if marked else len(clauses) - 1

    def _asks(self, text: str) -> bool:
        return any(
            text.startswith(word)
            and (not word.isascii() or text[len(word) : len(word) + 1] in "' ")
            for word in self.ask
        )


def _word_pattern(word: str) -> str:
    if word.isascii():
        return r"(?<![a-z'])" + re.escape(word) + r"(?![a-z])"
    return re.escape(word)


def _segments(folded: str) -> list[tuple[str, bool]]:
    """The text between clause-ending punctuation, each with whether a question mark ends it."""
    out: list[tuple[str, bool]] = []
    last = 0
    for match in _BREAKS.finditer(folded):
        out.append((folded[last : match.start()], bool(_QUESTION_MARKS & set(match.group(0)))))
        last = match.end()
    out.append((folded[last:], False))
    return [(text, mark) for text, mark in out if text.strip()]
