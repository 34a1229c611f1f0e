"""Text normalisation shared by the knowledge index and incoming messages.

Both sides go through the same steps, so a phrasing in the knowledge and a user's message meet in
one form: half-width, Simplified, lower case, punctuation folded to spaces, domain typos fixed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

import zhconv

_PUNCT_OR_SPACE = re.compile(r"[\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN_WORD = re.compile(r"[a-z]+|\d+")


@lru_cache(maxsize=128)
def fold(text: str) -> str:
    """Full-width to half-width, Traditional to Simplified, lower case; keeps punctuation.

    Kept for the last few texts: one message is folded by each part that reads it (language,
    entities, the fixed words, the values, the matcher), about fifteen times a turn. Few, so
    that what users typed does not stay in memory longer than the turns in flight need."""
    text = unicodedata.normalize("NFKC", text)
    if _CJK.search(text):
        text = zhconv.convert(text, "zh-cn")
    return text.lower()


def strip_punctuation(text: str) -> str:
    return _PUNCT_OR_SPACE.sub(" ", text).strip()


class SynonymTable:
    """Replaces typos and colloquial variants by the canonical word, longest variant first."""

    def __init__(self, groups: Mapping[str, list[str]]) -> None:
        pairs: dict[str, str] = {}
        for canonical, variants in groups.items():
            for variant in variants:
                key = fold(variant).strip()
                if key and key != canonical:
                    pairs[key] = fold(canonical)
        self._pairs = pairs
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(pairs, key=len, reverse=True)))
            if pairs
            else None
        )

    def apply(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._pairs[m.group(0)], text)


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def cjk_runs(text: str) -> list[str]:
    return _CJK_RUN.findall(text)


def latin_words(text: str) -> list[str]:
    return _LATIN_WORD.findall(text)
