"""How many console passwords may be tried, by whom, and the known devices that skip the queue.

An attempt is reserved before its password is checked: one transaction inserts the attempt's
`RateEvent` rows and counts what came before, serialised per key (an advisory lock on
PostgreSQL, SQLite's single writer), so however many logins arrive at once, no more are checked
than the limits allow. A failed attempt's rows stay and count; a successful one releases them.

The limits (docs/SECURITY.md has the arithmetic):
- a name from one address, or from one known device: 5 failures, then locked for 15 minutes
  after the last, doubling with every further failure in 24 hours, 24 hours at most;
- an address, over every name: 50 attempts in 15 minutes;
- a name from devices it never logged in from: 20 attempts in 15 minutes.
A device that logged in as the agent before (a random cookie, stored as a digest) counts only
against itself, so neither a stranger failing on the name nor a colleague behind the same NAT
can lock that agent out of it.

No aiohttp here: the console, the CLI and tests share it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.digests import token_digest
from bot.storage.models import Agent, AgentDevice, RateEvent

FAILURES = 5
BACKOFF_FIRST = timedelta(minutes=15)
BACKOFF_HORIZON = timedelta(hours=24)
BACKOFF_LONGEST = timedelta(hours=24)
WINDOW = timedelta(minutes=15)
PER_ADDRESS = 50
PER_NAME_UNKNOWN_DEVICES = 20
DEVICE_LIFETIME = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class _Limit:
    key: str
    backoff: bool  # True: FAILURES then a growing lock; False: `count` per WINDOW
    count: int = FAILURES


@dataclass(frozen=True, slots=True)
class Reservation:
    """The attempt's rows (released when the password was right) or how long to wait."""

    event_ids: tuple[int, ...]
    retry_after: timedelta | None

    @property
    def refused(self) -> bool:
        return self.retry_after is not None


def _name_key(name: str) -> str:
    # A digest keeps every key inside RateEvent.key's 128 characters, whatever the name folds to.
    return hashlib.sha256(name.casefold().encode()).hexdigest()[:32]


def name_key(name: str) -> str:
    return f"login:name:{_name_key(name)}"


def pair_key(name: str, address: str) -> str:
    return f"login:pair:{_name_key(name)}:{address[:64]}"


def address_key(address: str) -> str:
    return f"login:ip:{address[:64]}"


def device_key(device_id: int) -> str:
    return f"login:device:{device_id}"


def backoff(failures: int) -> timedelta | None:
    """How long a pair or device stays locked after its last failure; None: not locked."""
    if failures < FAILURES:
        return None
    lock: timedelta = BACKOFF_FIRST * 2 ** min(failures - FAILURES, 16)
    return min(lock, BACKOFF_LONGEST)


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


class _Refused(Exception):
    def __init__(self, retry_after: timedelta) -> None:
        self.retry_after = retry_after


async def known_device(
    session: AsyncSession, token: str | None, name: str, now: datetime
) -> int | None:
    """The id of the device behind `token` if it logged in as `name` before and is still valid."""
    if not token or len(token) > 128:
        return None
    device_id: int | None = await session.scalar(
        select(AgentDevice.id)
        .join(Agent, Agent.id == AgentDevice.agent_id)
        .where(
            AgentDevice.token_digest == token_digest(token),
            AgentDevice.expires_at > now,
            Agent.name == name,
        )
    )
    return device_id


def _limits(name: str, address: str, device_id: int | None) -> list[_Limit]:
    if device_id is not None:
        return [_Limit(device_key(device_id), backoff=True)]
    return [
        _Limit(pair_key(name, address), backoff=True),
        _Limit(address_key(address), backoff=False, count=PER_ADDRESS),
        _Limit(name_key(name), backoff=False, count=PER_NAME_UNKNOWN_DEVICES),
    ]


