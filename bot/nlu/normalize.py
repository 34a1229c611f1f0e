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

from bot.nlu.features import stem

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
    """Replaces typos and colloquial variants by the canonical word, longest variant first.

    Three kinds of variant, by how they are written: a Chinese (or mixed) variant is replaced as
    a plain substring; an English phrase ("log in") only as whole words; a single English word
    by its Snowball stem, so "charges" and "charged" both find the group that lists "charge".
    """

    def __init__(self, groups: Mapping[str, list[str]]) -> None:
        pairs: dict[str, str] = {}
        phrases: dict[str, str] = {}
        words: dict[str, str] = {}
        for canonical, variants in groups.items():
            target = fold(canonical)
            for variant in variants:
                key = fold(variant).strip()
                if not key or key == target:
                    continue
                if _ENGLISH_WORD.fullmatch(key):
                    words[stem(key)] = target
                elif _ENGLISH_PHRASE.fullmatch(key):
                    phrases[key] = target
                else:
                    pairs[key] = target
        self._pairs = pairs
        self._pattern = _alternation(pairs)
        self._phrases = phrases
        self._phrase_pattern = _alternation(phrases, r"(?<![a-z])(?:", r")(?![a-z])")
        self._words = words

    def apply(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(lambda m: self._pairs[m.group(0)], text)
        if self._phrase_pattern is not None:
            text = self._phrase_pattern.sub(lambda m: self._phrases[m.group(0)], text)
        if self._words:
            text = _ENGLISH_WORDS.sub(lambda m: self._words.get(stem(m.group(0)), m.group(0)), text)
        return text


_ENGLISH_WORD = re.compile(r"[a-z]+")
_ENGLISH_WORDS = re.compile(r"[a-z]+")
_ENGLISH_PHRASE = re.compile(r"[a-z]+(?: [a-z]+)+")


def _alternation(
    variants: Mapping[str, str], before: str = "", after: str = ""
) -> re.Pattern[str] | None:
    if not variants:
        return None
    ordered = sorted(variants, key=len, reverse=True)
    return re.compile(before + "|".join(re.escape(v) for v in ordered) + after)


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def cjk_runs(text: str) -> list[str]:
    return _CJK_RUN.findall(text)


def latin_words(text: str) -> list[str]:
    return _LATIN_WORD.findall(text)
