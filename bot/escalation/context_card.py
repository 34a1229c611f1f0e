"""The context card's findings in the console's language: one labelled line per finding, codes
in the knowledge's words, times in the console's zone, and one sentence on top that says what
the bot found and what it already did.

The flows store findings under their own keys (`order_no`, `failure_code`, `locked_until`,
`resynced`, ...); the words for those keys and for the summary are the console's strings
(`bot/templates/<lang>/console.j2`, prefixes `f_` and `sum_`); the words for failure codes and
withdrawal failures are the knowledge's (`knowledge/failure_codes.yaml`), the same the bot
tells the user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.faq.knowledge import Knowledge
from bot.incidents.store import OpenIncident
from bot.platform.models import FailureCode
from bot.privacy import mask_pii
from bot.types import IncidentKind, Language

Strings = Mapping[str, str]
Clock = Callable[[datetime | None], str]


def failure_words(knowledge: Knowledge, code: str | None, language: Language) -> str | None:
    """A payment failure code in the merchant's words; the code itself when the knowledge has
    none (a code added by the channel before the knowledge caught up)."""
    if not code:
        return None
    try:
        advice = knowledge.failure_codes.get(FailureCode(code))
    except ValueError:
        advice = None
    return _sentence(advice.cause_for(language, merchant=True)) if advice else code


def findings_card(
    findings: Mapping[str, Any],
    *,
    knowledge: Knowledge,
    language: Language,
    t: Strings,
    time: Clock,
) -> dict[str, Any]:
    """`summary` (one sentence, possibly empty) and `findings` as [label, value] pairs."""
    lines = [
        [
            t.get(f"f_{key}", str(key)),
            mask_pii(_value(str(key), value, findings, knowledge, language, t, time)),
        ]
        for key, value in findings.items()
    ]
    return {
        "summary": mask_pii(_summary(findings, knowledge, language, t, time)),
        "findings": lines,
    }


def _value(
    key: str,
    value: Any,
    findings: Mapping[str, Any],
    knowledge: Knowledge,
    language: Language,
    t: Strings,
    time: Clock,
) -> str:
    if key == "failure_code":
        return failure_words(knowledge, value, language) or t["f_none"]
    if key == "failure_reason":
        return _withdrawal_words(knowledge, value, language) or t["f_none"]
    if key == "locked_until":
        return _moment(value, time) or t["f_not_locked"]
    if key in ("resynced", "still_different"):
        return _changes(value, t) or t["f_none"]
    if key == "status":
        return _label(t, "w_" if "withdrawal" in findings else "o_", value)
    if key == "account_status":
        return _label(t, "acc_", value)
    if key == "merchant_status":
        return _label(t, "m_", value)
    if key == "amount" and value is not None:
        return f"¥{value}"
    if value is None:
        return t["f_none"]
    if isinstance(value, bool):
        return t["f_yes"] if value else t["f_no"]
    if isinstance(value, list | dict):
        return t["f_items"].replace("{n}", str(len(value)))
    return str(value)


def _summary(
    findings: Mapping[str, Any], knowledge: Knowledge, language: Language, t: Strings, time: Clock
) -> str:
    """What the bot found, then what it did, as clauses joined into one sentence."""
    clauses: list[str] = []
    order_no, status = findings.get("order_no"), findings.get("status")
    cause = failure_words(knowledge, findings.get("failure_code"), language)
    if order_no and cause and status != "paid":
        clauses.append(_fill(t["sum_failed"], order=order_no, cause=cause))
    elif order_no and status and "withdrawal" not in findings:
        clauses.append(_fill(t["sum_order"], order=order_no, status=_label(t, "o_", status)))
    withdrawal = findings.get("withdrawal")
    if withdrawal:
        reason = _withdrawal_words(knowledge, findings.get("failure_reason"), language)
        if reason:
            clauses.append(_fill(t["sum_withdrawal_failed"], id=withdrawal, reason=reason))
        else:
            shown = _label(t, "w_", status)
            clauses.append(_fill(t["sum_withdrawal"], id=withdrawal, status=shown))
        if findings.get("overdue"):
            clauses.append(t["sum_overdue"])
    login = findings.get("login")
    if login:
        until = _moment(findings.get("locked_until"), time)
        if findings.get("account_status") == "disabled":
            clauses.append(_fill(t["sum_disabled"], login=login))
        elif until:
            clauses.append(_fill(t["sum_locked"], login=login, until=until))
        else:
            attempts = str(findings.get("failed_attempts") or 0)
            clauses.append(_fill(t["sum_login"], login=login, n=attempts))
    if findings.get("merchant_status") and findings["merchant_status"] != "active":
        clauses.append(
            _fill(t["sum_merchant"], status=_label(t, "m_", findings["merchant_status"]))
        )
    for key, template in (("resynced", "sum_resynced"), ("still_different", "sum_still")):
        if findings.get(key):
            clauses.append(_fill(t[template], n=str(len(findings[key]))))
    if findings.get("payment_link"):
        clauses.append(_fill(t["sum_link"], amount=str(findings.get("amount", ""))))
    if findings.get("password_reset_for"):
        clauses.append(_fill(t["sum_reset"], login=findings["password_reset_for"]))
    return t["sum_join"].join(clauses)


def incident_lines(
    incidents: Sequence[OpenIncident],
    *,
    knowledge: Knowledge,
    language: Language,
    t: Strings,
    time: Clock,
) -> list[str]:
    """One line per open incident, in the console's language: what fails, since when, and
    that it is not the merchant's fault (or the supervisor's own words)."""
    lines = []
    for incident in incidents:
        since = time(incident.opened_at)
        if incident.kind is IncidentKind.CHANNEL:
            channel = t.get(f"ch_{incident.key}", str(incident.key))
            lines.append(_fill(t["inc_channel"], channel=channel, since=since))
        elif incident.kind is IncidentKind.FAILURE_CODE:
            cause = failure_words(knowledge, incident.key, language) or str(incident.key)
            lines.append(_fill(t["inc_code"], cause=cause, since=since))
        else:
            message = incident.message(language) or ""
            lines.append(_fill(t["inc_manual"], since=since, message=message))
    return lines


def _withdrawal_words(knowledge: Knowledge, reason: Any, language: Language) -> str | None:
    if not reason:
        return None
    words = knowledge.withdrawal_failure(str(reason))
    return _sentence(words.cause[language]) if words else str(reason)


def _changes(value: Any, t: Strings) -> str:
    """Re-synced orders as "BT… 待支付 → 已支付", joined."""
    if not isinstance(value, list):
        return str(value) if value else ""
    shown = []
    for change in value:
        if not isinstance(change, dict):
            continue
        before, after = _label(t, "o_", change.get("before")), _label(t, "o_", change.get("after"))
        shown.append(f"{change.get('order_no', '')} {before} → {after}")
    return t["f_list_join"].join(shown)


def _moment(value: Any, time: Clock) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        return time(datetime.fromisoformat(value))
    except ValueError:
        return value


def _label(t: Strings, prefix: str, value: Any) -> str:
    return t.get(f"{prefix}{value}", str(value)) if value is not None else t["f_none"]


def _sentence(text: str) -> str:
    """A knowledge sentence as a clause: without its closing full stop."""
    return text.rstrip("。.").strip()


def _fill(template: str, **values: Any) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template
