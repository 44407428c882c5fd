"""Deletion by age: what the data map tells a system to delete once it is old enough.

privops issues no purge: each business system deletes its own records by age, from the
data map's retention rules counted from collection (``period_from: collected``: call
recordings after 90 days, footage after 30, ...; ``privops ropa`` lists them), and
skips what a legal hold keeps (``Connector.hold``) or its own hold keeps; and the
copies it made for access requests after the data map's ``access_exports`` days
(``export_limit``). A category
whose rule counts from anything else (the end of a financial year, an account's
closing) or has no period is never deleted by age: privops' erasure follow-ups see to
it. This module reads those rules into an :class:`AgeLimit` per category; the
reference store (``privops.connectors.reference.store``) shows how to apply them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from privops.core.clock import UK
from privops.core.datamap import (
    DataMap,
    InvestigationHold,
    Organisation,
    RetentionAnchor,
    RetentionRule,
)
from privops.core.erasure import retention_end
from privops.core.vocab import Category, System


@dataclass(frozen=True)
class AgeLimit:
    """One category's period from collection (its data map rule), with the organisation
    the rule's calendar is counted in."""

    category: Category
    rule: RetentionRule
    organisation: Organisation

    def cutoff(self, now: datetime) -> datetime:
        """Records collected before this instant are past their period at ``now``.

        A period in days runs from the instant of collection; one in years in UK
        calendar days, to the end of its last day (``erasure.retention_end``, the rule
        privops' own follow-ups keep to)."""
        if self.rule.period_days is not None:
            return now - timedelta(days=self.rule.period_days)
        years = self.rule.period_years or 0
        # From a day surely past (a year is at most 366 days), on to the first one whose
        # records are still kept at ``now``: a few steps.
        day = now.astimezone(UK).date() - timedelta(days=366 * years + 1)
        while self._ended(day, now):
            day += timedelta(days=1)
        return _start_of(day)

    def _ended(self, day: date, now: datetime) -> bool:
        end = retention_end(self.rule, _start_of(day), self.organisation)
        return end is not None and end <= now

    def concluded_cutoff(self, now: datetime) -> datetime | None:
        """A record kept for an investigation concluded before this instant is kept no
        longer (the rule's ``investigation_hold_plus_days``); None when the rule has no
        such condition. An open investigation always keeps it."""
        condition = self.rule.condition
        if not isinstance(condition, InvestigationHold):
            return None
        return now - timedelta(days=condition.investigation_hold_plus_days)


def age_limits(datamap: DataMap, system: System | None = None) -> dict[Category, AgeLimit]:
    """The categories deleted by age (of ``system``'s, when given), each with its limit."""
    held = None if system is None else set(datamap.categories_of(system))
    return {
        category: AgeLimit(category, rule, datamap.organisation)
        for category, rule in datamap.retention.items()
        if rule.period_from is RetentionAnchor.collected
        and rule.has_period
        and (held is None or category in held)
    }


def export_limit(datamap: DataMap) -> timedelta | None:
    """How long a system keeps a copy it made for an access request (the data map's
    ``access_exports``), from when it made it; None: until the subject's erasure. The
    copy is a plaintext duplicate of the subject's data (and a footage search's shows
    other people): it is no record to keep, and the response told the subject how long
    they have to fetch it."""
    days = datamap.access_exports.period_days
    return None if days is None else timedelta(days=days)


def _start_of(day: date) -> datetime:
    """The first instant of a UK calendar day, in UTC."""
    return datetime.combine(day, time(0), tzinfo=UK).astimezone(UTC)
