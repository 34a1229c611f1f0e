"""Recording what is said to a chat, and queueing it for channels that deliver later.

Every outgoing line is a `Message` (the transcript, personal numbers masked). For channels whose
sending happens after the transaction (Telegram; web chat pushes), an `OutboxItem` is written in
the same transaction, so a crash between deciding and sending loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.privacy import mask_pii
from bot.storage.models import Conversation, Message, OutboxItem
from bot.types import Direction, Reply, SenderKind


def reply_payload(reply: Reply) -> dict[str, Any]:
    """The JSON a channel needs to show a reply: text, buttons, image as a data URI."""
    return reply.to_json()


async def record_outgoing(
    session: AsyncSession,
    conversation: Conversation,
    replies: Iterable[Reply],
    *,
    sender: SenderKind = SenderKind.BOT,
    queue: bool,
) -> list[Message]:
    """Store replies in the transcript and, when `queue`, in the outbox of the chat's channel."""
    messages = []
    offset = 0
    for reply in replies:
        payload = {**reply_payload(reply), "sender": sender.value}
        # Each button's place among all buttons offered in this turn: a channel whose button
        # data is limited (Telegram: 64 bytes) sends "#<index>" instead of a long action.
        for button in payload["buttons"]:
            button["index"] = offset
            offset += 1
        message = Message(
            conversation_id=conversation.id,
            direction=Direction.OUT,
            sender_kind=sender,
            text=mask_pii(reply.text),
            payload={"buttons": payload["buttons"], "image": payload["image"]},
        )
        session.add(message)
        messages.append(message)
        if queue:
            session.add(
                OutboxItem(
                    conversation_id=conversation.id,
                    message=message,
                    channel=conversation.channel,
                    chat_id=conversation.chat_id,
                    payload=payload,
                )
            )
    return messages
