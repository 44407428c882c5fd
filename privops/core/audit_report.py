"""The accountability report: how rights requests were handled over a period, read from
the audit trail alone (``privops audit report``).

UK GDPR Art. 5(2) asks the controller to be able to show it complies; the ICO's
accountability framework asks for records of how many requests came, of what kind, how
long they took and how many missed their time limit. privops' own tables forget a
finished request once its kept time ends (``request_records``), while
``privacy.audit`` keeps every step for ten years, pseudonymously: so the report is built
from the audit steps, and holds no personal data (counts, types, states, days).

Pure: ``ReportBuilder.add`` takes each audit event as a scan reads it (partition by
partition, each in log order; a request's steps are on its own chain, so in order), and
keeps only the requests received in the period (memory grows with the period's
requests, not the topic's ten years). A request counts in the period it was received
(the receipt date its ``request_received`` step gives; a step written before it did, by
its UK date), with whatever happened to it since: one received in March and closed in
April is March's. The follow-up erasures privops issues itself are counted apart, not
as requests received. "Late" is a breached deadline, as the worker alerted it on the
legal clock; days to close run from the day received to the day closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from privops.core.clock import UK
from privops.core.records import AuditEvent
from privops.core.request import FOLLOWUP_ACTOR
from privops.core.response_first import RELEASED
from privops.core.ticks import TickKind
from privops.core.timelimits import EXTENSION_WITHDRAWN
from privops.core.vocab import TERMINAL_STATES, RefusalGround, RequestState
from privops.core.workflow import received_of

FOLLOWUP_STEP: Final = "followup_scheduled"
"""``request_received``'s ``after`` on a parent's chain when it schedules a follow-up
erasure: not a request received (the follow-up has its own ``request_received``)."""

CLOSED_STATES: Final = tuple(s.value for s in RequestState if s in TERMINAL_STATES)
_TERMINAL: Final = frozenset(CLOSED_STATES)
REFUSAL_FIGURES: Final = (
    *(f"refused_{g.value}" for g in RefusalGround),
    "refused_ground_unrecorded",
)
"""The refused requests by ground (``request_refused`` steps, from 0.37); those refused
before a ground was recorded are ``refused_ground_unrecorded``."""


def app_id_of(chain: str) -> str:
    """The deployment (Faust app id) whose worker wrote a chain: its namespace."""
    namespace, sep, _ = chain.partition("/")
    return namespace if sep else "-"


@dataclass(slots=True)
class _Handled:
    """One request received in the period, as its audit steps tell it."""

    request_type: str
    received_on: date
    closed_at: datetime | None = None
    state: str | None = None
    breached: bool = False
    extended: bool = False
    withheld: bool = False
    refused_on: str | None = None
    unmapped: bool = False
    waited: bool = False
    released: bool = False


@dataclass
class ReportBuilder:
    """Fed every audit event; ``report()`` says how the period's requests went."""

    start: date
    end: date
    chain_prefix: str = ""
    _requests: dict[tuple[str, str], _Handled] = field(default_factory=dict)
    _followups: set[tuple[str, str]] = field(default_factory=set)
    _elsewhere: set[str] = field(default_factory=set)
    _app_ids: set[str] = field(default_factory=set)

    def add(self, event: AuditEvent) -> None:
        if event.request_id is None:
            return
        if not event.chain.startswith(self.chain_prefix):
            if event.action == "request_received":
                self._elsewhere.add(app_id_of(event.chain))  # a wrong prefix, told
            return
        key = (app_id_of(event.chain), event.request_id)
        if event.action == "request_received":
            self._received(key, event)
            return
        found = self._requests.get(key)
        if found is not None:
            _took(found, event)

    def _received(self, key: tuple[str, str], event: AuditEvent) -> None:
        if event.after == FOLLOWUP_STEP:
            return
        kind, received = received_of(event.reason)
        if received is None:  # written before the step gave the receipt date
            received = event.occurred_at.astimezone(UK).date()
        if not self.start <= received <= self.end:
            return
        self._app_ids.add(key[0])
        if event.actor == FOLLOWUP_ACTOR:
            self._followups.add(key)  # once, however often a replay audits it
            return
        self._requests.setdefault(key, _Handled(kind, received))

    def report(self) -> dict[str, Any]:
        by_type: dict[str, list[_Handled]] = {}
        for found in self._requests.values():
            by_type.setdefault(found.request_type, []).append(found)
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "app_ids": sorted(self._app_ids),
            "by_type": [
                {"request_type": kind, **_figures(found)} for kind, found in sorted(by_type.items())
            ],
            "total": _figures(list(self._requests.values())),
            "followup_erasures": len(self._followups),
            # The access responses left for the DPO's review (alert
            # PrivopsAccessResponseForReview): request ids, no personal data.
            "withheld_requests": sorted(k[1] for k, h in self._requests.items() if h.withheld),
            # Access responses that told a category the data map does not list for the
            # system that holds it (alert PrivopsDataMapBehind): the map and the record of
            # processing to bring up to date. Request ids, no personal data.
            "unmapped_requests": sorted(k[1] for k, h in self._requests.items() if h.unmapped),
            "other_app_ids": sorted(self._elsewhere - self._app_ids),
        }


