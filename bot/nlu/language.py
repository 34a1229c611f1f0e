"""Which language a message is written in, so the bot answers in the same one."""

from __future__ import annotations

import re

from bot.nlu.normalize import cjk_runs
from bot.types import Language

# Names that carry CJK or Latin letters whatever language they appear in.
_NEUTRAL = re.compile(r"b\s*特派|btp|bt\d{16}|app|qr|ssl|id|ok|[a-z0-9._%+-]+@[a-z0-9.-]+")
_LETTERS = re.compile(r"[a-z]{2,}")
# One Latin token and nothing else: a login name, an id, a code ("wang", "shop_01").
_LONE_TOKEN = re.compile(r"\s*[a-z0-9._@+-]{1,32}\s*")


# English words beyond which a few Chinese characters are something pasted, not the language.
_PASTED_WORDS = 8


def detect_language(folded: str, *, current: Language | None = None) -> Language | None:
    """Chinese as soon as a message holds Chinese words (unless it is English around a pasted
    Chinese name); English for Latin words alone.

    Returns None when the text has no language of its own (an order number, "ok", "1"), and,
    in a Chinese chat (`current`), for a lone Latin token: a login name is no sign of English.
    """
    if current == Language.ZH and _LONE_TOKEN.fullmatch(folded):
        return None
    text = _NEUTRAL.sub(" ", folded)
    cjk = sum(len(run) for run in cjk_runs(text))
    words = _LETTERS.findall(text)
    if cjk and len(words) >= _PASTED_WORDS and len(words) >= 2 * cjk:
        # An English message around a pasted Chinese name ("Merchant: 小王水果店 -- copied
        # that off my receipt, can someone tell me…"): the words the person wrote decide.
        return Language.EN
    if cjk >= 2 or (cjk == 1 and not _LETTERS.search(text)):
        return Language.ZH
    if len(words) >= 1 and cjk == 0:
        return Language.EN
    if words and len(words) >= 3:
        return Language.EN
    return Language.ZH if cjk else None
