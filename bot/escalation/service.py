"""The handoff service: everything that moves a conversation between the bot and people.

One class, `HandoffService`, made of one part per concept, each in its own module:
- `user_side`: the user asks for a person, goes back, leaves a ticket, rates (inside the
  engine's transaction for the user's message);
- `agent_actions`: what an agent does in the console (each action its own transaction,
  checked, audited, announced on the event bus);
- `agent_tools`: the platform calls an agent makes for the chat it holds;
- `assignment`: the queue, positions and who gets which chat;
- `core`: the dependencies and steps all of them share.
Callers see one object (the engine holds it as `handoffs`, the console calls it), so each
part is a base class of it rather than a separate object to wire.
"""

from __future__ import annotations

from bot.escalation.agent_actions import AgentActions, AgentPresence, ConversationDetail
from bot.escalation.agent_tools import AgentTools
from bot.escalation.assignment import QueueEntry
from bot.escalation.core import ONLINE_WINDOW, ORDER_NO, HandoffError
from bot.escalation.user_side import UserSide, priority_of

__all__ = [
    "ONLINE_WINDOW",
    "ORDER_NO",
    "AgentPresence",
    "ConversationDetail",
    "HandoffError",
    "HandoffService",
    "QueueEntry",
    "priority_of",
]


class HandoffService(UserSide, AgentActions, AgentTools):
    """The handoff service; see the module's docstring for its parts."""
