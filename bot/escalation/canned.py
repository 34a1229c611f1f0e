"""Canned replies for agents: `knowledge/canned.yaml`, each reply in Chinese and English.

A fact a reply states (how long a reset link lasts) is a `{placeholder}` filled from the
constants the bot keeps, so the reply cannot drift from what the bot does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.platform.sql import RESET_TOKEN_LIFETIME

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CannedReply:
    id: str
    zh: str
    en: str

    def text(self, language: str) -> str:
        return self.en if language == "en" else self.zh


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def canned_facts() -> dict[str, str]:
    """The facts canned replies may name as `{placeholder}`, from the constants the bot keeps."""
    return {"reset_minutes": str(int(RESET_TOKEN_LIFETIME.total_seconds()) // 60)}


def _filled(text: str, facts: Mapping[str, str], where: str) -> str:
    """`{name}` replaced by its fact, nothing else: no attribute or index lookups as in
    `str.format`, and an unknown name stops the start instead of reaching an agent."""

    def fact(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in facts:
            raise ValueError(f"{where}: unknown placeholder {{{name}}}")
        return facts[name]

    return _PLACEHOLDER.sub(fact, text)


def load_canned(path: Path, facts: Mapping[str, str] | None = None) -> list[CannedReply]:
    """`knowledge/canned.yaml`: `replies:` with an `id` and the `zh` and `en` text of each.

    A fact a reply states (how long a reset link lasts) is a `{placeholder}` filled from
    `canned_facts()`, so the reply cannot drift from what the bot does. A knowledge folder
    without the file gives a console without canned replies (and a warning); a file that is
    there but malformed stops the start, like the other knowledge files."""
    facts = canned_facts() if facts is None else facts
    if not path.exists():
        log.warning("%s is missing: the console offers no canned replies", path)
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = data.get("replies") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a `replies:` list")
    replies: list[CannedReply] = []
    for number, item in enumerate(items, 1):
        fields = item if isinstance(item, dict) else {}
        values = [fields.get(key) for key in ("id", "zh", "en")]
        if not all(isinstance(value, str) and value.strip() for value in values):
            raise ValueError(f"{path}: reply {number} needs non-empty id, zh and en")
        reply_id, zh, en = (str(value).strip() for value in values)
        where = f"{path}: reply {reply_id}"
        replies.append(CannedReply(reply_id, _filled(zh, facts, where), _filled(en, facts, where)))
    ids = [reply.id for reply in replies]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: reply ids must be unique")
    return replies
