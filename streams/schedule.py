"""The worker's schedule (privops.core.schedule) wired to its Prometheus metrics."""

from __future__ import annotations

from datetime import date

from privops.adapters import metrics
from privops.core import schedule as core
from privops.core.vocab import RequestType


class MetricsObserver:
    """Publishes the schedule's counts: pending tasks, open requests, DSAR due dates, the
    response dates acknowledged complaints were promised."""

    def tasks_pending(self, system: str, count: int) -> None:
        metrics.set_tasks_pending(system, count)

    def requests_open(self, request_type: str, state: str, count: int) -> None:
        metrics.set_requests_open(request_type, state, count)

    def due_moved(self, request_type: RequestType, old: date | None, new: date | None) -> None:
        # privops_dsar_due_in_days covers rights requests; a complaint's limit is s.164A's.
        if request_type is RequestType.complaint:
            return
        if old is not None:
            metrics.DSAR_DEADLINES.remove(old)
        if new is not None:
            metrics.DSAR_DEADLINES.add(new)

    def promise_moved(self, old: date | None, new: date | None) -> None:
        if old is not None:
            metrics.COMPLAINTS.remove(old)
        if new is not None:
            metrics.COMPLAINTS.add(new)

    def identity_awaited(self, old: date | None, new: date | None) -> None:
        if old is not None:
            metrics.IDENTITY_AWAITED.remove(old)
        if new is not None:
            metrics.IDENTITY_AWAITED.add(new)


class Schedule(core.Schedule):
    """The schedule the worker keeps, publishing its counts as metrics."""

    def __init__(self, thresholds: tuple[int, ...], *, record_days: int) -> None:
        super().__init__(thresholds, MetricsObserver(), record_days=record_days)
