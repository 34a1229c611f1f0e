"""Masking of personal numbers and typed passwords before anything is stored, shown or logged.

`mask_pii` is the one function every stored or shown copy of a text goes through. It finds
numbers however they are written: digits joined by any run of separators (spaces, dots,
dashes, slashes, underscores, commas), glued to letters ("card6222…"), full-width. Card
numbers (13-19 digits) keep their last 4 digits, ID numbers (18 characters) their first 3 and
last 4, mainland mobile numbers their first 3 and last 4; a longer run of digits keeps its
last 4. Order numbers (BT + 16 digits) are not personal and stay whole. A password typed
after "密码是", "password:" and the like becomes "******".

Masking is idempotent (`mask_pii(mask_pii(x)) == mask_pii(x)` for every x): a masked number
keeps its length and is read the same way again, and the passes repeat until nothing changes
(each pass that changes the text turns at least one character into `*` or drops one, so this
ends; in practice after the second pass).

`bot.cleantext.clean_text` is the other half: what arrives from outside loses its C0 control
characters (but tab, line feed and carriage return) and lone surrogates become U+FFFD, so
every database stores the same thing (PostgreSQL refuses NUL in text and unpaired surrogates).
"""

from __future__ import annotations

import re
from typing import Any

from bot.cleantext import clean_text

_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９ＸｘＢＴｂｔ", "0123456789XxBTbt")
# What may stand between the digits of one number, in any number and mix.
_SEPARATORS = r"\s\-‐‑‒–—―.．/／\\_＿·・,"
# A number as written: groups of digits (or the `*` of an earlier masking) joined by separators.
_RUN = re.compile(rf"[0-9*]+(?:[{_SEPARATORS}]+[0-9*]+)*")
_GROUP = re.compile(r"[0-9*]+")
# Order numbers are what the bot and agents need to see; nothing around them joins them.
_ORDER_NO = re.compile(r"BT[0-9]{16}(?![0-9*])", re.IGNORECASE)
_LONGEST = 19  # a card number's longest; no single number masked here is longer

_MOBILE = re.compile(r"1[3-9]")
_MOBILE_86 = re.compile(r"861[3-9]")

# A password typed into the chat. Chinese words need no connector ("密码abc123"); English
# ones need one ("password: x", "pwd=x", "password is x"), so "password reset" stays. After
# a bare word or "is", the token must hold a digit or a symbol ("my password is wrong"), and
# not be a mobile number, order number or email address ("重置密码13912345678").
_PASSWORD = re.compile(
    r"(?:(?P<zh>密码|口令)"
    r"|(?<![A-Za-z])(?P<en>password|passwd|passcode|pwd)(?![A-Za-z]))"
    r"(?P<connector>\s*(?:是|为|is(?![A-Za-z]))?\s*(?P<colon>[:：=])?\s*)"
    r"(?P<token>[!-~]+)",
    re.IGNORECASE,
)
_NOT_A_PASSWORD = re.compile(r"(?:\+?86)?1[3-9][0-9*]{9}|BT[0-9]{16}|\S+@\S+\.\w+", re.IGNORECASE)
PASSWORD_MASK = "******"

# Whatever masking could change starts with one of these; most texts hold none.
_MASKABLE = re.compile(r"[0-9*]|密码|口令|pass|pwd", re.IGNORECASE)
_FULL_WIDTH = re.compile("[０-９ＸｘＢＴｂｔ]")


def _password_token(match: re.Match[str]) -> bool:
    """Whether the token after a password word is a password (see `_PASSWORD`)."""
    token = match.group("token")
    if not token.strip("*"):
        return False  # masked already
    explicit = (
        match.group("colon")
        or "是" in match.group("connector")
        or "为" in (match.group("connector"))
    )
    if explicit:
        return True
    if match.group("en") and not re.search(r"is\s*$", match.group("connector"), re.IGNORECASE):
        return False  # "password reset": an English word needs a connector
    return not token.isalpha() and not _NOT_A_PASSWORD.fullmatch(token)


def contains_password(text: str) -> bool:
    """Whether `text` holds a typed password (the user is then told not to send one)."""
    text = clean_text(text).translate(_FULL_WIDTH_DIGITS)
    return any(_password_token(m) for m in _PASSWORD.finditer(text))


def _mask_password(match: re.Match[str]) -> str:
    if not _password_token(match):
        return match.group(0)
    return match.group(0)[: match.start("token") - match.start()] + PASSWORD_MASK


def _masked(number: str, x_follows: bool) -> str | None:
    """`number` (digits and `*`, separators dropped) masked, or None when it is no personal
    number. Decided by its length and the characters that masking keeps, so a masked number
    is read as the same kind again."""
    length = len(number)
    if length == 13 and _MOBILE_86.match(number):
        return number[:5] + "****" + number[-4:]
    if length == 18:
        return number[:3] + "*" * 11 + number[-4:]
    if length == 17 and x_follows:  # the X of the ID number follows
        return number[:3] + "*" * 11 + number[-3:]
    if length == 11 and _MOBILE.match(number):
        return number[:3] + "****" + number[-4:]
    if 13 <= length <= _LONGEST:
        return "*" * (length - 4) + number[-4:]
    return None


def _mask_run(run: str, x_follows: bool) -> str:
    """One written number (or several side by side): from left to right, the longest stretch
    of groups that is a personal number is masked; a group too long for any number keeps its
    last 4 characters."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    if sum(end - start for start, end in groups) < 11:
        return run  # shorter than any number masked here (amounts, dates, codes)
    out: list[str] = []
    cursor = i = 0
    while i < len(groups):
        start, end = groups[i]
        if end - start > _LONGEST:
            out += [run[cursor:start], "*" * (end - start - 4), run[end - 4 : end]]
            cursor, i = end, i + 1
            continue
        best: tuple[int, str] | None = None
        digits = ""
        for j in range(i, len(groups)):
            digits += run[groups[j][0] : groups[j][1]]
            if len(digits) > _LONGEST:
                break
            masked = _masked(digits, x_follows and j == len(groups) - 1)
            if masked is not None:
                best = (j, masked)
        if best is None:
            i += 1
            continue
        j, masked = best
        out += [run[cursor:start], masked]
        cursor, i = groups[j][1], j + 1
    out.append(run[cursor:])
    return "".join(out)


def _mask_numbers(piece: str) -> str:
    def replace(match: re.Match[str]) -> str:
        after = piece[match.end() : match.end() + 1]
        return _mask_run(match.group(0), after in ("X", "x"))

    return _RUN.sub(replace, piece)


def _mask_once(text: str) -> str:
    text = _PASSWORD.sub(_mask_password, text)
    out: list[str] = []
    last = 0
    for order in _ORDER_NO.finditer(text):
        out += [_mask_numbers(text[last : order.start()]), order.group(0)]
        last = order.end()
    out.append(_mask_numbers(text[last:]))
    return "".join(out)


def mask_pii(text: str) -> str:
    """Text safe to store and show: no full card, ID or phone number, no typed password."""
    text = clean_text(text)
    if _FULL_WIDTH.search(text):
        text = text.translate(_FULL_WIDTH_DIGITS)
    if not _MASKABLE.search(text):
        return text
    while (masked := _mask_once(text)) != text:
        text = masked
    return text


def mask_data(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, strings, numbers) with every string masked."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {key: mask_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(item) for item in value]
    return value
