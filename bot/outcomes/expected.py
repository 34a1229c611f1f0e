"""What a turn did that is checked afterwards, read from the facts its flow established.

A flow notes its findings for the agent who may take the chat (`Outcome.findings`); the same
facts say what the bot did: a link made (`payment_link`: its id), a reset started
(`password_reset_for`: the login), orders re-synced (`resynced`, `still_different`: their
numbers), a failed payment explained (`failure_code` with `order_no`). An FAQ answer is named
by the handler (`Outcome.answered`). Each becomes one `Expectation`, which the turn writes as
an `outcome_checks` row (`OutcomeExpected` in `bot/dialogue/events.py`, written by
`bot/turn_writer.py`); the checker (`bot/outcomes/checker.py`) settles it by its deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.context import Findings
from bot.types import Label, OutcomeKind

# How long the evidence may take. A link paid within 24 hours; a login after a reset within the
# same (the token lasts less, but a merchant may log in the next morning); a re-synced order's
# two statuses agreeing within the hour (the channel confirms within minutes); a successful
# payment on a new order within 24 hours of the failure explained; and an FAQ answer holds if
# the chat does not come back on the same topic within 72 hours.
WINDOWS: dict[OutcomeKind, timedelta] = {
    OutcomeKind.PAYMENT_LINK: timedelta(hours=24),
    OutcomeKind.PASSWORD_RESET: timedelta(hours=24),
    OutcomeKind.RESYNC: timedelta(hours=1),
    OutcomeKind.PAYMENT_FAILURE: timedelta(hours=24),
    OutcomeKind.FAQ: timedelta(hours=72),
}
SUBJECT_MAX = 64


@dataclass(frozen=True, slots=True)
class Expectation:
    kind: OutcomeKind
    # The flow, or the FAQ entry, for the rates per flow and entry.
    topic: str
    # What the platform is asked about: a link id, a login, an order number, the entry.
    subject: str


def _usable(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= SUBJECT_MAX else None


def expected_from(findings: Findings, answered: Label | None = None) -> list[Expectation]:
    """The checks a turn calls for (none for a turn that did nothing checkable)."""
    found: list[Expectation] = []
    if link := _usable(findings.get("payment_link")):
        found.append(Expectation(OutcomeKind.PAYMENT_LINK, "payment_link", link))
    if login := _usable(findings.get("password_reset_for")):
        found.append(Expectation(OutcomeKind.PASSWORD_RESET, "password_reset", login))
    for line in (*findings.get("resynced", ()), *findings.get("still_different", ())):
        if order_no := _usable(line["order_no"]):
            found.append(Expectation(OutcomeKind.RESYNC, "data_sync", order_no))
    if findings.get("failure_code") and (order_no := _usable(findings.get("order_no"))):
        found.append(Expectation(OutcomeKind.PAYMENT_FAILURE, "payment_failure", order_no))
    if answered is not None:
        found.append(Expectation(OutcomeKind.FAQ, answered.value, answered.value))
    return found
