"""Text from outside, made safe to hand to the engine and the database.

A JSON string may carry an escaped half of a UTF-16 pair ("\\ud800") with no other half: Python
holds it as a lone surrogate, which no UTF-8 encoder takes (PostgreSQL's driver fails the
whole transaction on it; SQLite stores it, and the page that shows it back fails instead).
Every channel adapter passes a user's text through `clean_text` before it reaches the engine.
"""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (the replacement character)."""
    return _LONE_SURROGATE.sub(REPLACEMENT, text)
