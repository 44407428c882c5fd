"""The DPO's caseload: the open requests, filtered and ordered by what is due first.

Pure. Each worker lists the open requests of the partitions it owns from its schedule
(``privops.core.schedule.Schedule.open_requests``: no record is read), filtered here;
the worker the DPO asked merges every worker's part (``merged``). Entries carry the
pseudonymous subject reference, never the subject id: ``privops request status ID``
shows the rest of a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
        if kind is not None and kind not in RequestType.__members__:
            raise ValueError(f"type must be one of {', '.join(t.value for t in RequestType)}")
        return cls(
            request_type=RequestType(kind) if kind is not None else None,
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
    if not raw.isdecimal() or not low <= int(raw) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


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


def merged(parts: Iterable[Iterable[dict[str, Any]]], *, limit: int) -> dict[str, Any]:
    """Every worker's entries as one list, what is due first (no due date last), each
    request once (a partition reported twice while it moved), at most ``limit``."""
    unique = {e["request_id"]: e for part in parts for e in part}
    ordered = sorted(
        unique.values(),
        key=lambda e: (e["due_on"] is None, e["due_on"] or "", e["request_id"]),
    )
    return {"requests": ordered[:limit], "total": len(ordered)}
