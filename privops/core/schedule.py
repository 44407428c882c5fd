"""The worker's in-memory timer indexes: task answers, deadline alerts, follow-ups, and
the day each finished request's record is deleted.

Each is ordered by due time, so a sweep costs what is due, not what is open. They are
rebuilt from the ``requests`` table when the worker starts (after table recovery) and
kept current after every change (``track``). What is due is decided elsewhere
(privops.core.retries for tasks, privops.core.sweep and timelimits for deadlines); this
only remembers when to look. Counts (open requests, pending tasks, due dates) are
reported to an observer, which the worker wires to its metrics.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from privops.core.datamap import DEFAULT_REQUEST_RECORD_DAYS
from privops.core.request import RequestRecord
from privops.core.response_first import waiting
from privops.core.retries import make_task_id, next_checks
from privops.core.sweep import DeadlineIndex
from privops.core.ticks import Tick, TickKind
from privops.core.timelimits import alert_due
from privops.core.vocab import FINAL_TASK_STATES as FINAL
from privops.core.vocab import RequestState, RequestType, System, TaskAction
from privops.core.workflow import expires_on, pending_followups

_SYSTEMS = tuple(System)
_ACTIONS = tuple(TaskAction)
EXPIRY_LIMIT = 500
"""Finished requests' expiries handed out per call of ``Schedule.due`` by default."""
EXPIRIES_PER_SECOND = 500
"""Finished requests' expiries the worker's sweeps hand out per second, at most
(``per_sweep``): on an upgrade, years of them come due at once."""


def per_sweep(per_second: int, interval_s: float) -> int:
    """A budget of ``per_second`` spread over sweeps ``interval_s`` apart: what one sweep
    may hand out, at least one (a sweep that hands out nothing never catches up)."""
    if per_second < 1 or interval_s <= 0:
        raise ValueError(f"per_sweep: {per_second}/s every {interval_s} s is no budget")
    return max(1, round(per_second * interval_s))


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """One open request as the schedule knows it, for the DPO's caseload
    (``Schedule.open_request``), without reading its record."""

    request_id: str
    subject_id: str
    request_type: str
    state: str
    # The date the worker watches: the deadline its alerts are raised against, or the
    # response an acknowledged complaint was promised; None while no clock runs (identity
    # not verified yet, a clarification awaited).
    due_on: date | None
    # The systems whose answer is still awaited; for an erasure waiting for the
    # subject's responses, "response <id>" for each (privops.core.response_first).
    waiting_on: tuple[str, ...]


class ScheduleObserver(Protocol):
    """Told whenever a count the schedule keeps changes."""

    def tasks_pending(self, system: str, count: int) -> None: ...

    def requests_open(self, request_type: str, state: str, count: int) -> None: ...

    def due_moved(self, request_type: RequestType, old: date | None, new: date | None) -> None:
        """A request's watched due date changed (None: not watched, or no longer)."""

    def promise_moved(self, old: date | None, new: date | None) -> None:
        """An acknowledged complaint's promised response date changed (None: not
        acknowledged, or closed)."""

    def identity_awaited(self, old: date | None, new: date | None) -> None:
        """A request waiting for the subject's identity, by the day it was received,
        came (``new``) or went (``old``)."""


class _Unobserved:
    def tasks_pending(self, system: str, count: int) -> None:
        pass

    def requests_open(self, request_type: str, state: str, count: int) -> None:
        pass

    def due_moved(self, request_type: RequestType, old: date | None, new: date | None) -> None:
        pass

    def promise_moved(self, old: date | None, new: date | None) -> None:
        pass

    def identity_awaited(self, old: date | None, new: date | None) -> None:
        pass


