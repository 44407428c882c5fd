"""The deadline index behind the worker's periodic sweep (DESIGN.md section 9).

The sweep must cost in proportion to what is due, not to what is open (1,000,000 open
requests at <= ~1 KB each). Each tracked request has exactly one live heap entry: its
next pending firing, keyed by the date it fires. `pop_due(today)` pops only entries whose
date has come, emits, and pushes the request's following firing. Removals and
reschedules are lazy: they bump the request's generation, and a popped entry whose
generation is stale is dropped; the heap is rebuilt when stale entries outnumber live ones.

Firings of one request, in order ("stages"): one `deadline_approaching` per threshold
(fires on `due - days_before`), then `deadline_breached` (fires the day after due, when
due has passed unfinished). Each stage fires at most once per due date.

Catch-up: if the sweep did not run for a while (or a request is added late), only the
most urgent stage whose date has come fires; the less urgent stages it jumped over are
consumed silently. Telling someone "7 days left" when 1 day is left is wrong, and an
alert storm after an outage helps nobody.

Restart: `snapshot()` gives plain rows that `restore()` turns back into an index; or the
worker rebuilds it from its request table with `add(..., resume_stage=...)`, persisting
`Firing.stage + 1` with each alert it emits.

Dates are UK local dates held as ordinals; nothing here reads the clock.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from privops.core.errors import DomainError
from privops.core.vocab import AlertKind

DEFAULT_THRESHOLDS: Final[tuple[int, ...]] = (7, 3, 1)

# A snapshot row: [request_id, due (ISO date), thresholds, next stage].
SnapshotRow = tuple[str, str, tuple[int, ...], int]

# Per-request state, kept as a tuple to stay small: (due ordinal, generation,
# thresholds (shared, interned tuple), next stage to fire).
_State = tuple[int, int, tuple[int, ...], int]
# Heap entry: (fire ordinal, generation, request id). Generations are unique, so the
# request id is never compared.
_Entry = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Firing:
    """One alert to emit. `stage` is its position in the request's firing sequence."""

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
        self._thresholds: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.pops = 0
        """Heap pops so far (live and stale): the sweep's unit of work, for tests and bench."""

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._state

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def due(self, request_id: str) -> date | None:
        state = self._state.get(request_id)
        return None if state is None else date.fromordinal(state[0])

    def add(
        self,
        request_id: str,
        due: date,
        *,
        thresholds: Iterable[int] = DEFAULT_THRESHOLDS,
        resume_stage: int = 0,
    ) -> None:
        """Track a request. Idempotent: re-adding with the same due date and thresholds
        keeps what has already fired; a different due date reschedules."""
        shared = self._intern_thresholds(thresholds)
        if not 0 <= resume_stage <= len(shared) + 1:
            raise DomainError(f"resume_stage {resume_stage} out of range for {shared}")
        current = self._state.get(request_id)
        due_ord = due.toordinal()
        if current is not None and current[0] == due_ord and current[2] == shared:
            return
        if current is not None:
            self._forget(current)
        self._arm(sys.intern(request_id), due_ord, shared, resume_stage)

    def remove(self, request_id: str) -> None:
        """Stop tracking (request finished or cancelled). Unknown ids are ignored."""
        current = self._state.pop(request_id, None)
        if current is not None:
            self._forget(current)
            self._maybe_compact()

    def reschedule(self, request_id: str, new_due: date) -> None:
        """Move the due date (extension, pause). A new due date re-arms every alert.

        Unknown ids raise: rescheduling something never added is a caller bug.
        """
        current = self._state.get(request_id)
        if current is None:
            raise DomainError(f"request {request_id!r} is not tracked")
        due_ord = new_due.toordinal()
        if current[0] == due_ord:
            return
        self._forget(current)
        self._arm(sys.intern(request_id), due_ord, current[2], 0)
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
            due_ord, _, thresholds, stage = state
            last = len(thresholds)
            while stage < last and _fire_ordinal(due_ord, thresholds, stage + 1) <= today_ord:
                stage += 1
            fired.append(_firing(request_id, due_ord, thresholds, stage))
            self._state[request_id] = (due_ord, generation, thresholds, stage + 1)
            if stage < last:
                next_ord = _fire_ordinal(due_ord, thresholds, stage + 1)
                heapq.heappush(heap, (next_ord, generation, request_id))
        return fired

    def snapshot(self) -> list[SnapshotRow]:
        """Plain rows (JSON-friendly) from which `restore` rebuilds an equal index."""
        return [
            (rid, date.fromordinal(due).isoformat(), thresholds, stage)
            for rid, (due, _, thresholds, stage) in self._state.items()
        ]

    @classmethod
    def restore(cls, rows: Iterable[Sequence[object]]) -> DeadlineIndex:
        """Rebuild from `snapshot()` rows (tuples or the lists JSON turns them into)."""
        index = cls()
        for row in rows:
            request_id, due, thresholds, stage = row
            if not (
                isinstance(request_id, str)
                and isinstance(due, str)
                and isinstance(thresholds, Sequence)
                and isinstance(stage, int)
            ):
                raise DomainError(f"bad deadline index row: {row!r}")
            shared = index._intern_thresholds(int(t) for t in thresholds)
            if not 0 <= stage <= len(shared) + 1:
                raise DomainError(f"bad deadline index row: {row!r}")
            entry = index._set(
                sys.intern(request_id), date.fromisoformat(due).toordinal(), shared, stage
            )
            if entry is not None:
                index._heap.append(entry)
        heapq.heapify(index._heap)
        return index

    def _intern_thresholds(self, thresholds: Iterable[int]) -> tuple[int, ...]:
        key = tuple(sorted(set(thresholds), reverse=True))
        if any(t < 0 for t in key):
            raise DomainError(f"alert thresholds must be >= 0 days, got {key}")
        return self._thresholds.setdefault(key, key)

    def _arm(self, request_id: str, due_ord: int, thresholds: tuple[int, ...], stage: int) -> None:
        entry = self._set(request_id, due_ord, thresholds, stage)
        if entry is not None:
            heapq.heappush(self._heap, entry)

    def _set(
        self, request_id: str, due_ord: int, thresholds: tuple[int, ...], stage: int
    ) -> _Entry | None:
        """Record state; return the heap entry to push, if a firing is still pending."""
        self._generation += 1
        generation = self._generation
        self._state[request_id] = (due_ord, generation, thresholds, stage)
        if stage > len(thresholds):
            return None
        return (_fire_ordinal(due_ord, thresholds, stage), generation, request_id)

    def _forget(self, state: _State) -> None:
        _, _, thresholds, stage = state
        if stage <= len(thresholds):
            self._stale += 1

    def _maybe_compact(self) -> None:
        if self._stale <= 1024 or self._stale <= len(self._state):
            return
        self._heap = [
            (_fire_ordinal(due, thresholds, stage), generation, rid)
            for rid, (due, generation, thresholds, stage) in self._state.items()
            if stage <= len(thresholds)
        ]
        heapq.heapify(self._heap)
        self._stale = 0


def _fire_ordinal(due_ord: int, thresholds: tuple[int, ...], stage: int) -> int:
    return due_ord - thresholds[stage] if stage < len(thresholds) else due_ord + 1


def _firing(request_id: str, due_ord: int, thresholds: tuple[int, ...], stage: int) -> Firing:
    due = date.fromordinal(due_ord)
    if stage < len(thresholds):
        return Firing(request_id, AlertKind.deadline_approaching, due, thresholds[stage], stage)
    return Firing(request_id, AlertKind.deadline_breached, due, None, stage)
