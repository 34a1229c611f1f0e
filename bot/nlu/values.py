"""Reading a slot's value out of what a user typed, in the forms people actually type.

Each reader takes the raw text of a message that answers a question of a known type (an amount,
an order number, a choice among offered options, yes or no) and returns the value or None. In
a flow the type is known, so a bare "45.5" or "二百六" is an amount there, where outside a flow
the NLU's entities ask for a unit ("45.5元") before calling a number an amount.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from rapidfuzz import fuzz

from bot.nlu.entities import (
    ORDER_DIGITS,
    ORDER_NO,
    WITHDRAWAL_ID,
    extract_entities,
    order_no_of,
)
from bot.nlu.normalize import fold, strip_punctuation
from bot.nlu.numerals import (
    CHINESE_NUMERAL_CHARS,
    ENGLISH_NUMBER,
    parse_chinese_number,
    parse_english_number,
)
from bot.nlu.words import Words

CENT = Decimal("0.01")
# A bare number with an optional multiplier: 45, 45.5, 1,200, 1.2k, 1.5w, 3千, 1万.
_BARE = re.compile(
    r"(?<![0-9a-z.-])(\d{1,9}(?:,\d{3})*(?:\.\d{1,2})?)\s*(k|w|百|千|万)?(?![0-9a-z.])|"
    rf"([{CHINESE_NUMERAL_CHARS}]+)",
)
_UNIT_CHARS = frozenset("十百千万")
_LEADING_ZERO = re.compile(r"0\d")
# A number of days, hours or times is not an amount: "it's been 2 days", "等了十五分钟", "试了3次".
_NOT_MONEY = re.compile(
    r"\s*(?:days?|hours?|hrs?|mins?|minutes?|secs?|seconds?|weeks?|months?|years?|times|"
    r"天|日|个?小时|分钟|秒|周|个?星期|个?礼拜|个?月|年|次|遍|号)"
)
_MULTIPLIERS = {None: 1, "": 1, "k": 1000, "百": 100, "千": 1000, "w": 10_000, "万": 10_000}
# 45块5, 3块8毛: whole yuan and tenths (the NLU's entity rules cover the forms with a unit).
_ORDINALS_ZH = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8}
_ORDINAL_ZH = re.compile(r"第\s*([一二两三四五六七八\d])\s*(?:个|笔|项|条|张|单)?")
_ORDINALS_EN = {
    "first": 1,
    "1st": 1,
    "second": 2,
    "2nd": 2,
    "third": 3,
    "3rd": 3,
    "fourth": 4,
    "4th": 4,
    "fifth": 5,
    "5th": 5,
}
_LAST = {
    "last",
    "last one",
    "最后",
    "最后一个",
    "最后那个",
    "最后一笔",
    "最下面那个",
    "最下面的",
    "最底下那个",
    "bottom one",
    "the bottom one",
}
# The first by where it stands in the list ("最上面那个", "the top one").
_FIRST = {"最上面那个", "最上面的", "最上面", "top one", "the top one"}
# How much else an answer may say beside its ordinal: characters around "第二个", words in all.
_ORDINAL_REST = 4
_ORDINAL_WORDS = 4


# A Latin name said "not" to inside a choice ("不是li_risk", "not wang_cashier").
_NOT_NAME = re.compile(r"(?:而不是|不是|不要|\bnot\s+(?:the\s+)?)\s*[a-z][a-z0-9_]*")
# A Latin option name this long may be typed with a slip and still name it (rapidfuzz ratio).
_TYPO_MIN_CHARS = 5
_TYPO_SCORE = 85


def _money(value: Decimal | None) -> Decimal | None:
    if value is None or value <= 0 or not value.is_finite():
        return None
    if value != value.quantize(CENT):
        return None  # more than two decimals is not an amount of money
    return value.quantize(CENT)


def read_amount(text: str) -> Decimal | None:
    """The one amount in `text`: with a unit ("260元", "¥45.5", "45块5") or bare ("二百六",
    "1.2k", "45.5", "eighty eight"); None when there is none, or more than one and they differ."""
    folded = fold(text)
    amounts = {e.value for e in extract_entities(folded) if e.kind == "amount"}
    if len(amounts) == 1:
        return _money(Decimal(amounts.pop()))
    if amounts:
        return None
    found: set[Decimal] = set()
    folded_ids = _without_ids(folded)
    for match in _BARE.finditer(folded_ids):
        digits, multiplier, chinese = match.groups()
        if _NOT_MONEY.match(folded_ids, match.end()):
            continue
        value: Decimal | None
        if chinese is not None:
            # A lone 一 or 两 is "a" or "a couple" (一个, 一下), not an amount.
            plain = len(chinese) < 2 and chinese not in _UNIT_CHARS
            value = None if plain or chinese == "点" else parse_chinese_number(chinese)
        elif _LEADING_ZERO.match(digits):
            # "0005", "0012": the end of an order number or a code, never money.
            continue
        else:
            try:
                value = Decimal(digits.replace(",", "")) * _MULTIPLIERS[multiplier]
            except InvalidOperation:
                value = None
        money = _money(value)
        if money is not None:
            found.add(money)
    for match in ENGLISH_NUMBER.finditer(folded):
        money = _money(parse_english_number(match.group(0)))
        if money is not None:
            found.add(money)
    return found.pop() if len(found) == 1 else None


def _without_ids(folded: str) -> str:
    """Order numbers and withdrawal ids are not amounts: blank them before looking for numbers."""
    folded = ORDER_NO.sub(" ", folded)
    return WITHDRAWAL_ID.sub(" ", folded)


def read_order_no(text: str) -> str | None:
    """An order number however it was pasted: `BT` + 16 digits, any case, with spaces or dashes
    between the digits, inside a sentence; 16 digits alone count too (people drop the BT)."""
    folded = fold(text)
    match = ORDER_NO.search(folded) or ORDER_DIGITS.search(folded)
    return order_no_of(match) if match is not None else None


def read_withdrawal_id(text: str) -> str | None:
    """A withdrawal id (`W` + digits), any case, a space or dash after the W allowed."""
    match = WITHDRAWAL_ID.search(fold(text))
    return "W" + match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Option:
    """One of the answers offered: its label, the action it stands for, and words that name it
    (a login's name, "locked" for the locked login, an order's last digits)."""

    label: str
    action: str
    names: tuple[str, ...] = ()


def read_choice(text: str, options: Sequence[Option]) -> int | None:
    """Which offered option a typed answer picks (its index): its number ("2"), an ordinal
    ("第二个", "the second one", "最后一个"), its label, or a word that names only it."""
    answer = strip_punctuation(fold(text))
    if not answer or not options:
        return None
    if answer.isdigit():
        number = int(answer)
        return number - 1 if 1 <= number <= len(options) else None
    ordinal = _ordinal(answer, len(options))
    if ordinal is not None:
        return ordinal
    for index, option in enumerate(options):
        if answer == strip_punctuation(fold(option.label)):
            return index
    # "li 这个，不是li_risk", "wang, not wang_cashier": the name said "not" to is not picked.
    answer = _NOT_NAME.sub(" ", answer).strip() or answer
    # A name typed with a slip ("wang_cahsier"): the one option it is close to.
    typed = _compact(answer)
    close = [index for index, option in enumerate(options) if _typed_close(typed, option.label)]
    if len(close) == 1:
        return close[0]
    words = set(answer.split())
    named = [
        index
        for index, option in enumerate(options)
        if any(_names(answer, words, name) for name in (*option.names, option.label))
    ]
    if len(named) == 1:
        return named[0]
    # Words around the answer ("wang_cashier pls") make a shorter name inside it match too
    # (wang): the option whose whole name the answer says, longest, is the one meant.
    spoken = {index: _said(answer, options[index]) for index in named}
    longest = max(spoken.values(), default=0)
    chosen = [index for index, size in spoken.items() if size == longest]
    return chosen[0] if longest and len(chosen) == 1 else None


def _typed_close(typed: str, label: str) -> bool:
    """The answer (`_compact`) is the option's Latin name with a typo or two ("wang_cahsier")."""
    name = _compact(label)
    if not (name.isascii() and typed.isascii()) or len(name) < _TYPO_MIN_CHARS:
        return False
    return fuzz.ratio(typed, name) >= _TYPO_SCORE


