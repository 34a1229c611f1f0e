"""Loading a platform world (merchants, accounts, orders, withdrawals) from YAML or JSON.

`btp-bot platform load FILE` and the demo start use it. Times are ISO 8601, or relative to the
moment of loading ("now", "-2h", "+30m", "-3d"), so a demo world never goes stale. Loading is
idempotent: records with the same keys are replaced. Passwords are hashed with argon2 and bind
codes stored as HMAC digests under the platform's key (see `bot.platform.sql.bind_code_key`).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import yaml
from argon2 import PasswordHasher
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.platform.models import (
    AccountStatus,
    AttemptStatus,
    FailureCode,
    MerchantStatus,
    Method,
    OrderStatus,
    WithdrawalStatus,
)
from bot.platform.sql import bind_code_digest, bind_code_key, to_fen
from bot.platform.tables import (
    AccountRow,
    AttemptRow,
    ChannelRecordRow,
    MerchantRow,
    OrderRow,
    WithdrawalRow,
)

_RELATIVE = re.compile(r"^([+-])(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class WorldError(ValueError):
    """The world file cannot be loaded; the message names the file and the field."""


def _moment(value: Any, now: datetime) -> Any:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        sign, number, unit = match.groups()
        delta = timedelta(**{_UNITS[unit]: int(number)})
        return now + delta if sign == "+" else now - delta
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


Moment = Annotated[datetime, BeforeValidator(lambda v: v)]
OrderNo = Annotated[str, Field(pattern=r"^BT\d{16}$")]
Amount = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]


class AccountSpec(_Model):
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1)
    failed_attempts: int = Field(default=0, ge=0)
    locked_until: Moment | None = None
    status: AccountStatus = AccountStatus.ACTIVE
    email: str | None = None
    phone: str | None = None


class MerchantSpec(_Model):
    id: str = Field(min_length=1, max_length=32)
    name: str
    email: str | None = None
    phone: str | None = None
    status: MerchantStatus = MerchantStatus.ACTIVE
    bind_code: str | None = Field(default=None, min_length=4, max_length=32)
    accounts: list[AccountSpec] = []


class AttemptSpec(_Model):
    status: AttemptStatus
    failure_code: FailureCode | None = None
    at: Moment


class ChannelSpec(_Model):
    status: OrderStatus
    synced_at: Moment | None = None


class OrderSpec(_Model):
    order_no: OrderNo
    merchant: str
    amount: Amount
    method: Method
    status: OrderStatus
    payer_phone: str | None = None
    description: str | None = None
    created_at: Moment
    attempts: list[AttemptSpec] = []
    channel: ChannelSpec | None = None


class WithdrawalSpec(_Model):
    id: str = Field(min_length=1, max_length=32)
    merchant: str
    amount: Amount
    status: WithdrawalStatus
    requested_at: Moment
    paid_at: Moment | None = None
    failure_reason: str | None = None


class World(_Model):
    merchants: list[MerchantSpec] = []
    orders: list[OrderSpec] = []
    withdrawals: list[WithdrawalSpec] = []


def _resolve_times(node: Any, now: datetime, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _resolve_times(v, now, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_times(v, now, key) for v in node]
    if key in {"at", "created_at", "requested_at", "paid_at", "locked_until", "synced_at"}:
        return _moment(node, now)
    return node


def read_world(path: Path, now: datetime | None = None) -> World:
    """Parse and validate a world file; errors name the file and the path to the bad field."""
    now = now or datetime.now(UTC)
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        world = World.model_validate(_resolve_times(raw or {}, now))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        if isinstance(exc, ValidationError):
            details = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise WorldError(f"{path}: {details}") from exc
        raise WorldError(f"{path}: {exc}") from exc
    merchants = {m.id for m in world.merchants}
    owners = [("orders", i, o.merchant) for i, o in enumerate(world.orders)]
    owners += [("withdrawals", i, w.merchant) for i, w in enumerate(world.withdrawals)]
    for kind, index, merchant in owners:
        if merchant not in merchants:
            raise WorldError(f"{path}: {kind}.{index}.merchant: unknown merchant {merchant!r}")
    return world


async def load_world(
    sessions: async_sessionmaker[AsyncSession],
    world: World,
    hasher: PasswordHasher | None = None,
    *,
    bind_code_secret: str | None = None,
) -> dict[str, int]:
    """Write the world in one transaction, replacing records with the same keys.

    `bind_code_secret` must be the platform's (BIND_CODE_SECRET), or the codes stored here
    will not be found when redeemed."""
    hasher = hasher or PasswordHasher()
    async with sessions() as session, session.begin():
        key = await bind_code_key(session, bind_code_secret)
        order_nos = [o.order_no for o in world.orders]
        logins = [a.login for m in world.merchants for a in m.accounts]
        await session.execute(delete(AttemptRow).where(AttemptRow.order_no.in_(order_nos)))
        await session.execute(
            delete(ChannelRecordRow).where(ChannelRecordRow.order_no.in_(order_nos))
        )
        await session.execute(delete(AccountRow).where(AccountRow.login.in_(logins)))
        for m in world.merchants:
            await session.merge(
                MerchantRow(
                    id=m.id,
                    name=m.name,
                    email=m.email,
                    phone=m.phone,
                    status=m.status.value,
                    bind_code_digest=bind_code_digest(key, m.bind_code) if m.bind_code else None,
                    bind_code_used_at=None,
                )
            )
        await session.flush()
        for m in world.merchants:
            for a in m.accounts:
                session.add(
                    AccountRow(
                        merchant_id=m.id,
                        login=a.login,
                        password_hash=hasher.hash(a.password),
                        failed_attempts=a.failed_attempts,
                        locked_until=a.locked_until,
                        status=a.status.value,
                        email=a.email or m.email,
                        phone=a.phone or m.phone,
                    )
                )
        for o in world.orders:
            await session.merge(
                OrderRow(
                    order_no=o.order_no,
                    merchant_id=o.merchant,
                    amount_fen=to_fen(o.amount),
                    method=o.method.value,
                    status=o.status.value,
                    payer_phone=o.payer_phone,
                    description=o.description,
                    created_at=o.created_at,
                    updated_at=max([o.created_at, *(a.at for a in o.attempts)]),
                )
            )
        await session.flush()
        for o in world.orders:
            for attempt in o.attempts:
                session.add(
                    AttemptRow(
                        order_no=o.order_no,
                        status=attempt.status.value,
                        failure_code=attempt.failure_code.value if attempt.failure_code else None,
                        at=attempt.at,
                    )
                )
            if o.channel is not None:
                session.add(
                    ChannelRecordRow(
                        order_no=o.order_no,
                        status=o.channel.status.value,
                        synced_at=o.channel.synced_at,
                    )
                )
        for w in world.withdrawals:
            await session.merge(
                WithdrawalRow(
                    id=w.id,
                    merchant_id=w.merchant,
                    amount_fen=to_fen(w.amount),
                    status=w.status.value,
                    requested_at=w.requested_at,
                    paid_at=w.paid_at,
                    failure_reason=w.failure_reason,
                )
            )
    return {
        "merchants": len(world.merchants),
        "accounts": len(logins),
        "orders": len(world.orders),
        "withdrawals": len(world.withdrawals),
    }
