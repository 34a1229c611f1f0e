"""Chinese numerals as people type them in chat: 八十八, 两千五, 一万二, 三点五."""

from __future__ import annotations

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
