"""Masking of personal numbers before anything is stored or logged.

Card numbers keep their last 4 digits, 18-character ID numbers and mainland mobile numbers are
masked in the middle; order numbers (BT + 16 digits) are not personal and stay whole.
"""

from __future__ import annotations

import re

_ID_NUMBER = re.compile(r"(?<![A-Za-z0-9])(\d{6})(\d{8})(\d{3}[\dXx])(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![A-Za-z0-9])(\d(?:[ -]?\d){11,18})(?![A-Za-z0-9])")
_PHONE = re.compile(
    r"(?<![A-Za-z0-9])((?:\+?86[ -]?)?1[3-9]\d)([ -]?\d{4}[ -]?)(\d{4})(?![A-Za-z0-9])"
)


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(1))
    if not 13 <= len(digits) <= 19:
        return match.group(0)
    return "*" * (len(digits) - 4) + digits[-4:]


_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９ＸｘＢＴｂｔ", "0123456789XxBTbt")


def mask_pii(text: str) -> str:
    """Text safe to store: no full card, ID or phone number survives (full-width digits too)."""
    text = text.translate(_FULL_WIDTH_DIGITS)
    text = _ID_NUMBER.sub(lambda m: m.group(1)[:3] + "*" * 11 + m.group(3)[-4:], text)
    text = _CARD.sub(_mask_card, text)
    return _PHONE.sub(lambda m: m.group(1) + "****" + m.group(3), text)