async def reserve(
    session: AsyncSession, name: str, address: str, device_id: int | None, now: datetime
) -> Reservation:
    """Reserve one attempt for `name` from `address` (or a known device), or say how long to
    wait. Runs its own transaction on `session`; a refused attempt leaves nothing behind."""
    limits = _limits(name, address, device_id)
    try:
        async with session.begin():
            if (await session.connection()).dialect.name == "postgresql":
                for key in sorted(limit.key for limit in limits):
                    await session.execute(select(func.pg_advisory_xact_lock(_lock_id(key))))
            # On SQLite the insert comes first: it takes the one write lock, so the counts
            # below see every attempt committed before this one.
            events = [RateEvent(key=limit.key, at=now) for limit in limits]
            session.add_all(events)
            await session.flush()
            ids = tuple(event.id for event in events)
            waits = [await _wait(session, limit, ids, now) for limit in limits]
            longest = max((wait for wait in waits if wait is not None), default=None)
            if longest is not None:
                raise _Refused(longest)
    except _Refused as refused:
        return Reservation((), refused.retry_after)
    return Reservation(ids, None)


async def _wait(
    session: AsyncSession, limit: _Limit, own: Sequence[int], now: datetime
) -> timedelta | None:
    """How long `limit` still holds, counting the attempts before this one; None: it does not."""
    horizon = BACKOFF_HORIZON if limit.backoff else WINDOW
    earlier = (
        select(RateEvent.at)
        .where(RateEvent.key == limit.key, RateEvent.at > now - horizon, RateEvent.id.not_in(own))
        .subquery()
    )
    if limit.backoff:
        count, last = (await session.execute(select(func.count(), func.max(earlier.c.at)))).one()
        lock = backoff(int(count))
        if lock is None or last is None or last + lock <= now:
            return None
        wait: timedelta = last + lock - now
        return wait
    count = int(await session.scalar(select(func.count()).select_from(earlier)) or 0)
    if count < limit.count:
        return None
    # The window frees a place when the oldest attempt that keeps it full leaves it.
    oldest = await session.scalar(
        select(earlier.c.at).order_by(earlier.c.at).offset(count - limit.count).limit(1)
    )
    return (oldest + WINDOW - now) if oldest is not None else WINDOW


async def release(session: AsyncSession, reservation: Reservation) -> None:
    """The password was right (in the caller's transaction): this attempt does not count.
    Earlier failures stay: attempts still in flight beside this one must keep their places,
    or a burst with the right password in it would have more guesses checked than the limit.
    A browser that logged in is a known device from now on and counts only against itself."""
    if reservation.event_ids:
        await session.execute(delete(RateEvent).where(RateEvent.id.in_(reservation.event_ids)))


async def remember_device(
    session: AsyncSession, agent_id: int, device_id: int | None, now: datetime
) -> str | None:
    """After a successful login: a new device token to set as a cookie, or None when the
    browser is a known device of this agent already (its lifetime starts again)."""
    await session.execute(
        delete(AgentDevice).where(AgentDevice.agent_id == agent_id, AgentDevice.expires_at <= now)
    )
    if device_id is not None:
        device = await session.get(AgentDevice, device_id)
        if device is not None and device.agent_id == agent_id:
            device.expires_at = now + DEVICE_LIFETIME
            return None
    token = secrets.token_urlsafe(32)
    session.add(
        AgentDevice(
            agent_id=agent_id,
            token_digest=token_digest(token),
            created_at=now,
            expires_at=now + DEVICE_LIFETIME,
        )
    )
    return token


async def unlock(session: AsyncSession, agent: Agent) -> int:
    """Forget every failed login counted against this agent's name (from any address and its
    devices); per-address counts stay. How many attempts were forgotten."""
    devices = select(AgentDevice.id).where(AgentDevice.agent_id == agent.id)
    keys = [name_key(agent.name)] + [
        device_key(device_id) for device_id in (await session.scalars(devices)).all()
    ]
    # Every attempt counted against the agent left one row under the name or a device key.
    forgotten = await session.execute(delete(RateEvent).where(RateEvent.key.in_(keys)))
    pairs = pair_key(agent.name, "")
    await session.execute(delete(RateEvent).where(RateEvent.key.startswith(pairs)))
    return int(forgotten.rowcount)  # type: ignore[attr-defined]
