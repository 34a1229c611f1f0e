"""Business hours of the human team (Asia/Shanghai by default, 09:00-21:00 every day)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class BusinessHours:
    zone: ZoneInfo
    opens: time
    closes: time
    days: frozenset[int]  # 0 = Monday

    @classmethod
    def parse(cls, zone: str, spec: str, days: str) -> BusinessHours:
        """`spec` like "09:00-21:00" ("00:00-24:00" is all day); `days` like "0123456"."""
        start, _, end = (part.strip() for part in spec.partition("-"))
        return cls(
            ZoneInfo(zone),
            time.fromisoformat(start),
            time.max if end == "24:00" else time.fromisoformat(end),
            frozenset(int(d) for d in days if d.isdigit()),
        )

    def open_at(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        return local.weekday() in self.days and self.opens <= local.time() < self.closes
