"""Agents' logins and sessions: who is behind a console request, and who may log in.

A session is a random token given to the browser as a cookie; only its SHA-256 digest is
stored, with the digest of its CSRF token (derived from the session token by HMAC, so only a
digest of it is stored either). Passwords are argon2id, checked off the event loop; an unknown
name costs the same time as a wrong password. Every attempt is counted and limited by
`bot.escalation.login_guard` before its password is checked.

No HTTP here: the console's views turn requests into these calls and the results into
responses (`bot/console/`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.digests import matches_digest, token_digest
from bot.escalation import login_guard
from bot.escalation.core import HandoffError
from bot.storage.models import Agent, AgentSession, AuditEntry

SESSION_LIFETIME = timedelta(hours=12)
MAX_NAME = 64
MAX_PASSWORD = 1024
MAX_TOKEN = 128


def _csrf_for(token: str) -> str:
    """The session's CSRF token: derived from the cookie token, so only its digest is stored."""
    return hmac.new(token.encode(), b"btp-agent-csrf", hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Viewer:
    """The agent behind a request, from a live session."""

    agent_id: int
    name: str
    is_supervisor: bool
    session_id: int
    csrf: str
    csrf_digest: str

    def csrf_matches(self, given: str) -> bool:
        return bool(given) and matches_digest(given, self.csrf_digest)


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A login's outcome. Logged in: `session_token`, and `device_token` when the device got
    a new one. Refused before the password was checked: `retry_after`. Otherwise the name or
    the password was wrong (which of the two is never said)."""

    session_token: str | None = None
    device_token: str | None = None
    retry_after: timedelta | None = None


class AgentSessions:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._sessions = sessions
        self._hasher = hasher or PasswordHasher()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._dummy_hash: str | None = None

    async def viewer(self, token: str | None) -> Viewer | None:
        """The agent whose live session `token` is, if any."""
        if not token or len(token) > MAX_TOKEN:
            return None
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(AgentSession, Agent)
                    .join(Agent, Agent.id == AgentSession.agent_id)
                    .where(
                        AgentSession.token_digest == token_digest(token),
                        AgentSession.expires_at > self._clock(),
                    )
                )
            ).first()
        if row is None:
            return None
        agent_session, agent = row
        return Viewer(
            agent.id,
            agent.name,
            agent.is_supervisor,
            agent_session.id,
            _csrf_for(token),
            agent_session.csrf_digest,
        )

    async def alive(self, session_id: int) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(
                select(AgentSession.id).where(
                    AgentSession.id == session_id, AgentSession.expires_at > self._clock()
                )
            )
        return found is not None

    async def login(
        self, name: str, password: str, *, address: str, device_token: str | None
    ) -> LoginResult:
        """Check a login attempt against the limits, then the password; open a session."""
        name = name.strip()
        if not name or not password or len(name) > MAX_NAME or len(password) > MAX_PASSWORD:
            return LoginResult()
        now = self._clock()
        async with self._sessions() as session:
            agent = await session.scalar(select(Agent).where(Agent.name == name))
            device_id = await login_guard.known_device(session, device_token, name, now)
        async with self._sessions() as session:
            reservation = await login_guard.reserve(session, name, address, device_id, now)
        if reservation.retry_after is not None:
            return LoginResult(retry_after=reservation.retry_after)
        if not await self._verify(agent.password_hash if agent else None, password):
            return LoginResult()
        assert agent is not None
        token = secrets.token_urlsafe(32)
        rehashed = None
        if self._hasher.check_needs_rehash(agent.password_hash):
            rehashed = await asyncio.to_thread(self._hasher.hash, password)
        async with self._sessions() as session, session.begin():
            await login_guard.release(session, reservation)
            if rehashed is not None:
                stored = await session.get(Agent, agent.id)
                if stored is not None:
                    stored.password_hash = rehashed
            await session.execute(
                delete(AgentSession).where(
                    AgentSession.agent_id == agent.id, AgentSession.expires_at <= now
                )
            )
            session.add(
                AgentSession(
                    agent_id=agent.id,
                    token_digest=token_digest(token),
                    csrf_digest=token_digest(_csrf_for(token)),
                    created_at=now,
                    expires_at=now + SESSION_LIFETIME,
                )
            )
            new_device = await login_guard.remember_device(session, agent.id, device_id, now)
            session.add(AuditEntry(agent_id=agent.id, action="login", detail={}, at=now))
        return LoginResult(session_token=token, device_token=new_device)

    async def logout(self, viewer: Viewer) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(AgentSession).where(AgentSession.id == viewer.session_id))
            session.add(
                AuditEntry(agent_id=viewer.agent_id, action="logout", detail={}, at=self._clock())
            )

    async def unlock(self, viewer: Viewer, agent_id: int) -> int:
        """A supervisor forgets the failed logins counted against an agent's name; how many."""
        if not viewer.is_supervisor:
            raise HandoffError("forbidden", "only a supervisor unlocks agents")
        async with self._sessions() as session, session.begin():
            agent = await session.get(Agent, agent_id)
            if agent is None:
                raise HandoffError("not_found", "no such agent")
            cleared = await login_guard.unlock(session, agent)
            session.add(
                AuditEntry(
                    agent_id=viewer.agent_id,
                    action="agent_unlocked",
                    detail={"agent": agent.name, "cleared": cleared},
                    at=self._clock(),
                )
            )
        return cleared

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_hex(16))
        return self._dummy_hash

    async def _verify(self, stored: str | None, password: str) -> bool:
        """argon2id verification off the event loop; an unknown name costs the same time."""
        target = stored or await self._dummy()
        try:
            await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None
