"""In-memory indexes the timers sweep: task answer deadlines, legal deadlines, follow-ups.

Each is ordered by due time, so a sweep costs what is due, not what is open. They are
rebuilt from the ``requests`` table when the worker starts (after table recovery) and
kept current by the workflow agent after every change (``track``).
"""

from __future__ import annotations

import heapq
from collections import Counter
from datetime import date, datetime

from privops import metrics
from privops.records import RequestTick
from privops.sweep import DeadlineIndex
from privops.vocab import FINAL_TASK_STATES as FINAL
from privops.vocab import AlertKind, RequestType
from privops.workflow import RequestRecord, next_checks, pending_followups


class Schedule:
    def __init__(self, thresholds: tuple[int, ...]) -> None:
        self.thresholds = thresholds
        self.ready = False
        self._tasks: list[tuple[datetime, str, str]] = []
        self._followups: list[tuple[datetime, str]] = []
        self._deadlines = DeadlineIndex()
        self._due: dict[str, date] = {}
        self._open: dict[str, tuple[str, str]] = {}
        self.open_counts: Counter[tuple[str, str]] = Counter()
        self._pending: dict[str, Counter[str]] = {}
        self.pending_counts: Counter[str] = Counter()

    def track(self, rec: RequestRecord) -> None:
        """Index a request's current timers and counts after it changed."""
        for when, task_id in next_checks(rec):
            heapq.heappush(self._tasks, (when, rec.request_id, task_id))
        for when in pending_followups(rec):
            heapq.heappush(self._followups, (when, rec.request_id))
        self._track_deadline(rec)
        self._track_open(rec)
        self._track_pending(rec)

    def _track_pending(self, rec: RequestRecord) -> None:
        old = self._pending.pop(rec.request_id, Counter())
        new: Counter[str] = Counter(
            t.system.value for t in rec.tasks.values() if rec.open and t.state not in FINAL
        )
        if new:
            self._pending[rec.request_id] = new
        for system in set(old) | set(new):
            self.pending_counts[system] += new[system] - old[system]
            metrics.set_tasks_pending(system, self.pending_counts[system])

    def _track_deadline(self, rec: RequestRecord) -> None:
        rid = rec.request_id
        old = self._due.get(rid)
        new = rec.due_on if rec.open else None
        if old == new:
            return
        counted = rec.request_type is not RequestType.complaint
        if old is not None:
            self._deadlines.remove(rid)
            if counted:
                metrics.DSAR_DEADLINES.remove(old)
            del self._due[rid]
        if new is not None:
            self._deadlines.add(rid, new, thresholds=self.thresholds)
            if counted:
                metrics.DSAR_DEADLINES.add(new)
            self._due[rid] = new

    def _track_open(self, rec: RequestRecord) -> None:
        old = self._open.pop(rec.request_id, None)
        if old is not None:
            self.open_counts[old] -= 1
            metrics.set_requests_open(old[0], old[1], self.open_counts[old])
        if rec.open:
            key = (rec.request_type.value, rec.state.value)
            self._open[rec.request_id] = key
            self.open_counts[key] += 1
            metrics.set_requests_open(key[0], key[1], self.open_counts[key])

    def due(self, now: datetime, today: date) -> list[RequestTick]:
        """Every tick that is due now; each is handed out once."""
        ticks = []
        while self._tasks and self._tasks[0][0] <= now:
            _, rid, task_id = heapq.heappop(self._tasks)
            ticks.append(RequestTick(request_id=rid, kind="task_overdue", task_id=task_id, at=now))
        while self._followups and self._followups[0][0] <= now:
            _, rid = heapq.heappop(self._followups)
            ticks.append(RequestTick(request_id=rid, kind="followup", at=now))
        for firing in self._deadlines.pop_due(today):
            kind = (
                "deadline_breached"
                if firing.kind is AlertKind.deadline_breached
                else "deadline_approaching"
            )
            ticks.append(
                RequestTick(
                    request_id=firing.request_id,
                    kind=kind,
                    days_before=firing.days_before,
                    due_on=firing.due,
                    at=now,
                )
            )
        return ticks

    def __len__(self) -> int:
        return len(self._open)
