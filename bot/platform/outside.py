"""Remote platform calls made outside the message's transaction.

With the platform behind HTTP (`PLATFORM_API_URL`) a call may take seconds. Made inside the
message's transaction it would hold a database connection that long (on SQLite the only one),
and every other chat would wait behind it. So inside a unit run by `in_unit`, the gateway does
not call: the first time a message needs an answer it does not have yet, it stops the message
(`PlatformCallNeeded`, which rolls the transaction back), `in_unit` makes the call with no
connection held, keeps the answer (or the error), and runs the message again from the start,
where the answer is now at hand. A message needing two answers runs three times: a few
milliseconds of database work each, against the platform's seconds.

Each call is made once per message, so a payment link is not created twice by a rerun. Outside
`in_unit` (the agent console's actions) the gateway calls straight through, as before. The
embedded platform (`SqlPlatform`) is never wrapped: it works inside the transaction itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.platform.gateway import PlatformGateway
from bot.platform.models import (
    Account,
    Merchant,
    Order,
    PaymentLink,
    ResetResult,
    ResyncResult,
    Withdrawal,
)
from bot.storage.unit import current_session, joined

T = TypeVar("T")
_Key = tuple[str, tuple[Any, ...]]  # the method and its arguments
_answers: ContextVar[dict[_Key, tuple[bool, Any]] | None] = ContextVar(
    "platform_answers", default=None
)


class PlatformCallNeeded(BaseException):
    """Stops a message to make a platform call outside its transaction.

    A BaseException, like cancellation: no handler's `except Exception` may swallow it."""

    def __init__(self, key: _Key, call: Callable[[], Awaitable[Any]]) -> None:
        super().__init__(key[0])
        self.key, self.call = key, call


async def in_unit(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """Run `work` in one transaction (joined, see bot.storage.unit), again from the start
    after each platform call it needed, which is made in between, outside any transaction.

    Inside a transaction that is already open, `work` joins it: restarting is then the
    business of whoever opened it."""
    outer = current_session.get()
    if outer is not None:
        return await work(outer)
    answers: dict[_Key, tuple[bool, Any]] = {}
    token = _answers.set(answers)
    try:
        while True:
            try:
                async with sessions() as session, session.begin():
                    with joined(session):
                        return await work(session)
            except PlatformCallNeeded as needed:
                try:
                    answers[needed.key] = (True, await needed.call())
                except Exception as exc:
                    answers[needed.key] = (False, exc)
    finally:
        _answers.reset(token)


class OutsideTransactions:
    """A remote `PlatformGateway` whose calls, inside `in_unit`, are made between reruns."""

    def __init__(self, remote: PlatformGateway) -> None:
        self.remote = remote

    async def _call(self, name: str, *args: Any, **keywords: Any) -> Any:
        method = partial(getattr(self.remote, name), *args, **keywords)
        answers = _answers.get()
        if answers is None:
            return await method()
        key = (name, (*args, *sorted(keywords.items())))
        if key not in answers:
            raise PlatformCallNeeded(key, method)
        ok, value = answers[key]
        if not ok:
            raise value
        return value

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

    async def redeem_bind_code(self, code: str) -> str | None:
        result: str | None = await self._call("redeem_bind_code", code)
        return result
