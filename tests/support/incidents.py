"""A burst of payment attempts on the embedded platform, for the incident tests."""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.platform.models import FailureCode
from bot.platform.tables import AttemptRow, MerchantRow, OrderRow

_numbers = itertools.count(1)


async def ensure_merchants(session: AsyncSession, merchants: int) -> None:
    """The merchants X0000, X0001, ... (`merchants` of them), made when missing."""
    known = set((await session.scalars(select(MerchantRow.id))).all())
    for m in range(merchants):
        merchant_id = f"X{m:04d}"
        if merchant_id not in known:
            session.add(MerchantRow(id=merchant_id, name=f"商户{m}", status="active"))
    await session.flush()


async def platform_burst(
    sessions: async_sessionmaker[AsyncSession],
    at: datetime,
    *,
    merchants: int,
    failed: int,
    succeeded: int,
    code: FailureCode = FailureCode.NETWORK_TIMEOUT,
) -> None:
    """Merchants (made when missing) with one order each per attempt, paid by QR code."""
    async with sessions() as session, session.begin():
        await ensure_merchants(session, merchants)
        for i in range(failed + succeeded):
            order_no = f"BT9{next(_numbers):015d}"
            fails = i < failed
            session.add(
                OrderRow(
                    order_no=order_no,
                    merchant_id=f"X{i % merchants:04d}",
                    amount_fen=1000,
                    method="qr",
                    status="failed" if fails else "paid",
                    created_at=at,
                    updated_at=at,
                )
            )
            await session.flush()
            session.add(
                AttemptRow(
                    order_no=order_no,
                    status="failed" if fails else "succeeded",
                    failure_code=code.value if fails else None,
                    at=at,
                )
            )
