"""Deadline alerts: which alert fires when, once per stage, and the index that finds them.

This module is the one owner of the alert rules; the workflow asks it, the worker's
schedule uses its index.

Stages: a request's alerts, in order, are one `deadline_approaching` per threshold
(default 7, 3, 1 days before due; fires on `due - days_before`), then
`deadline_breached`, which fires on the first day after the due date. Every stage is
named by its `days_before` offset, the breach by ``BREACH_DAYS_BEFORE``; a smaller
offset is more urgent. Offsets, not positions, are what a request record keeps
(``Alerted``), so a change of the configured thresholds never confuses what was sent.

Once per stage: ``Alerted.covers`` says an alert was already raised, or a more urgent
one, for the same due date. A new due date (extension, pause) re-arms every stage.

Catch-up: if the sweep did not run for a while (or a request is added late), only the
most urgent stage whose date has come fires; the less urgent stages it jumped over are
consumed silently. Telling someone "7 days left" when 1 day is left is wrong, and an
alert storm after an outage helps nobody.

The index: the sweep must cost in proportion to what is due, not to what is open
(1,000,000 open requests at <= ~1 KB each). Each tracked request has exactly one live
heap entry: its next pending firing, keyed by the date it fires. `pop_due(today)` pops
only entries whose date has come, emits, and pushes the request's following firing.
Removals and reschedules are lazy: they bump the request's generation, and a popped
entry whose generation is stale is dropped; the heap is rebuilt when stale entries
outnumber live ones. After a restart the worker rebuilds it from its request table,
passing each record's ``Alerted`` offset so nothing is raised twice.

Dates are UK local dates held as ordinals; nothing here reads the clock.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Final

from privops.core.errors import DomainError
from privops.core.vocab import AlertKind

DEFAULT_THRESHOLDS: Final[tuple[int, ...]] = (7, 3, 1)

BREACH_DAYS_BEFORE: Final = -1
"""The breach's offset: it is known on the first day after the due date."""

# Per-request state, kept as a tuple to stay small: (due ordinal, generation,
# offsets (shared, interned tuple: the thresholds then the breach), next stage to fire).
_State = tuple[int, int, tuple[int, ...], int]
# Heap entry: (fire ordinal, generation, request id). Generations are unique, so the
# request id is never compared.
_Entry = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Alerted:
    """The most urgent deadline alert raised so far for a request, and for which due date."""

    due: date
    days_before: int

    def covers(self, due: date, days_before: int) -> bool:
        """This alert, or a more urgent one, was already raised for `due`."""
        return self.due == due and self.days_before <= days_before


def alert_kind(days_before: int) -> AlertKind:
    return (
        AlertKind.deadline_breached
        if days_before == BREACH_DAYS_BEFORE
        else AlertKind.deadline_approaching
    )


def offsets(thresholds: Iterable[int]) -> tuple[int, ...]:
    """Every stage's offset, least urgent first: the thresholds, then the breach."""
    ordered = tuple(sorted(set(thresholds), reverse=True))
    if any(t < 0 for t in ordered):
        raise DomainError(f"alert thresholds must be >= 0 days, got {ordered}")
    return (*ordered, BREACH_DAYS_BEFORE)


@dataclass(frozen=True, slots=True)
class Firing:
    """One alert to emit. `stage` is its position in the request's firing sequence;
    `days_before` is None for the breach (as on the wire)."""

    request_id: str
    kind: AlertKind
    due: date
    days_before: int | None
    stage: int


class DeadlineIndex:
    """Open requests indexed by the date of their next alert."""

    def __init__(self) -> None:
        self._state: dict[str, _State] = {}
        self._heap: list[_Entry] = []
        self._generation = 0
        self._stale = 0
        self._offsets: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.pops = 0
        """Heap pops so far (live and stale): the sweep's unit of work, for tests and bench."""

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._state

    def due(self, request_id: str) -> date | None:
        state = self._state.get(request_id)
        return None if state is None else date.fromordinal(state[0])

    def add(
        self,
        request_id: str,
        due: date,
        *,
        thresholds: Iterable[int] = DEFAULT_THRESHOLDS,
        alerted: int | None = None,
    ) -> None:
        """Track a request, or move its due date (which re-arms every stage).

        `alerted` is the offset of the most urgent alert already raised for this due
        date (the request record's ``Alerted``): it and every less urgent stage are
        skipped. Idempotent: re-adding with the same due date and thresholds keeps
        whatever has fired since.
        """
        if alerted is not None and alerted < BREACH_DAYS_BEFORE:
            raise DomainError(f"alerted offset {alerted} is below the breach's")
        shared = self._intern(offsets(thresholds))
        stage = 0 if alerted is None else sum(1 for o in shared if o >= alerted)
        current = self._state.get(request_id)
        due_ord = due.toordinal()
        if current is not None:
            if current[0] == due_ord and current[2] == shared and current[3] >= stage:
                return
            self._forget(current)
        self._arm(sys.intern(request_id), due_ord, shared, stage)
        if current is not None:
            self._maybe_compact()

    def remove(self, request_id: str) -> None:
        """Stop tracking (request finished, paused or cancelled). Unknown ids are ignored."""
        current = self._state.pop(request_id, None)
        if current is not None:
            self._forget(current)
            self._maybe_compact()

    def pop_due(self, today: date) -> list[Firing]:
        """Every firing whose date is on or before `today`, each exactly once."""
        today_ord = today.toordinal()
        heap, fired = self._heap, []
        while heap and heap[0][0] <= today_ord:
            _, generation, request_id = heapq.heappop(heap)
            self.pops += 1
            state = self._state.get(request_id)
            if state is None or state[1] != generation:
                self._stale -= 1
                continue
            due_ord, _, shared, stage = state
            last = len(shared) - 1
            while stage < last and due_ord - shared[stage + 1] <= today_ord:
                stage += 1
            fired.append(_firing(request_id, due_ord, shared, stage))
            self._state[request_id] = (due_ord, generation, shared, stage + 1)
            if stage < last:
                heapq.heappush(heap, (due_ord - shared[stage + 1], generation, request_id))
        return fired

    def _intern(self, key: tuple[int, ...]) -> tuple[int, ...]:
        return self._offsets.setdefault(key, key)

    def _arm(self, request_id: str, due_ord: int, shared: tuple[int, ...], stage: int) -> None:
        self._generation += 1
        generation = self._generation
        self._state[request_id] = (due_ord, generation, shared, stage)
        if stage < len(shared):
            heapq.heappush(self._heap, (due_ord - shared[stage], generation, request_id))

    def _forget(self, state: _State) -> None:
        _, _, shared, stage = state
        if stage < len(shared):
            self._stale += 1

    def _maybe_compact(self) -> None:
        if self._stale <= 1024 or self._stale <= len(self._state):
            return
        self._heap = [
            (due - shared[stage], generation, rid)
            for rid, (due, generation, shared, stage) in self._state.items()
            if stage < len(shared)
        ]
        heapq.heapify(self._heap)
        self._stale = 0


def _firing(request_id: str, due_ord: int, shared: tuple[int, ...], stage: int) -> Firing:
    offset = shared[stage]
    kind = alert_kind(offset)
    days_before = None if kind is AlertKind.deadline_breached else offset
    return Firing(request_id, kind, date.fromordinal(due_ord), days_before, stage)
