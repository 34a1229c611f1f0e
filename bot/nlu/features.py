"""Tokens the matcher compares: Chinese characters and bigrams, Latin words as Snowball stems.

English words are reduced by the Snowball English stemmer (PyStemmer), so "charges", "charged"
and "charging" meet "charge" in one token, and knowledge phrasings and messages are stemmed alike.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import Stemmer

_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+|[a-z]+|\d+")
_CJK_START = "\u3400"


@lru_cache(maxsize=1)
def _english() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def stem(word: str) -> str:
    """The Snowball stem of a lower-case English word ("accepting" -> "accept")."""
    return str(_english().stemWord(word))


def tokens(body: str) -> Counter[str]:
    """Bag of tokens of a normalised body: `b:` bigram, `c:` character, `w:` word stem."""
    bag: Counter[str] = Counter()
    for run in _RUN.findall(body):
        if run[0] >= _CJK_START:
            for i, ch in enumerate(run):
                bag["c:" + ch] += 1
                if i + 1 < len(run):
                    bag["b:" + run[i : i + 2]] += 1
        elif run.isdigit():
            bag["d:"] += 1
        else:
            bag["w:" + stem(run)] += 1
    return bag


def units(body: str) -> list[tuple[str, str, str | None]]:
    """The message's meaning-bearing units for coverage: each CJK char with its bigrams, each word.

    Returns (kind, unit, context) triples: ("c", char, "left|right" bigrams) or ("w", stem, None).
    """
    out: list[tuple[str, str, str | None]] = []
    for run in _RUN.findall(body):
        if run[0] >= _CJK_START:
            for i, ch in enumerate(run):
                left = run[i - 1 : i + 1] if i > 0 else ""
                right = run[i : i + 2] if i + 1 < len(run) else ""
                out.append(("c", ch, f"{left}|{right}"))
        elif not run.isdigit():
            out.append(("w", stem(run), None))
    return out
