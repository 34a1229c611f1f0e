"""The handoff service's answers as the JSON the console's pages and script read.

Everything shown is masked again on the way out (rows kept from before a rule of the mask was
added), and times are the console's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.escalation.agent_sessions import Viewer
from bot.escalation.context_card import failure_words, findings_card, incident_lines
from bot.escalation.service import AgentPresence, ConversationDetail, QueueEntry
from bot.faq.knowledge import Knowledge
from bot.privacy import mask_pii
from bot.storage.models import Agent, Message
from bot.types import Direction, HandoffStatus, Language

_PNG = re.compile(r"^data:image/png;base64,[A-Za-z0-9+/]+={0,2}$")
_SECTIONS = {HandoffStatus.QUEUED: "waiting", HandoffStatus.TICKET: "tickets"}


def local_time(zone: ZoneInfo, moment: datetime | None) -> str:
    """A moment as the console shows it: month, day, hours and minutes in `zone`."""
    return moment.astimezone(zone).strftime("%m-%d %H:%M") if moment else ""


class Shaper:
    def __init__(
        self,
        knowledge: Callable[[], Knowledge],
        strings: Mapping[str, Mapping[str, str]],
        zone: ZoneInfo,
    ) -> None:
        self._published = knowledge
        self._strings = strings
        self._zone = zone

    @property
    def _knowledge(self) -> Knowledge:
        """The published knowledge as this process answers from it now."""
        return self._published()

    def time(self, moment: datetime | None) -> str:
        return local_time(self._zone, moment)

    def queue(
        self,
        viewer: Viewer,
        entries: list[QueueEntry],
        agent: Agent | None,
        capacity: int,
        agents: list[AgentPresence],
    ) -> dict[str, Any]:
        """The service's queue, split the way the page shows it."""
        names = {a.id: a.name for a in agents}
        sections: dict[str, list[dict[str, Any]]] = {
            "waiting": [],
            "mine": [],
            "others": [],
            "tickets": [],
        }
        for entry in entries:
            item = asdict(entry)
            item["agent"] = names.get(entry.agent_id) if entry.agent_id is not None else None
            item["preview"] = mask_pii(entry.preview)  # rows kept from before the mask's rules
            sections[_section(entry, viewer.agent_id)].append(item)
        return {"online": bool(agent and agent.online), "capacity": capacity, **sections}

    def chat(
        self,
        viewer: Viewer,
        detail: ConversationDetail,
        language: Language,
        agents: list[AgentPresence],
    ) -> dict[str, Any]:
        """One conversation for the page, its context card in the console's `language`."""
        conversation, handoff = detail.conversation, detail.handoff
        names = {a.id: a.name for a in agents}
        status = handoff.status if handoff else None
        mine = handoff is not None and handoff.agent_id == viewer.agent_id
        return {
            "conversation": {
                "id": conversation.id,
                "channel": conversation.channel,
                "language": conversation.language,
                "state": conversation.state,
            },
            "handoff": None
            if handoff is None
            else {
                "id": handoff.id,
                "status": handoff.status,
                "reason": handoff.reason,
                "priority": handoff.priority,
                "agent": names.get(handoff.agent_id) if handoff.agent_id else None,
                "since": self.time(handoff.created_at),
                "rating": handoff.rating,
                "ticket_text": mask_pii(handoff.ticket_text) if handoff.ticket_text else None,
            },
            "can": {
                "claim": status == HandoffStatus.QUEUED,
                "act": status == HandoffStatus.ASSIGNED and (mine or viewer.is_supervisor),
                "answer": status == HandoffStatus.TICKET,
            },
            "messages": self._transcript(detail.messages),
            "notes": [
                {"agent": name, "text": mask_pii(note.text), "time": self.time(note.created_at)}
                for name, note in detail.notes
            ],
            "context": self._context(detail, language),
        }

    def _transcript(self, messages: list[Message]) -> list[dict[str, Any]]:
        """The messages for the page; a button press shows the label the user saw, taken from
        the buttons the last message before it offered."""
        offered: dict[str, str] = {}
        shown = []
        for message in messages:
            line = self._message(message)
            if message.direction == Direction.IN:
                line["pressed"] = offered.get(message.action or "")
            elif line["buttons"]:
                offered = {
                    str(b.get("action", "")): mask_pii(str(b.get("label", "")))
                    for b in (message.payload or {}).get("buttons") or []
                    if isinstance(b, dict)
                }
            shown.append(line)
        return shown

    def _message(self, message: Message) -> dict[str, Any]:
        payload = message.payload or {}
        image = payload.get("image")
        buttons = payload.get("buttons") or []
        return {
            "pressed": None,
            "id": message.id,
            "sender": "user" if message.direction == Direction.IN else message.sender_kind,
            # Masked when shown as well: rows stored before a rule of the mask was added.
            "text": mask_pii(message.text),
            "action": mask_pii(message.action) if message.action else message.action,
            "buttons": [mask_pii(str(b.get("label", ""))) for b in buttons if isinstance(b, dict)],
            "image": image if isinstance(image, str) and _PNG.match(image) else None,
            "time": self.time(message.created_at),
        }

    def _context(self, detail: ConversationDetail, language: Language) -> dict[str, Any]:
        """The service's context (merchant, findings, orders) as plain JSON for the page, in
        the console's language."""
        context = detail.context
        merchant = context.get("merchant")
        identity = detail.identity
        orders = []
        for order_no, order in context.get("orders", []):
            if order is None:
                orders.append({"order_no": order_no, "visible": False})
                continue
            failure = order.last_failure
            orders.append(
                {
                    "order_no": order_no,
                    "visible": True,
                    "amount": str(order.amount),
                    "currency": order.currency,
                    "method": str(order.method),
                    "status": str(order.status),
                    "channel_status": str(order.channel.status) if order.channel else None,
                    "in_sync": order.in_sync,
                    "failure": failure_words(self._knowledge, failure, language)
                    if failure
                    else None,
                    "created": self.time(order.created_at),
                }
            )
        card = findings_card(
            context.get("findings") or {},
            knowledge=self._knowledge,
            language=language,
            t=self._strings[str(language)],
            time=self.time,
        )
        return {
            "kind": identity.kind if identity is not None else "customer",
            "merchant_id": identity.merchant_id if identity is not None else None,
            "merchant": None
            if merchant is None
            else {"id": merchant.id, "name": merchant.name, "status": str(merchant.status)},
            **card,
            "incidents": incident_lines(
                context.get("incidents") or (),
                knowledge=self._knowledge,
                language=language,
                t=self._strings[str(language)],
                time=self.time,
            ),
            "orders": orders,
        }


def _section(entry: QueueEntry, agent_id: int) -> str:
    if entry.status in _SECTIONS:
        return _SECTIONS[entry.status]
    return "mine" if entry.agent_id == agent_id else "others"
