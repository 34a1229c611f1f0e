"""`CircuitBreaker`: stop calling a platform that keeps failing, and try again after a pause.

While the platform is down every chat message would otherwise wait out a timeout (and its
retries) before the user hears "please try later". After `threshold` consecutive failures the
breaker opens and calls fail at once; after `cooldown` seconds one trial call goes through
(half-open) and its outcome closes the breaker or opens it for another cool-down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

from bot.platform.gateway import PlatformError, PlatformUnavailable

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(PlatformUnavailable):
    """The breaker refused the call without touching the network."""


class CircuitBreaker:
    """Consecutive-failure breaker for one remote service; the clock is injectable for tests.

    Not thread-safe; it lives on one event loop, where the check and the update of one call
    never interleave with another's.
    """

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or cooldown < 0:
            raise ValueError("threshold must be at least 1 and cooldown not negative")
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self._cooldown:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Wrap one call: `PlatformUnavailable` counts as a failure, any answer as a success.

        Raises `CircuitOpen` before the call while open, and while half-open for every call but
        the one trial. `PlatformRejected` is an answer (the platform is up); a cancelled or
        crashed call is no verdict and only frees the trial slot.
        """
        trial = self._admit()
        try:
            yield
        except PlatformUnavailable:
            self._failed(trial)
            raise
        except PlatformError:
            self._succeeded()
            raise
        except BaseException:
            if trial:
                self._trial_running = False
            raise
        self._succeeded()

    def _admit(self) -> bool:
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.OPEN or self._trial_running:
            raise CircuitOpen("the platform circuit is open after repeated failures")
        self._trial_running = True
        return True

    def _succeeded(self) -> None:
        if self._opened_at is not None:
            log.info("platform circuit closed: the platform answered again")
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def _failed(self, trial: bool) -> None:
        self._failures += 1
        if trial:
            self._trial_running = False
        if trial or (self._opened_at is None and self._failures >= self._threshold):
            self._opened_at = self._clock()
            log.info(
                "platform circuit open for %.0f s after %d failure(s) in a row",
                self._cooldown,
                self._failures,
            )
