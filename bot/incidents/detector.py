"""Deciding whether a failure code or a channel fails far more than usual: pure functions.

`measure` counts the latest window of payment attempts (from the platform's
`recent_payment_attempts`, and the failed payment events the platform notified that it does not
list, `unreported`) per failure code and per channel; `decide` compares each share of failures
with its baseline and returns typed changes (`Opened`, `Updated`, `Closed`, `BaselineMoved`)
that `bot.incidents.store` writes in one transaction. Nothing here reads a clock or a
database, so tests give it the numbers.

A key's share: failures with that code among all attempts of the window (a code), or failed
attempts among the channel's attempts (a channel). It is elevated when the share is at least
`ratio` times its baseline (never taken below `floor`, so a key with no history, or one that
never fails, does not open an incident on its first few failures), and the window holds at
least `min_failures` such failures from at least `min_merchants` merchants.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.platform.models import AttemptSeen, AttemptStatus
from bot.settings import Settings
from bot.types import IncidentKind

# How many affected merchants an incident keeps for the supervisor page.
MERCHANTS_KEPT = 50


@dataclass(frozen=True, slots=True)
class Rules:
    """The thresholds, from the settings (`incident_*`)."""

    window: timedelta
    ratio: float
    floor: float
    min_failures: int
    min_merchants: int
    quiet: timedelta
    # How much of the gap one run closes in a baseline: the run's interval over a day.
    alpha: float

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        interval = settings.incident_interval_seconds or 60.0
        return cls(
            window=timedelta(minutes=settings.incident_window_minutes),
            ratio=settings.incident_ratio,
            floor=settings.incident_baseline_floor,
            min_failures=settings.incident_min_failures,
            min_merchants=settings.incident_min_merchants,
            quiet=timedelta(minutes=settings.incident_quiet_minutes),
            alpha=min(1.0, interval / 86400.0),
        )


@dataclass(frozen=True, slots=True)
class Signal:
    """One key's numbers in the window."""

    kind: IncidentKind
    key: str
    failures: int
    attempts: int
    merchants: tuple[str, ...]
    # Failures per minute of the window, oldest first (the supervisor page's chart).
    series: tuple[int, ...] = ()

    @property
    def baseline_key(self) -> str:
        return baseline_key(self.kind, self.key)

    @property
    def share(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0


def baseline_key(kind: IncidentKind, key: str) -> str:
    return f"{'code' if kind is IncidentKind.FAILURE_CODE else 'channel'}:{key}"


def measure(attempts: Iterable[AttemptSeen], now: datetime, window: timedelta) -> list[Signal]:
    """Every failure code and every channel seen failing in the window, with its numbers."""
    start = now - window
    minutes = max(1, int(window.total_seconds() // 60))
    total = 0
    per_channel: Counter[str] = Counter()
    failures: dict[tuple[IncidentKind, str], list[AttemptSeen]] = defaultdict(list)
    for attempt in attempts:
        if attempt.at < start or attempt.at > now:
            continue
        total += 1
        per_channel[attempt.channel.value] += 1
        if attempt.status is not AttemptStatus.FAILED:
            continue
        failures[(IncidentKind.CHANNEL, attempt.channel.value)].append(attempt)
        if attempt.failure_code is not None:
            failures[(IncidentKind.FAILURE_CODE, attempt.failure_code.value)].append(attempt)
    signals = []
    for (kind, key), failed in sorted(failures.items()):
        series = [0] * minutes
        for attempt in failed:
            index = int((attempt.at - start).total_seconds() // 60)
            series[min(max(index, 0), minutes - 1)] += 1
        counts = Counter(a.merchant_id for a in failed)
        signals.append(
            Signal(
                kind,
                key,
                len(failed),
                total if kind is IncidentKind.FAILURE_CODE else per_channel[key],
                tuple(m for m, _ in counts.most_common()),
                tuple(series),
            )
        )
    return signals


@dataclass(frozen=True, slots=True)
class OpenState:
    """An open incident the detector found earlier (manual ones are the supervisor's)."""

    id: int
    kind: IncidentKind
    key: str
    normal_since: datetime | None


@dataclass(frozen=True, slots=True)
class Opened:
    signal: Signal
    baseline: float


@dataclass(frozen=True, slots=True)
class Updated:
    id: int
    signal: Signal | None
    baseline: float
    normal_since: datetime | None


@dataclass(frozen=True, slots=True)
class Closed:
    id: int


@dataclass(frozen=True, slots=True)
class BaselineMoved:
    key: str
    share: float


Change = Opened | Updated | Closed | BaselineMoved


@dataclass(frozen=True, slots=True)
class Verdict:
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def of(self, kind: type[Change]) -> list[Change]:
        return [c for c in self.changes if isinstance(c, kind)]


def elevated(signal: Signal, baseline: float, rules: Rules) -> bool:
    return (
        signal.share >= rules.ratio * max(baseline, rules.floor)
        and signal.failures >= rules.min_failures
        and len(signal.merchants) >= rules.min_merchants
    )


def decide(
    signals: Iterable[Signal],
    baselines: Mapping[str, float],
    open_incidents: Iterable[OpenState],
    now: datetime,
    rules: Rules,
    *,
    observed: Iterable[str] = (),
) -> Verdict:
    """What changes after one look at the window.

    `observed`: the channels' baseline keys that had attempts in the window (`observed_keys`);
    with none, baselines stay (nothing was learned), otherwise a key that did not fail now had
    its share fall to 0, which moves its baseline down."""
    by_key = {s.baseline_key: s for s in signals}
    open_by_key = {baseline_key(o.kind, o.key): o for o in open_incidents}
    changes: list[Change] = []
    for key, incident in open_by_key.items():
        signal = by_key.get(key)
        baseline = baselines.get(key, 0.0)
        if signal is not None and elevated(signal, baseline, rules):
            changes.append(Updated(incident.id, signal, baseline, None))
            continue
        since = incident.normal_since or now
        if now - since >= rules.quiet:
            changes.append(Closed(incident.id))
        else:
            changes.append(Updated(incident.id, signal, baseline, since))
    for key, signal in by_key.items():
        if key in open_by_key:
            continue
        baseline = baselines.get(key, 0.0)
        if elevated(signal, baseline, rules):
            changes.append(Opened(signal, baseline))
    # Baselines follow the shares only while nothing is wrong with the key, so an incident
    # does not become the new normal.
    troubled = set(open_by_key) | {c.signal.baseline_key for c in changes if isinstance(c, Opened)}
    seen = set(observed)
    if not seen:
        # No attempts at all in the window (a quiet night): nothing to learn from.
        return Verdict(tuple(changes))
    for key in sorted(set(by_key) | seen | set(baselines)):
        if key in troubled:
            continue
        share = by_key[key].share if key in by_key else 0.0
        old = baselines.get(key)
        new = share if old is None else old + rules.alpha * (share - old)
        if old is None or new != old:
            changes.append(BaselineMoved(key, new))
    return Verdict(tuple(changes))


def unreported(
    attempts: Sequence[AttemptSeen], notified: Iterable[AttemptSeen]
) -> list[AttemptSeen]:
    """The notified failures the platform's attempts do not already hold, each once.

    One attempt is one count whichever source reports it: a notified failure with an attempt
    id is dropped when the platform listed that id, or listed a failure of the same order with
    no id at all (a platform that does not name its attempts); one without an id is dropped
    when the platform listed any failure of its order. Two events naming the same attempt (or,
    without ids, the same order) count once."""
    ids = {a.attempt_id for a in attempts if a.attempt_id is not None}
    failed_orders = {
        a.order_no for a in attempts if a.status is AttemptStatus.FAILED and a.order_no
    }
    unnamed_orders = {
        a.order_no
        for a in attempts
        if a.status is AttemptStatus.FAILED and a.order_no and a.attempt_id is None
    }
    kept: list[AttemptSeen] = []
    counted: set[str] = set()
    for failure in notified:
        key = (
            f"attempt:{failure.attempt_id}"
            if failure.attempt_id is not None
            else f"order:{failure.order_no}"
        )
        if key in counted:
            continue
        counted.add(key)
        if failure.attempt_id is not None:
            if failure.attempt_id in ids or failure.order_no in unnamed_orders:
                continue
        elif failure.order_no in failed_orders:
            continue
        kept.append(failure)
    return kept


def observed_keys(attempts: Iterable[AttemptSeen], now: datetime, window: timedelta) -> set[str]:
    """The channels that had attempts in the window: their baselines move even without a
    failure (codes only move when they fail or already have a baseline)."""
    start = now - window
    return {
        baseline_key(IncidentKind.CHANNEL, a.channel.value)
        for a in attempts
        if start <= a.at <= now
    }
