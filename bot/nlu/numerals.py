"""Numerals in words as people type them in chat: 八十八, 两千五, 一万二, 三点五; eighty eight,
two hundred and fifty, forty-five point five."""

from __future__ import annotations

import re
from decimal import Decimal

_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_TEN_THOUSAND = {"万": 10_000, "亿": 100_000_000}
CHINESE_NUMERAL_CHARS = "".join(_DIGITS) + "".join(_UNITS) + "".join(_TEN_THOUSAND) + "点"


def _section(text: str) -> int | None:
    """A number below 万: 三千零五, 二十, 十五, 两千五 (the trailing 五 there means 500)."""
    total, digit, last_unit, after_zero = 0, None, 0, False
    for ch in text:
        if ch in "零〇":
            after_zero = True
        elif ch in _DIGITS:
            if digit is not None:
                return None
            digit = _DIGITS[ch]
        else:
            unit = _UNITS.get(ch, 0)
            if not unit or (last_unit and unit >= last_unit):
                return None
            if digit is None:
                if unit != 10 or total:
                    return None
                digit = 1
            total += digit * unit
            digit, last_unit, after_zero = None, unit, False
    if digit is not None:
        total += digit * (last_unit // 10 if last_unit > 10 and not after_zero else 1)
    return total


def _integer(text: str) -> int | None:
    if text and all(ch in _DIGITS for ch in text) and len(text) > 1:
        # 一八八 read digit by digit.
        return int("".join(str(_DIGITS[ch]) for ch in text))
    total, rest = 0, text
    for mark, value in sorted(_TEN_THOUSAND.items(), key=lambda kv: -kv[1]):
        if mark in rest:
            head, rest = rest.split(mark, 1)
            head_value = _section(head) if head else 1
            if head_value is None:
                return None
            total += head_value * value
            if rest and all(ch in _DIGITS for ch in rest) and len(rest) == 1:
                return total + _DIGITS[rest] * value // 10
    if rest:
        tail = _section(rest)
        if tail is None:
            return None
        total += tail
    return total


def parse_chinese_number(text: str) -> Decimal | None:
    """The value of a Chinese numeral, or None when `text` is not one."""
    if not text or any(ch not in CHINESE_NUMERAL_CHARS for ch in text):
        return None
    whole, _, fraction = text.partition("点")
    value = _integer(whole) if whole else 0
    if value is None:
        return None
    if fraction:
        if not all(ch in _DIGITS for ch in fraction):
            return None
        return Decimal(f"{value}.{''.join(str(_DIGITS[ch]) for ch in fraction)}")
    return Decimal(value)


_EN_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_EN_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_EN_SCALES = {"hundred": 100, "thousand": 1000, "k": 1000, "grand": 1000}
_EN_WORD = "|".join(sorted([*_EN_UNITS, *_EN_TENS, "hundred", "thousand", "grand"], key=len))
# A run of number words ("eighty eight", "two hundred and fifty", "forty-five point five").
ENGLISH_NUMBER = re.compile(
    rf"\b(?:a\s+)?(?:(?:{_EN_WORD})(?:[\s-]+(?:and\s+)?)?)+(?:point(?:\s+(?:{_EN_WORD}))+)?\b"
)


def parse_english_number(text: str) -> Decimal | None:
    """The value of a number written in English words, or None when `text` is not one (or is
    a lone small word such as "one" or "two", which in chat is rarely an amount: "the one")."""
    words = [w for w in re.split(r"[\s-]+", text.strip().lower()) if w and w != "and"]
    whole, _, fraction = " ".join(words).partition(" point ")
    words = whole.split()
    if words and words[0] == "a":
        words = words[1:] if len(words) > 1 and words[1] in _EN_SCALES else []
        words = ["one", *words] if words else []
    if not words or (len(words) == 1 and words[0] in _EN_UNITS and _EN_UNITS[words[0]] < 10):
        return None
    total, section, last = 0, 0, ""
    for word in words:
        if word in _EN_UNITS:
            if last in _EN_UNITS or (last in _EN_TENS and _EN_UNITS[word] >= 10):
                return None
            section += _EN_UNITS[word]
        elif word in _EN_TENS:
            if last in _EN_UNITS or last in _EN_TENS:
                return None
            section += _EN_TENS[word]
        elif word == "hundred":
            if not section or section >= 100:
                return None
            section *= 100
        elif word in _EN_SCALES:
            if not section and not total:
                return None
            total, section = (total + section) * _EN_SCALES[word], 0
        else:
            return None
        last = word
    value = Decimal(total + section)
    if fraction:
        digits = [_EN_UNITS.get(w) for w in fraction.split()]
        if any(d is None or d > 9 for d in digits):
            return None
        value = Decimal(f"{total + section}.{''.join(str(d) for d in digits)}")
    return value