class Schedule:
    def __init__(
        self,
        thresholds: tuple[int, ...],
        observer: ScheduleObserver | None = None,
        *,
        record_days: int = DEFAULT_REQUEST_RECORD_DAYS,
    ) -> None:
        self.thresholds = thresholds
        self.record_days = record_days
        self.observer: ScheduleObserver = observer or _Unobserved()
        self.generation = 0
        self._reset()

    def _reset(self) -> None:
        self.ready = False
        # Requests the agents tracked since the reset, while the stored ones are indexed:
        # what they tracked is newer than the store (a flush's values reach the store
        # only once delivered), so the rebuild must not put the stored one back.
        self._tracked_live: set[str] = set()
        # (POSIX seconds, request id, system, action): no per-entry datetime or task id
        # string (rebuilt with make_task_id), which keeps an open request under 1 KB.
        self._tasks: list[tuple[float, str, int, int]] = []
        # What ``_tasks`` holds: a request is tracked again at every change, and each
        # time pushed every waiting task's check anew, so an erasure answered one system
        # at a time left 21 entries for its last task, 21 overdue ticks that each loaded
        # the request for nothing and used up the sweep's re-send budget (review,
        # session 35).
        self._queued_tasks: set[tuple[float, str, int, int]] = set()
        self._combos: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._followups: list[tuple[datetime, str]] = []
        # What ``_followups`` holds, so a request tracked again (every change, and twice
        # per completed erasure) queues each of its times once, not once per tracking.
        self._queued_followups: set[tuple[datetime, str]] = set()
        self._deadlines = DeadlineIndex()
        self._open: dict[str, tuple[str, str]] = {}
        # Open acknowledged complaints: the response date their acknowledgement gave.
        self._promised: dict[str, date] = {}
        # Requests waiting for the subject's identity, by the day they were received: no
        # clock runs, so no deadline alert comes; the ICO expects the ID asked for at
        # once, and one forgotten sat unseen (legal review, session 35).
        self._awaiting_identity: dict[str, date] = {}
        self.open_counts: Counter[tuple[str, str]] = Counter()
        # Pending systems per request as one interned tuple: a Counter each would cost
        # several hundred bytes per open request.
        self._pending: dict[str, tuple[str, ...]] = {}
        self.pending_counts: Counter[str] = Counter()
        # Erasures waiting for the subject's responses (privops.core.response_first): what
        # each waits for, as the caseload shows it (few at any time; no metric counts them).
        self._responses_first: dict[str, tuple[str, ...]] = {}
        # Whose request it is, while a timer may still fire for it: a tick is keyed by
        # the subject id so it reaches the partition (and the worker) that owns the request.
        self._subjects: dict[str, str] = {}
        # Finished requests by the UK day (ordinal) their record is deleted, and those
        # days as a heap: a list entry per request (its id; the tick's key is looked up
        # in the request index), not a tuple each. An entry is looked at again when it
        # comes due (the request may have changed since), so a stale one costs one tick.
        self._expiring: dict[int, list[str]] = {}
        self._expiry_days: list[int] = []
        # Open requests linking to another (a complaint about it, a follow-up erasure
        # and its parent), and how many open ones link to each: a linked record is kept.
        self._links: dict[str, str] = {}
        self._linked: Counter[str] = Counter()

    def track(self, rec: RequestRecord) -> None:
        """Index a request's current timers and counts after it changed."""
        if not self.ready:
            self._tracked_live.add(rec.request_id)
        self._index(rec)

    def track_stored(self, rec: RequestRecord) -> None:
        """Index a stored request while rebuilding, unless the agents tracked a newer
        value of it since the reset. Before, a rebuild after a rebalance put the stored
        value back over the newer one (an extension decided but not yet stored): the
        deadline index kept the old due date, and no alert came for the new one (review,
        session 26)."""
        if rec.request_id not in self._tracked_live:
            self._index(rec)

    def rebuilt(self) -> None:
        """Every stored request is indexed: from now on only the agents track."""
        self.ready = True
        self._tracked_live = set()

    def _index(self, rec: RequestRecord) -> None:
        for when, task_id in next_checks(rec):
            task = rec.tasks[task_id]
            check = (
                when.timestamp(),
                rec.request_id,
                _SYSTEMS.index(task.system),
                _ACTIONS.index(task.action),
            )
            if check not in self._queued_tasks:
                self._queued_tasks.add(check)
                heapq.heappush(self._tasks, check)
        followups = pending_followups(rec)
        for when in followups:
            entry = (when, rec.request_id)
            if entry not in self._queued_followups:
                self._queued_followups.add(entry)
                heapq.heappush(self._followups, entry)
        if rec.open or followups:
            self._subjects[rec.request_id] = rec.subject_id
        else:
            self._subjects.pop(rec.request_id, None)
        self._track_deadline(rec)
        self._track_promise(rec)
        self._track_identity(rec)
        self._track_open(rec)
        self._track_pending(rec)
        if waiting(rec):
            self._responses_first[rec.request_id] = tuple(f"response {i}" for i in rec.waits_for)
        else:
            self._responses_first.pop(rec.request_id, None)
        self._track_link(rec)
        if not rec.open and not followups:
            expiry = expires_on(rec, self.record_days)
            if expiry is not None:
                self.recheck(rec.request_id, expiry)

    def recheck(self, request_id: str, day: date) -> None:
        """Look at ``request_id``'s expiry on ``day`` (a legal hold kept it past its day)."""
        ordinal = day.toordinal()
        bucket = self._expiring.get(ordinal)
        if bucket is None:
            self._expiring[ordinal] = bucket = []
            heapq.heappush(self._expiry_days, ordinal)
        if request_id not in bucket[-4:]:  # tracked again (an answer to a late command)
            bucket.append(request_id)

    def referenced(self, request_id: str) -> bool:
        """Whether an open request links to ``request_id`` (its record is kept)."""
        return self._linked[request_id] > 0

    def _track_link(self, rec: RequestRecord) -> None:
        old = self._links.pop(rec.request_id, None)
        if old is not None:
            self._linked[old] -= 1
            if self._linked[old] <= 0:
                del self._linked[old]
        if rec.open and rec.linked_request_id:
            self._links[rec.request_id] = rec.linked_request_id
            self._linked[rec.linked_request_id] += 1

    def _track_pending(self, rec: RequestRecord) -> None:
        old = Counter(self._pending.pop(rec.request_id, ()))
        systems = tuple(
            sorted(t.system.value for t in rec.tasks.values() if rec.open and t.state not in FINAL)
        )
        if systems:
            self._pending[rec.request_id] = self._combos.setdefault(systems, systems)
        new = Counter(systems)
        for system in set(old) | set(new):
            self.pending_counts[system] += new[system] - old[system]
            self.observer.tasks_pending(system, self.pending_counts[system])

    def _track_deadline(self, rec: RequestRecord) -> None:
        rid = rec.request_id
        old = self._deadlines.due(rid)
        new = alert_due(rec)
        if new is None:
            self._deadlines.remove(rid)
        else:
            mark = rec.deadline_alerted
            alerted = mark.days_before if mark is not None and mark.due == new else None
            self._deadlines.add(rid, new, thresholds=self.thresholds, alerted=alerted)
        if old != new:
            self.observer.due_moved(rec.request_type, old, new)

    def _track_promise(self, rec: RequestRecord) -> None:
        old = self._promised.pop(rec.request_id, None)
        new = (
            rec.due_on
            if rec.open and rec.request_type is RequestType.complaint and rec.acknowledged_on
            else None
        )
        if new is not None:
            self._promised[rec.request_id] = new
        if old != new:
            self.observer.promise_moved(old, new)

    def _track_identity(self, rec: RequestRecord) -> None:
        old = self._awaiting_identity.pop(rec.request_id, None)
        new = rec.received_on if rec.state is RequestState.identity_unverified else None
        if new is not None:
            self._awaiting_identity[rec.request_id] = new
        if old != new:
            self.observer.identity_awaited(old, new)

    def _track_open(self, rec: RequestRecord) -> None:
        old = self._open.pop(rec.request_id, None)
        if old is not None:
            self.open_counts[old] -= 1
            self.observer.requests_open(old[0], old[1], self.open_counts[old])
        if rec.open:
            key = (rec.request_type.value, rec.state.value)
            self._open[rec.request_id] = key
            self.open_counts[key] += 1
            self.observer.requests_open(key[0], key[1], self.open_counts[key])

    def clear(self) -> None:
        """Forget every request, reporting each count as zero: this worker's partitions
        changed, and the schedule is rebuilt from the requests it owns now."""
        for rid, (request_type, _) in self._open.items():
            due = self._deadlines.due(rid)
            if due is not None:
                self.observer.due_moved(RequestType(request_type), due, None)
        for promised in self._promised.values():
            self.observer.promise_moved(promised, None)
        for received in self._awaiting_identity.values():
            self.observer.identity_awaited(received, None)
        for request_type, state in self.open_counts:
            self.observer.requests_open(request_type, state, 0)
        for system in self.pending_counts:
            self.observer.tasks_pending(system, 0)
        self.generation += 1
        self._reset()

    def open_request_ids(self) -> list[str]:
        """The ids of every open request of this worker's partitions, as of now (a copy:
        the caller may yield between reading them). Meaningful once ``ready``."""
        return list(self._open)

    def open_request(self, request_id: str) -> OpenRequest | None:
        """What the indexes know of an open request (no record is read); None once it
        is closed."""
        known = self._open.get(request_id)
        if known is None:
            return None
        return OpenRequest(
            request_id=request_id,
            subject_id=self._subjects[request_id],
            request_type=known[0],
            state=known[1],
            due_on=self._deadlines.due(request_id) or self._promised.get(request_id),
            waiting_on=self._pending.get(request_id) or self._responses_first.get(request_id, ()),
        )

    def erasure_waits(self, subject_id: str) -> bool:
        """Whether an erasure of the subject waits for their responses (``response_first``),
        or, before the indexes are rebuilt (``ready``), whether one may."""
        if not self.ready:
            return True
        return any(self._subjects.get(rid) == subject_id for rid in self._responses_first)

    def subject_of(self, request_id: str) -> str | None:
        """The subject of a tracked request (the key its ticks travel under); None for a
        finished one (its expiry's tick finds it in the request index)."""
        return self._subjects.get(request_id)

    def due(
        self,
        now: datetime,
        today: date,
        *,
        overdue_limit: int | None = None,
        expiry_limit: int = EXPIRY_LIMIT,
    ) -> list[Tick]:
        """Every tick that is due now; each is handed out once.

        ``overdue_limit`` caps the overdue-answer ticks (re-sends and escalations)
        handed out at once, the longest overdue first; the rest stay due for the next
        call. A system that was down for an hour leaves thousands overdue together, and
        re-sending them all at once would starve the worker's commands. ``expiry_limit``
        does the same for finished requests' expiries: on an upgrade, years of them come
        due at once."""
        ticks: list[Tick] = []
        cutoff = now.timestamp()
        limit = len(self._tasks) if overdue_limit is None else overdue_limit
        while self._tasks and self._tasks[0][0] <= cutoff and len(ticks) < limit:
            check = heapq.heappop(self._tasks)
            self._queued_tasks.discard(check)
            _, rid, system, action = check
            task_id = make_task_id(rid, _SYSTEMS[system], _ACTIONS[action])
            ticks.append(Tick(rid, TickKind.task_overdue, now, task_id=task_id))
        followed: set[str] = set()
        while self._followups and self._followups[0][0] <= now:
            entry = heapq.heappop(self._followups)
            self._queued_followups.discard(entry)
            if entry[1] not in followed:  # one tick looks at all that is due of it
                followed.add(entry[1])
                ticks.append(Tick(entry[1], TickKind.followup, now))
        for firing in self._deadlines.pop_due(today):
            ticks.append(
                Tick(
                    firing.request_id,
                    TickKind(firing.kind.value),  # the deadline kinds share their names
                    now,
                    days_before=firing.days_before,
                    due_on=firing.due,
                )
            )
        ticks.extend(self._expired(now, today.toordinal(), expiry_limit))
        return ticks

    def _expired(self, now: datetime, today: int, limit: int) -> list[Tick]:
        ticks: list[Tick] = []
        while self._expiry_days and self._expiry_days[0] <= today and len(ticks) < limit:
            day = self._expiry_days[0]
            bucket = self._expiring[day]
            while bucket and len(ticks) < limit:
                ticks.append(Tick(bucket.pop(), TickKind.record_expired, now))
            if not bucket:
                heapq.heappop(self._expiry_days)
                del self._expiring[day]
        return ticks

    def __len__(self) -> int:
        return len(self._open)
