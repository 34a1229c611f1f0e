"""Text from outside, made fit to hand to the engine and to store on any database.

Two kinds of character break storage or pages: C0 control characters (PostgreSQL refuses a NUL
in text, SQLite keeps it, so the two tiers would store different things), and a lone half of a
UTF-16 pair, which a JSON string can carry escaped ("\\ud800") and no UTF-8 encoder takes
(PostgreSQL's driver fails the whole transaction on it; SQLite stores it, and the page that shows
it back fails instead). Every channel adapter and the engine pass text through `clean_text`.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_UNFIT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(text: str) -> str:
    """`text` without C0 controls but \\t \\n \\r, and with every lone surrogate replaced by
    U+FFFD (the replacement character)."""
    if not _UNFIT.search(text):
        return text
    text = _CONTROL.sub("", text)
    return _SURROGATE.sub(REPLACEMENT, text)


def replace_surrogates(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD and nothing else changed (its length
    stays, so a length limit checked afterwards reads what the client sent)."""
    return _SURROGATE.sub(REPLACEMENT, text)
