"""The detector as the server's periodic job: read the window, decide, write.

Every `incident_interval_seconds` the job asks the platform for the payment attempts of the
last `incident_window_minutes` (outside any transaction: a remote platform may take seconds),
then, in one short transaction, reads the baselines and open incidents, adds the failed
payments the platform notified in the window that its attempts do not already hold
(`detector.unreported`), measures, decides (`bot.incidents.detector.decide`) and writes the
verdict (`bot.incidents.store`). On PostgreSQL the transaction first takes a
transaction-scoped advisory lock without waiting: a process that does not get it leaves the
run to the one that did; and a run within half an interval of the last one (another
process's) is skipped, so the baselines move once per interval however many servers run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.incidents import store
from bot.incidents.detector import Opened, Rules, decide, measure, observed_keys, unreported
from bot.platform.gateway import MAX_RECENT_ATTEMPTS, PlatformError, PlatformGateway
from bot.settings import Settings

log = logging.getLogger(__name__)

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtext('incidents:detect'))")

# Called with the ids of the incidents a run closed, after its transaction committed.
OnClosed = Callable[[list[int]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class RunResult:
    ran: bool
    opened: int = 0
    closed: tuple[int, ...] = ()
    attempts: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


class IncidentDetector:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        gateway: PlatformGateway,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _now,
        on_closed: OnClosed | None = None,
    ) -> None:
        self.sessions = sessions
        self.gateway = gateway
        self.rules = Rules.of(settings)
        self.interval = settings.incident_interval_seconds
        self.clock = clock
        self.on_closed = on_closed

    async def run_once(self) -> RunResult:
        now = self.clock()
        since = now - self.rules.window
        attempts = await self.gateway.recent_payment_attempts(since, limit=MAX_RECENT_ATTEMPTS)
        async with self.sessions() as session, session.begin():
            postgresql = session.get_bind().dialect.name == "postgresql"
            if postgresql and not (await session.execute(_TRY_LOCK)).scalar():
                return RunResult(False)
            baselines, open_states, last = await store.detector_state(session)
            if (
                last is not None
                and self.interval
                and (now - last) < timedelta(seconds=self.interval / 2)
            ):
                return RunResult(False)
            notified = await store.notified_failures(session, since, MAX_RECENT_ATTEMPTS)
            counted = [*attempts, *unreported(attempts, notified)]
            signals = measure(counted, now, self.rules.window)
            observed = observed_keys(counted, now, self.rules.window)
            verdict = decide(signals, baselines, open_states, now, self.rules, observed=observed)
            closed = await store.write_verdict(session, verdict, now)
        opened = len(verdict.of(Opened))
        if opened or closed:
            log.info("incidents: %d opened, %d closed", opened, len(closed))
        if closed and self.on_closed is not None:
            await self.on_closed(closed)
        return RunResult(True, opened, tuple(closed), len(counted))

    async def keep_running(self) -> None:
        """The server's task: one run every interval, the first after one interval (the
        server is up by then); a failed run is tried at the next."""
        if not self.interval:
            return
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except PlatformError as exc:
                log.warning("incident detection: platform unavailable (%s)", type(exc).__name__)
            except Exception as exc:
                log.warning("incident detection failed: %s", type(exc).__name__)
