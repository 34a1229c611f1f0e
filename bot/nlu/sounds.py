"""Chinese typed by sound: pinyin in Latin letters ("zhuce在哪", "mima wangle 咋办").

Merchants on a phone often type the pinyin of a word when the input method does not offer it.
The knowledge's own Chinese words are indexed by their toneless pinyin (every run of two to
four characters that the in-scope phrasings use at least twice); a run of Latin words that is
the pinyin of such a word, and not an English word the knowledge knows, is read as that word.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from pypinyin import lazy_pinyin

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# Latin words, spaces between them allowed ("zhi fu bu liao").
_LATIN_RUN = re.compile(r"[a-z]+(?: +[a-z]+)*")
# A Chinese word of this many characters is indexed by sound; and at most this many Latin
# words are joined to find one ("zhi fu" = 支付).
_SHORTEST, _LONGEST = 2, 4
# A word used this often in the in-scope phrasings (a run used once may cross two words).
_MIN_USES = 2


def sound(text: str) -> str:
    """The toneless pinyin of a Chinese text, syllables apart ("白白" -> "bai bai")."""
    return " ".join(lazy_pinyin(text))


class PinyinWords:
    """The knowledge's Chinese words by their joined toneless pinyin ("zhifu" -> 支付)."""

    def __init__(self, texts: Iterable[str]) -> None:
        uses: dict[str, Counter[str]] = defaultdict(Counter)
        syllables: set[str] = set()
        for text in texts:
            for run in _CJK_RUN.findall(text):
                spoken = lazy_pinyin(run)
                syllables.update(spoken)
                for size in range(_SHORTEST, min(_LONGEST, len(run)) + 1):
                    for i in range(len(run) - size + 1):
                        uses["".join(spoken[i : i + size])][run[i : i + size]] += 1
        self._words = {
            key: word
            for key, counted in uses.items()
            for word, n in [counted.most_common(1)[0]]
            if n >= _MIN_USES
        }
        self._syllables = frozenset(s for s in syllables if s.isascii() and s.isalpha())

    def apply(self, text: str, known: Callable[[str], bool]) -> str:
        """`text` with pinyin runs replaced by their Chinese words. Only in a message that has
        Chinese characters or whose Latin words are all pinyin syllables; never a word for
        which `known` is true (an English word of the knowledge)."""
        if not self._words:
            return text
        if _CJK.search(text) is None and not all(
            self._spoken(w) for w in text.split() if w.isalpha()
        ):
            return text
        return _LATIN_RUN.sub(lambda m: self._replace(m.group(0), known), text)

    def _spoken(self, word: str) -> bool:
        """`word` is pinyin syllables run together ("tixian" = ti xian)."""
        ends = {0}
        for end in range(1, len(word) + 1):
            if any(word[start:end] in self._syllables for start in ends if end - start <= 6):
                ends.add(end)
        return len(word) in ends

    def _replace(self, run: str, known: Callable[[str], bool]) -> str:
        words = run.split()
        out: list[str] = []
        i = 0
        while i < len(words):
            for size in range(min(_LONGEST, len(words) - i), 0, -1):
                chunk = words[i : i + size]
                word = self._words.get("".join(chunk))
                if word is not None and not known("".join(chunk)):
                    # Chinese words read from pinyin stand together, as typed in characters.
                    if out and _CJK.match(out[-1][-1]):
                        out[-1] += word
                    else:
                        out.append(word)
                    i += size
                    break
            else:
                out.append(words[i])
                i += 1
        return " ".join(out)
