"""The DPO's caseload: the open requests, filtered and ordered by what is due first.

Pure. Each worker lists the open requests of the partitions it owns from its schedule
(``privops.core.schedule.Schedule``: no record is read) as a ``Part``: how many match,
and only the first ``limit`` of them, so a worker with a million open requests sends a
page, not the million. The worker the DPO asked merges every worker's part
(``merged``), and only when the parts cover every partition exactly once: two workers
reporting one partition (a rebalance under way) may disagree about its requests, and a
missing one would hide requests from the DPO. Entries carry the pseudonymous subject
reference, never the subject id: ``privops request status ID`` shows the rest.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from privops.core.deadlines import days_left
from privops.core.schedule import OpenRequest
from privops.core.vocab import RequestType

DEFAULT_LIMIT: Final = 500
MAX_LIMIT: Final = 10_000
MAX_DUE_WITHIN: Final = 3_660


@dataclass(frozen=True, slots=True)
class Filter:
    """Which open requests to list: of one type, due within some days (overdue
    included; a request with no clock running has no due date and is left out), and how
    many at most."""

    request_type: RequestType | None = None
    due_within: int | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filter:
        """From the HTTP query (``type``, ``due_within``, ``limit``); ``ValueError``
        saying what to fix."""
        unknown = sorted(set(query) - {"type", "due_within", "limit"})
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}: type, due_within, limit")
        kind = query.get("type")
        try:
            request_type = RequestType(kind) if kind is not None else None
        except ValueError:
            choices = ", ".join(t.value for t in RequestType)
            raise ValueError(f"type must be one of {choices}") from None
        return cls(
            request_type=request_type,
            due_within=_number(query, "due_within", 0, MAX_DUE_WITHIN),
            limit=_number(query, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT,
        )

    def matches(self, found: OpenRequest, today: date) -> bool:
        if self.request_type is not None and found.request_type != self.request_type.value:
            return False
        if self.due_within is None:
            return True
        return found.due_on is not None and days_left(found.due_on, today) <= self.due_within


def _number(query: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.isdecimal() or len(raw) > 6 or not low <= int(raw) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {raw[:20]!r}")
    return int(raw)


def _due_first(found: OpenRequest) -> tuple[bool, date, str]:
    return (found.due_on is None, found.due_on or date.max, found.request_id)


@dataclass
class Selection:
    """One worker's matching open requests, fed a slice at a time: how many match, and
    the first ``wanted.limit`` of them, due first (memory bounded by the limit)."""

    wanted: Filter
    today: date
    total: int = 0
    _kept: list[OpenRequest] = field(default_factory=list)

    def add(self, found: Iterable[OpenRequest]) -> None:
        for each in found:
            if self.wanted.matches(each, self.today):
                self.total += 1
                self._kept.append(each)
        if len(self._kept) > 2 * self.wanted.limit:
            self._kept = heapq.nsmallest(self.wanted.limit, self._kept, key=_due_first)

    def first(self) -> list[OpenRequest]:
        return heapq.nsmallest(self.wanted.limit, self._kept, key=_due_first)


def entry(found: OpenRequest, subject_ref: str, today: date) -> dict[str, Any]:
    """One listed request, as JSON."""
    return {
        "request_id": found.request_id,
        "request_type": found.request_type,
        "state": found.state,
        "subject_ref": subject_ref,
        "due_on": found.due_on.isoformat() if found.due_on else None,
        "days_left": days_left(found.due_on, today) if found.due_on else None,
        "waiting_on": list(found.waiting_on),
    }


_ENTRY_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "request_id": (str,),
    "request_type": (str,),
    "state": (str,),
    "subject_ref": (str,),
    "due_on": (str, type(None)),
    "days_left": (int, type(None)),
    "waiting_on": (list,),
}


@dataclass(frozen=True, slots=True)
class Part:
    """What one worker answers for the partitions it owns."""

    partitions: tuple[int, ...]
    total: int
    requests: tuple[dict[str, Any], ...]

    def json(self) -> dict[str, Any]:
        return {
            "part": True,
            "partitions": list(self.partitions),
            "total": self.total,
            "requests": list(self.requests),
        }

    @classmethod
    def parse(cls, body: Any) -> Part:
        """Another worker's answer; ``ValueError`` naming what is wrong with it."""
        if not isinstance(body, dict) or body.get("part") is not True:
            raise ValueError("not a part of the list")
        partitions, total, requests = (
            body.get("partitions"),
            body.get("total"),
            body.get("requests"),
        )
        if not isinstance(partitions, list) or not all(type(p) is int for p in partitions):
            raise ValueError("partitions is not a list of numbers")
        if type(total) is not int or not isinstance(requests, list) or total < len(requests):
            raise ValueError("total and requests do not agree")
        for item in requests:
            if not isinstance(item, dict) or any(
                not isinstance(item.get(k), kinds) for k, kinds in _ENTRY_TYPES.items()
            ):
                raise ValueError("an entry is malformed")
        return cls(tuple(partitions), total, tuple(requests))


def merged(parts: Sequence[Part], *, partitions: int, limit: int) -> dict[str, Any] | None:
    """Every worker's part as one list, due first (no due date last), at most
    ``limit``; None unless the parts cover each of the ``partitions`` exactly once."""
    owned = sorted(p for part in parts for p in part.partitions)
    if owned != list(range(partitions)):
        return None
    ordered = heapq.nsmallest(
        limit,
        (e for part in parts for e in part.requests),
        key=lambda e: (e["due_on"] is None, e["due_on"] or "", e["request_id"]),
    )
    return {"requests": ordered, "total": sum(part.total for part in parts)}