def _compact(text: str) -> str:
    return strip_punctuation(fold(text)).replace(" ", "").replace("_", "")


def _said(answer: str, option: Option) -> int:
    """The length of the longest of the option's names the answer says whole (0: none)."""
    sizes = [
        len(folded)
        for name in (*option.names, option.label)
        if (folded := strip_punctuation(fold(name)))
        and (_whole(folded, answer) if folded.isascii() else folded in answer)
    ]
    return max(sizes, default=0)


def read_position(text: str, count: int) -> int | None:
    """Which of `count` offered options a typed number or ordinal picks ("2", "第二个",
    "the second one", "最后一个"); None for anything else."""
    answer = strip_punctuation(fold(text))
    if answer.isdigit():
        number = int(answer)
        return number - 1 if 1 <= number <= count else None
    return _ordinal(answer, count) if answer and count else None


def names_said(text: str, names: Sequence[str]) -> list[str]:
    """The names of `names` said whole in `text` ("那li这个号呢": li, not li_risk), shortest
    first, so the last is the longest said."""
    folded = fold(text)
    return sorted((name for name in names if _whole(name, folded)), key=len)


def _whole(name: str, answer: str) -> bool:
    """A Latin name said whole in the answer, also between Chinese characters ("重置下wang的
    密码"), but not as part of a longer name (wang in wang_cashier)."""
    return re.search(rf"(?<![a-z0-9_]){re.escape(name)}(?![a-z0-9_])", answer) is not None


def _names(answer: str, words: set[str], name: str) -> bool:
    folded = strip_punctuation(fold(name))
    if not folded:
        return False
    if folded.isascii():
        if folded in words or _whole(folded, answer):
            return True
        # One distinctive word of a name: "cashier" for wang_cashier.
        return any(len(word) >= 4 and word in words for word in folded.split())
    return folded in answer


def _ordinal(answer: str, count: int) -> int | None:
    """The position an answer names, when naming it is all the answer does ("第二个吧", "the
    first one pls"): a longer message with "first" in it ("make it 45, they want the deposit
    first") picks nothing."""
    if answer in _LAST:
        return count - 1
    if answer in _FIRST:
        return 0
    match = _ORDINAL_ZH.search(answer)
    if match is not None and len(answer.replace(" ", "")) - len(match.group(0)) > _ORDINAL_REST:
        match = None
    if match is None and len(answer.split()) > _ORDINAL_WORDS:
        return None
    if match is not None:
        token = match.group(1)
        number = int(token) if token.isdigit() else _ORDINALS_ZH[token]
        return number - 1 if 1 <= number <= count else None
    for word in answer.split():
        position = _ORDINALS_EN.get(word)
        if position is not None:
            return position - 1 if position <= count else None
    if "last" in answer.split():
        return count - 1
    return None


def read_yes_no(text: str, words: Words) -> bool | None:
    """True for yes ("行，发吧", "go ahead"), False for no ("先不用", "no thanks"), else None."""
    if words.means("yes", text):
        return True
    if words.means("no", text):
        return False
    return None
