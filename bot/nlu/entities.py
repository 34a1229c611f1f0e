"""Entities found in a message: order numbers, amounts, mainland mobile numbers, emails.

Works on folded text (see `normalize.fold`), so full-width digits and ￥ are already plain; spans
refer to that folded text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from bot.nlu.numerals import CHINESE_NUMERAL_CHARS, parse_chinese_number
from bot.types import Entity

# The one reader of order numbers, for the NLU, the values a flow reads and the dialogue
# policy: BT + 16 digits, as pasted ("BT 2026 1126 0000 0001", "bt-2026-..."); the digits are
# group 1. ORDER_DIGITS: the 16 digits alone, where an order number is asked (people drop
# the BT).
ORDER_NO = re.compile(r"(?<![a-z0-9])bt[\s-]*((?:\d[\s-]*){15}\d)(?!\d)")
# Without the BT, only digits that start as an order number does (its date, "20…"): a card
# number ("6222 0212 3456 7890") is never read as an order.
ORDER_DIGITS = re.compile(r"(?<!\d)(2[\s-]?0(?:[\s-]?\d){14})(?!\d)")
EMAIL = re.compile(
    r"(?<![a-z0-9._%+-])[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?![a-z])"
)
# W + digits (group 1), any case, a space or dash after the W allowed.
WITHDRAWAL_ID = re.compile(r"(?<![a-z0-9])w[\s-]*(\d{3,12})(?!\d)")
# Free text attached to a request ("备注：榴莲一箱", "note: durian box"): payload, not meaning.
# "备注" also without its colon ("二百六 备注 水果礼盒"): it says nothing else in a request; the
# English words and 说明 / 留言 do, and need the colon.
NOTE = re.compile(r"(?:(?:备注|说明|留言|note|memo)\s*[:：]|备注\s)\s*(\S.{0,79})$")
PHONE = re.compile(r"(?<![\d.])(?:\+?86[ -]?)?(1[3-9]\d[ -]?\d{4}[ -]?\d{4})(?![\d.])")


def order_no_of(match: re.Match[str]) -> str:
    """The order number an `ORDER_NO` or `ORDER_DIGITS` match stands for, as stored."""
    return "BT" + re.sub(r"[\s-]", "", match.group(1))


_NUM = r"\d{1,9}(?:,\d{3})*(?:\.\d{1,2})?"
_CN = f"[{CHINESE_NUMERAL_CHARS}]+"
_YUAN = r"(?:元|块钱|块|rmb|cny|yuan|kuai)"
_AMOUNT_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Decimal | None]]] = []


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def _scaled(number: Decimal | None, unit: str | None) -> Decimal | None:
    if number is None:
        return None
    return number * 10_000 if unit == "万" else number


def _with_jiao(whole: Decimal | None, jiao: str | None) -> Decimal | None:
    """三块五 / 88块5: the digit after 块 is tenths (角/毛)."""
    if whole is None:
        return None
    if not jiao:
        return whole
    tenth = parse_chinese_number(jiao) if not jiao.isdigit() else Decimal(jiao)
    if tenth is None or tenth >= 10:
        return None
    return whole + tenth / 10


def _amount_rules() -> None:
    prefix = re.compile(rf"(?:¥|\$|rmb|cny)\s*({_NUM})(万)?(?![\d])")
    digits_unit = re.compile(
        rf"(?<![\d.a-z])({_NUM})\s*(万)?\s*{_YUAN}(?:\s*(\d)(?![\d.])\s*[毛角]?)?"
    )
    chinese_unit = re.compile(rf"({_CN})\s*{_YUAN}(?:([一二三四五六七八九])[毛角]?)?")
    digits_wan = re.compile(rf"(?<![\d.a-z])({_NUM})\s*(万)(?![\d])")
    _AMOUNT_PATTERNS.extend(
        [
            (prefix, lambda m: _scaled(_decimal(m.group(1)), m.group(2))),
            (
                digits_unit,
                lambda m: _with_jiao(_scaled(_decimal(m.group(1)), m.group(2)), m.group(3)),
            ),
            (chinese_unit, lambda m: _with_jiao(parse_chinese_number(m.group(1)), m.group(2))),
            (digits_wan, lambda m: _scaled(_decimal(m.group(1)), m.group(2))),
        ]
    )


_amount_rules()


def _overlaps(start: int, end: int, taken: list[tuple[int, int]]) -> bool:
    return any(start < t_end and t_start < end for t_start, t_end in taken)


def extract_entities(folded: str) -> tuple[Entity, ...]:
    """All entities in reading order; a span belongs to at most one entity."""
    found: list[Entity] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, value: str, start: int, end: int) -> None:
        if not _overlaps(start, end, taken):
            taken.append((start, end))
            found.append(Entity(kind, value, start, end))

    for m in ORDER_NO.finditer(folded):
        add("order_no", order_no_of(m), m.start(), m.end())
    for m in NOTE.finditer(folded):
        # The marker goes with it: "备注" says nothing about what is asked either.
        add("note", m.group(1).strip(), m.start(), m.end(1))
    for m in WITHDRAWAL_ID.finditer(folded):
        add("withdrawal_id", "W" + m.group(1), m.start(), m.end())
    for m in EMAIL.finditer(folded):
        add("email", m.group(0), m.start(), m.end())
    for m in PHONE.finditer(folded):
        add("phone", re.sub(r"[ -]", "", m.group(1)), m.start(), m.end())
    for pattern, value_of in _AMOUNT_PATTERNS:
        for m in pattern.finditer(folded):
            value = value_of(m)
            if value is not None and value > 0:
                add("amount", f"{value.quantize(Decimal('0.01'))}", m.start(), m.end())
    return tuple(sorted(found, key=lambda e: e.start))


PLACEHOLDERS = {
    "order_no": " ordno ",
    "email": " emailaddr ",
    "phone": " phoneno ",
    "amount": " amt ",
    "withdrawal_id": " wdno ",
    "note": " notetext ",
}


def replace_entities(folded: str, entities: tuple[Entity, ...]) -> str:
    """The text with each entity replaced by a placeholder word, so matching sees its kind."""
    out, last = [], 0
    for entity in entities:
        out.append(folded[last : entity.start])
        out.append(PLACEHOLDERS[entity.kind])
        last = entity.end
    out.append(folded[last:])
    return "".join(out)
