"""Who may see what: a merchant sees its own records; a customer proves who they are first.

"No such order" and "wrong verification" produce the same reply, so the reply never tells a
stranger that an order number exists. Wrong proofs are counted per order number (existing or
not), per client (the web chat's peer address, the Telegram user) and per chat, so a guesser
who opens a new session for every guess still runs into the order's own limit. While an order
is locked every proof for it fails, the right one included, with the same reply as a wrong one.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from bot.context import Context
from bot.nlu.entities import extract_entities
from bot.nlu.normalize import fold
from bot.nlu.values import read_amount
from bot.platform.models import Order

# Kept for the templates' wording ("15 minutes") and for callers that read the chat's limit.
VERIFY_LIMIT = 5
VERIFY_WINDOW = timedelta(minutes=15)
_DAY = timedelta(hours=24)
_MAX_CLIENT = 80


class Scope(StrEnum):
    CHAT = "chat"
    CLIENT = "client"
    ORDER = "order"


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` wrong proofs within `window`, counted per `scope`."""

    scope: Scope
    count: int
    window: timedelta


# See docs/SECURITY.md ("Customer order proof") for the arithmetic behind these numbers.
LIMITS: tuple[Limit, ...] = (
    Limit(Scope.CHAT, VERIFY_LIMIT, VERIFY_WINDOW),
    Limit(Scope.CLIENT, 20, VERIFY_WINDOW),
    Limit(Scope.CLIENT, 100, _DAY),
    Limit(Scope.ORDER, VERIFY_LIMIT, VERIFY_WINDOW),
    Limit(Scope.ORDER, 20, _DAY),
)

# A proof is one thing: 4 digits standing alone are phone digits (the whole phone number says
# at least as much); an amount is written as one ("15.50", "15.5元", "¥15.5"). A message holding
# two (or none) proves nothing.
_FOUR_DIGITS = re.compile(r"(?<![\d.,])\d{4}(?![\d.,])")
_DECIMAL = re.compile(r"(?<![\d.,])\d{1,9}\.\d{1,2}(?![\d.,])")


class ProofKind(StrEnum):
    PHONE = "phone"
    AMOUNT = "amount"


@dataclass(frozen=True, slots=True)
class Proof:
    kind: ProofKind
    value: str

    def matches(self, order: Order) -> bool:
        if self.kind is ProofKind.PHONE:
            if order.payer_phone is None:
                return False
            if len(self.value) == 4:
                return order.payer_phone[-4:] == self.value
            return _national(order.payer_phone) == self.value
        return Decimal(self.value) == order.amount


def _national(phone: str) -> str:
    """A phone number's digits without the country code ("+86 139…" is "139…")."""
    digits = re.sub(r"\D", "", phone)
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


def read_proofs(text: str) -> list[Proof]:
    """Every proof the message offers, in reading order (a message must offer exactly one)."""
    folded = fold(text)
    spans: list[tuple[int, int, Proof]] = []

    def add(start: int, end: int, proof: Proof) -> None:
        if not any(start < s_end and s_start < end for s_start, s_end, _ in spans):
            spans.append((start, end, proof))

    for entity in extract_entities(folded):
        if entity.kind == "amount":
            add(entity.start, entity.end, Proof(ProofKind.AMOUNT, entity.value))
        elif entity.kind == "phone":
            # The payer's whole phone number proves at least what its last 4 digits do.
            add(entity.start, entity.end, Proof(ProofKind.PHONE, _national(entity.value)))
        elif entity.kind == "order_no":
            # Digits inside an order number are no proof of their own.
            spans.append((entity.start, entity.end, Proof(ProofKind.PHONE, "")))
    for match in _DECIMAL.finditer(folded):
        amount = str(Decimal(match.group(0)).quantize(Decimal("0.01")))
        add(match.start(), match.end(), Proof(ProofKind.AMOUNT, amount))
    for match in _FOUR_DIGITS.finditer(folded):
        add(match.start(), match.end(), Proof(ProofKind.PHONE, match.group(0)))
    proofs = [proof for _, _, proof in sorted(spans, key=lambda s: s[0]) if proof.value]
    if not spans and "第" not in folded:
        # "我付的53", "五十三块", "paid 53": an amount in the forms people type is an amount
        # proof too (the same guess as "53.00"); not a position ("第2个").
        typed = read_amount(folded)
        if typed is not None:
            proofs.append(Proof(ProofKind.AMOUNT, str(typed)))
    return proofs


def _key(ctx: Context, scope: Scope, order_no: str) -> str | None:
    if scope is Scope.CHAT:
        return f"verify:{ctx.conversation.id}"
    if scope is Scope.ORDER:
        return f"verify:order:{order_no.strip().upper()}"
    client = ctx.message.client
    if not client:
        return None
    return f"verify:client:{ctx.message.channel}:{client[:_MAX_CLIENT]}"


def wrong_proof_keys(ctx: Context, order_no: str) -> list[str]:
    """The rate events one wrong proof for `order_no` writes: one per scope."""
    keys = (_key(ctx, scope, order_no) for scope in Scope)
    return [key for key in keys if key is not None]


async def _over(ctx: Context, scopes: set[Scope], order_no: str) -> Limit | None:
    for limit in LIMITS:
        if limit.scope not in scopes:
            continue
        key = _key(ctx, limit.scope, order_no)
        if key is not None and await ctx.recent(key, limit.window) >= limit.count:
            return limit
    return None


async def verification_locked(ctx: Context) -> Limit | None:
    """The limit this chat or this client is over, if any (it is told to wait that long)."""
    return await _over(ctx, {Scope.CHAT, Scope.CLIENT}, "")


async def order_locked(ctx: Context, order_no: str) -> bool:
    """Too many wrong proofs for this order number, from anywhere; it reads as a wrong proof."""
    return await _over(ctx, {Scope.ORDER}, order_no) is not None


async def merchant_order(ctx: Context, order_no: str) -> Order | None:
    """The bound merchant's own order, or None: another merchant's order does not exist here."""
    if not ctx.identity.is_merchant:
        return None
    order = await ctx.gateway.get_order(order_no)
    if order is None or not chat_may_see(order, ctx.identity.merchant_id, ()):
        return None
    return order


def chat_may_see(order: Order, merchant_id: str | None, verified: Collection[str]) -> bool:
    """Whether a chat is entitled to `order`: it is the bound merchant's own, or the customer
    proved it in this chat (`verified`: the chat's `OrderWatch` rows, which the order flows
    write only after the proof matched). What a user merely typed proves nothing."""
    if merchant_id is not None and order.merchant_id == merchant_id:
        return True
    return order.order_no in verified
