"""What a turn did that is checked afterwards, read from the facts its flow established.

A flow notes its findings for the agent who may take the chat (`Outcome.findings`); the same
facts say what the bot did: a link made (`payment_link`: its id), a reset started
(`password_reset_for`: the login). Each becomes one `Expectation`, which the turn writes as an
`outcome_checks` row (`OutcomeExpected` in `bot/dialogue/events.py`, written by
`bot/turn_writer.py`); the checker (`bot/outcomes/checker.py`) settles it by its deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.types import OutcomeKind

# How long the evidence may take: a link paid within 24 hours; a login after a reset within the
# same (the reset's own token lasts less, but a merchant may log in the next morning).
WINDOWS: dict[OutcomeKind, timedelta] = {
    OutcomeKind.PAYMENT_LINK: timedelta(hours=24),
    OutcomeKind.PASSWORD_RESET: timedelta(hours=24),
}

# The finding that names what the bot did, and the flow it did it in (the report's topic).
_FINDINGS: tuple[tuple[str, OutcomeKind, str], ...] = (
    ("payment_link", OutcomeKind.PAYMENT_LINK, "payment_link"),
    ("password_reset_for", OutcomeKind.PASSWORD_RESET, "password_reset"),
)
SUBJECT_MAX = 64


@dataclass(frozen=True, slots=True)
class Expectation:
    kind: OutcomeKind
    topic: str
    subject: str


def expected_from(findings: Mapping[str, Any]) -> list[Expectation]:
    """The checks a turn's findings call for (none for a turn that did nothing checkable)."""
    found: list[Expectation] = []
    for key, kind, topic in _FINDINGS:
        value = findings.get(key)
        if isinstance(value, str) and value and len(value) <= SUBJECT_MAX:
            found.append(Expectation(kind, topic, value))
    return found
