"""Timer ticks: what the worker's sweep found due for a request, typed.

On the wire (``RequestTick`` on privops.internal.request-ticks) the kind is a string, so
that a newer worker's kind does not break an older schema; inside privops it is a
``TickKind``. ``parse_tick`` is the one place the two meet: an unknown kind, or a tick
missing what its kind needs, is a ``DecodeError`` the agent dead-letters with its
reason, never a tick silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from privops.core import records as r
from privops.core.errors import DecodeError
from privops.core.sweep import BREACH_DAYS_BEFORE


class TickKind(StrEnum):
    task_overdue = "task_overdue"
    followup = "followup"
    deadline_approaching = "deadline_approaching"
    deadline_breached = "deadline_breached"
    # A finished request's kept time ended (its record is deleted: workflow.expires_on).
    record_expired = "record_expired"


@dataclass(frozen=True, slots=True)
class Tick:
    request_id: str
    kind: TickKind
    at: datetime
    task_id: str | None = None
    days_before: int | None = None
    due_on: date | None = None

    @property
    def alert_days_before(self) -> int:
        """The deadline stage's offset (see privops.core.sweep); the breach's for a breach."""
        if self.kind is TickKind.deadline_breached:
            return BREACH_DAYS_BEFORE
        if self.days_before is None:
            raise DecodeError("invalid_record", f"{self.kind} tick without days_before")
        return self.days_before

    def to_record(self) -> r.RequestTick:
        return r.RequestTick(
            request_id=self.request_id,
            kind=self.kind.value,
            task_id=self.task_id,
            days_before=self.days_before,
            due_on=self.due_on,
            at=self.at,
        )


def parse_tick(record: r.RequestTick) -> Tick:
    """The typed tick, or DecodeError naming what is wrong with it."""
    try:
        kind = TickKind(record.kind)
    except ValueError:
        known = ", ".join(k.value for k in TickKind)
        raise DecodeError(
            "unknown_value", f"unknown tick kind {record.kind!r}; known: {known}"
        ) from None
    missing = _missing(kind, record)
    if missing:
        raise DecodeError("invalid_record", f"{kind} tick without {missing}")
    return Tick(
        request_id=record.request_id,
        kind=kind,
        at=record.at,
        task_id=record.task_id,
        days_before=record.days_before,
        due_on=record.due_on,
    )


def _missing(kind: TickKind, record: r.RequestTick) -> str | None:
    if kind is TickKind.task_overdue and not record.task_id:
        return "task_id"
    if kind in (TickKind.deadline_approaching, TickKind.deadline_breached) and not record.due_on:
        return "due_on"
    if kind is TickKind.deadline_approaching and (
        record.days_before is None or record.days_before < 0
    ):
        return "days_before >= 0"
    return None
