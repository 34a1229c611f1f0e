"""The remote platform, called outside the message's transaction.

With the platform behind HTTP (`PLATFORM_API_URL`) a call may take seconds; inside a unit run
by `bot.storage.runner.in_unit` each call is made between two runs of the message, with no
connection held (see that module), and at most once per message. Outside `in_unit` (the agent
console's actions) the gateway calls straight through. The embedded platform (`SqlPlatform`)
is never wrapped: it works inside the transaction itself.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from bot.platform.gateway import MAX_RECENT_ATTEMPTS, PlatformGateway
from bot.platform.models import (
    Account,
    AttemptSeen,
    Merchant,
    Order,
    OrderStatus,
    PaymentLink,
    PaymentStatusResult,
    ResetResult,
    ResyncResult,
    Withdrawal,
)
from bot.storage.runner import answer_outside


class OutsideTransactions:
    """A remote `PlatformGateway` whose calls, inside `in_unit`, are made between reruns."""

    def __init__(self, remote: PlatformGateway) -> None:
        self.remote = remote

    async def _call(self, name: str, *args: Any, **keywords: Any) -> Any:
        method = partial(getattr(self.remote, name), *args, **keywords)
        return await answer_outside((name, (*args, *sorted(keywords.items()))), method)

    async def get_merchant(self, merchant_id: str) -> Merchant | None:
        result: Merchant | None = await self._call("get_merchant", merchant_id)
        return result

    async def get_order(self, order_no: str) -> Order | None:
        result: Order | None = await self._call("get_order", order_no)
        return result

    async def list_orders(
        self, merchant_id: str, *, since: datetime | None = None, limit: int = 50
    ) -> list[Order]:
        result: list[Order] = await self._call("list_orders", merchant_id, since=since, limit=limit)
        return result

    async def get_account(self, login: str) -> Account | None:
        result: Account | None = await self._call("get_account", login)
        return result

    async def list_accounts(self, merchant_id: str) -> list[Account]:
        result: list[Account] = await self._call("list_accounts", merchant_id)
        return result

    async def get_withdrawal(self, withdrawal_id: str) -> Withdrawal | None:
        result: Withdrawal | None = await self._call("get_withdrawal", withdrawal_id)
        return result

    async def list_withdrawals(self, merchant_id: str, *, limit: int = 10) -> list[Withdrawal]:
        result: list[Withdrawal] = await self._call("list_withdrawals", merchant_id, limit=limit)
        return result

    async def get_payment_link(self, link_id: str) -> PaymentLink | None:
        result: PaymentLink | None = await self._call("get_payment_link", link_id)
        return result

    async def recent_payment_attempts(
        self, since: datetime, *, limit: int = MAX_RECENT_ATTEMPTS
    ) -> list[AttemptSeen]:
        result: list[AttemptSeen] = await self._call("recent_payment_attempts", since, limit=limit)
        return result

    async def create_payment_link(
        self,
        merchant_id: str,
        amount: Decimal,
        description: str | None,
        *,
        idempotency_key: str | None = None,
    ) -> PaymentLink:
        result: PaymentLink = await self._call(
            "create_payment_link",
            merchant_id,
            amount,
            description,
            idempotency_key=idempotency_key,
        )
        return result

    async def start_password_reset(self, login: str) -> ResetResult:
        result: ResetResult = await self._call("start_password_reset", login)
        return result

    async def resync_order(self, order_no: str) -> ResyncResult:
        result: ResyncResult = await self._call("resync_order", order_no)
        return result

    async def record_payment_status(
        self, order_no: str, status: OrderStatus, amount: Decimal
    ) -> PaymentStatusResult | None:
        result: PaymentStatusResult | None = await self._call(
            "record_payment_status", order_no, status, amount
        )
        return result

    async def redeem_bind_code(self, code: str) -> str | None:
        result: str | None = await self._call("redeem_bind_code", code)
        return result
