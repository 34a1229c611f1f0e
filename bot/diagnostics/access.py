"""Who may see what: a merchant sees its own records; a customer proves who they are first.

"No such order" and "wrong verification" produce the same reply, so the reply never tells a
stranger that an order number exists.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from bot.context import Context
from bot.platform.models import Order

VERIFY_LIMIT = 5
VERIFY_WINDOW = timedelta(minutes=15)
_LAST4 = re.compile(r"(?<!\d)(\d{4})(?!\d)")


def verify_key(ctx: Context) -> str:
    return f"verify:{ctx.conversation.id}"


async def verification_locked(ctx: Context) -> bool:
    return await ctx.recent(verify_key(ctx), VERIFY_WINDOW) >= VERIFY_LIMIT


async def merchant_order(ctx: Context, order_no: str) -> Order | None:
    """The bound merchant's own order, or None: another merchant's order does not exist here."""
    if not ctx.identity.is_merchant:
        return None
    order = await ctx.gateway.get_order(order_no)
    if order is None or not chat_may_see(order, ctx.identity.merchant_id, ()):
        return None
    return order


def proof_matches(order: Order, text: str, amount: str | None) -> bool:
    """The last 4 digits of the payer's phone, or the exact amount, as the customer typed it."""
    if amount is not None:
        try:
            if Decimal(amount) == order.amount:
                return True
        except InvalidOperation:
            return False
    cleaned = text.replace(" ", "")
    if order.payer_phone:
        match = _LAST4.search(cleaned)
        if match and match.group(1) == order.payer_phone[-4:]:
            return True
    try:
        return Decimal(cleaned.removeprefix("¥").removesuffix("元")) == order.amount
    except InvalidOperation:
        return False


def looks_like_proof(text: str, amount: str | None) -> bool:
    cleaned = text.replace(" ", "")
    return amount is not None or _LAST4.search(cleaned) is not None or _is_number(cleaned)


def _is_number(text: str) -> bool:
    try:
        Decimal(text.removeprefix("¥").removesuffix("元"))
    except InvalidOperation:
        return False
    return True


def chat_may_see(order: Order, merchant_id: str | None, verified: Collection[str]) -> bool:
    """Whether a chat is entitled to `order`: it is the bound merchant's own, or the customer
    proved it in this chat (`verified`: the chat's `OrderWatch` rows, which the order flows
    write only after the proof matched). What a user merely typed proves nothing."""
    if merchant_id is not None and order.merchant_id == merchant_id:
        return True
    return order.order_no in verified