def _took(found: _Handled, event: AuditEvent) -> None:
    """What one of a received request's later steps says of it."""
    if event.action == "request_transitioned" and event.after in _TERMINAL:
        if found.closed_at is None:  # the first closing (a replayed step moves nothing)
            found.closed_at, found.state = event.occurred_at, event.after
    elif event.action == "deadline_alert" and event.after == TickKind.deadline_breached:
        found.breached = True
    elif event.action == "deadline_extended":
        # One the law did not allow after all (it came too late once a pause counted)
        # is withdrawn by a step of the same action saying so.
        found.extended = not (event.reason or "").startswith(EXTENSION_WITHDRAWN)
    elif event.action == "access_withheld":
        found.withheld = True
    elif event.action == "request_refused":
        found.refused_on = event.after
    elif event.action == "categories_not_mapped":
        found.unmapped = True
    elif event.action == "erasure_waiting":
        found.waited = True
    elif event.action == "erasure_resumed" and event.reason == RELEASED:
        found.released = True


def _figures(handled: list[_Handled]) -> dict[str, Any]:
    closed = [h for h in handled if h.closed_at is not None]
    days = sorted(_days(h) for h in closed)
    return {
        "received": len(handled),
        "closed": len(closed),
        "open": len(handled) - len(closed),
        **{state: sum(1 for h in closed if h.state == state) for state in CLOSED_STATES},
        **_refusals([h for h in closed if h.state == RequestState.refused]),
        "late": sum(1 for h in handled if h.breached),
        "extended": sum(1 for h in handled if h.extended),
        "withheld_for_review": sum(1 for h in handled if h.withheld),
        # Erasures that waited for the subject's access or portability response (from
        # 0.42), and those of them the DPO released before their day (erase-now).
        "waited_for_response": sum(1 for h in handled if h.waited),
        "released_by_dpo": sum(1 for h in handled if h.released),
        "days_to_close": {
            "median": _rank(days, 0.5),
            "p90": _rank(days, 0.9),
            "max": days[-1] if days else None,
        },
    }


def _refusals(refused: list[_Handled]) -> dict[str, int]:
    counts = dict.fromkeys(REFUSAL_FIGURES, 0)
    for h in refused:
        name = f"refused_{h.refused_on}"
        counts[name if h.refused_on and name in counts else "refused_ground_unrecorded"] += 1
    return counts


def _days(handled: _Handled) -> int:
    """Calendar days from the day it was received to the day it closed (UK dates)."""
    assert handled.closed_at is not None
    return (handled.closed_at.astimezone(UK).date() - handled.received_on).days


def _rank(ordered: list[int], q: float) -> int | None:
    """The nearest-rank ``q`` quantile of ``ordered`` (one of its values), None if empty."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
