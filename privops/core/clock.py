"""The clock domain code is given: real UTC time, optionally shifted for demos and tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

UK = ZoneInfo("Europe/London")


@dataclass(frozen=True)
class Clock:
    """``now`` in UTC and ``today`` as the UK local date (legal deadlines are UK dates)."""

    offset: timedelta = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def today(self) -> date:
        return self.now().astimezone(UK).date()

    @classmethod
    def from_days(cls, days: float) -> Clock:
        return cls(timedelta(days=days))
