"""The erasure plan: per system, what to erase and what to keep and why (Art. 17(3)).

Pure: the data map, the subject's facts and the active legal holds go in, a plan comes
out; the worker turns it into tasks, follow-ups and Art. 19 notifications. Everything
without a ground to keep it is erased. A category kept for a known time gets a
follow-up erasure on the day its retention ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from privops.core.datamap import DataMap, InvestigationHold, Recipient, RetentionCondition
from privops.core.errors import DomainError
from privops.core.vocab import Category, System


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LegalHold(_Model):
    hold_id: str = Field(min_length=1)
    subject_id: str = Field(min_length=1)
    categories: tuple[Category, ...] = Field(min_length=1)
    reason: str = Field(min_length=1)
    placed_at: AwareDatetime
    released_at: AwareDatetime | None = None

    def active_at(self, now: datetime) -> bool:
        return self.placed_at <= now and (self.released_at is None or self.released_at > now)


class SubjectFacts(_Model):
    """What the systems know about the subject that decides retention."""

    # Latest invoice or payment date: the financial-records period counts from it.
    latest_financial_record_at: AwareDatetime | None = None
    open_credit_account: bool = False
    open_debt: bool = False
    # When the last credit account and debt were closed and settled.
    credit_closed_at: AwareDatetime | None = None
    open_investigation_ids: tuple[str, ...] = ()
    # When the latest investigation involving the subject's footage concluded.
    investigation_closed_at: AwareDatetime | None = None


class Retained(_Model):
    category: Category
    ground: str
    until: AwareDatetime | None
    reason: str


class SystemInstruction(_Model):
    system: System
    erase: tuple[Category, ...]
    keep: tuple[Retained, ...]


class Followup(_Model):
    system: System
    categories: tuple[Category, ...]
    due_at: AwareDatetime


class ErasurePlan(_Model):
    subject_id: str
    planned_at: AwareDatetime
    instructions: tuple[SystemInstruction, ...]
    followups: tuple[Followup, ...]

    def for_system(self, system: System) -> SystemInstruction | None:
        return next((i for i in self.instructions if i.system is system), None)

    @property
    def erased_categories(self) -> frozenset[Category]:
        return frozenset(c for i in self.instructions for c in i.erase)

    @property
    def retained(self) -> tuple[Retained, ...]:
        return tuple(r for i in self.instructions for r in i.keep)

    @property
    def complete(self) -> bool:
        """True when nothing is kept: the request can end completed, not partially_completed."""
        return not self.retained


def plan_erasure(
    subject_id: str,
    datamap: DataMap,
    holdings: dict[System, set[Category]] | None,
    legal_holds: list[LegalHold],
    facts: SubjectFacts,
    now: datetime,
) -> ErasurePlan:
    """Decide, per system holding the subject's data, what to erase and what to keep."""
    if now.tzinfo is None:
        raise DomainError("plan_erasure: now must be timezone-aware")
    if holdings is None:
        holdings = datamap.holdings()
    unknown = sorted(s for s in holdings if s not in datamap.systems)
    if unknown:
        raise DomainError(f"plan_erasure: systems not in the data map: {unknown}")
    holds = [h for h in legal_holds if h.subject_id == subject_id and h.active_at(now)]

    instructions: list[SystemInstruction] = []
    followups: list[Followup] = []
    for system in System:
        held = holdings.get(system)
        if not held:
            continue
        erase: list[Category] = []
        keep: list[Retained] = []
        for category in Category:
            if category not in held:
                continue
            kept = _retention(category, datamap, holds, facts, now)
            if kept is None:
                erase.append(category)
            else:
                keep.append(kept)
        instructions.append(SystemInstruction(system=system, erase=tuple(erase), keep=tuple(keep)))
        followups.extend(_followups(system, keep))
    return ErasurePlan(
        subject_id=subject_id,
        planned_at=now,
        instructions=tuple(instructions),
        followups=tuple(followups),
    )


def _retention(
    category: Category,
    datamap: DataMap,
    holds: list[LegalHold],
    facts: SubjectFacts,
    now: datetime,
) -> Retained | None:
    """The ground to keep `category`, or None to erase it.

    Where several grounds apply the one without an end date wins, else the latest end.
    """
    rule = datamap.retention_for(category)
    grounds: list[Retained] = []

    for hold in holds:
        if category in hold.categories:
            grounds.append(
                Retained(
                    category=category,
                    ground=f"legal_claims: legal hold {hold.hold_id} (Art. 17(3)(e))",
                    until=None,
                    reason=hold.reason,
                )
            )

    credit_open = facts.open_credit_account or facts.open_debt
    account_bound = (
        rule.kept_while_account_or_debt_open
        or rule.condition is RetentionCondition.while_account_or_debt_open
    )
    if account_bound and credit_open:
        open_things = [
            name
            for name, is_open in (
                ("credit account", facts.open_credit_account),
                ("debt", facts.open_debt),
            )
            if is_open
        ]
        what = " and ".join(open_things)
        grounds.append(
            Retained(
                category=category,
                ground="legal_claims: open credit account or debt (Art. 17(3)(e))",
                until=None,
                reason=f"{what} open",
            )
        )
    if (
        rule.condition is RetentionCondition.while_account_or_debt_open
        and not credit_open
        and facts.credit_closed_at is not None
        and rule.period_days is not None
    ):
        until = facts.credit_closed_at + timedelta(days=rule.period_days)
        if until > now:
            grounds.append(
                Retained(
                    category=category,
                    ground=rule.ground,
                    until=until,
                    reason=f"account and debt closed {facts.credit_closed_at.date().isoformat()}",
                )
            )

    if isinstance(rule.condition, InvestigationHold):
        if facts.open_investigation_ids:
            grounds.append(
                Retained(
                    category=category,
                    ground="legal_claims: investigation hold (Art. 17(3)(e))",
                    until=None,
                    reason="open investigation " + ", ".join(sorted(facts.open_investigation_ids)),
                )
            )
        elif facts.investigation_closed_at is not None:
            days = rule.condition.investigation_hold_plus_days
            until = facts.investigation_closed_at + timedelta(days=days)
            if until > now:
                closed = facts.investigation_closed_at.date().isoformat()
                grounds.append(
                    Retained(
                        category=category,
                        ground="legal_claims: investigation hold (Art. 17(3)(e))",
                        until=until,
                        reason=f"investigation concluded {closed}; kept {days} days after",
                    )
                )

    if (
        rule.overrides_erasure
        and rule.period_days is not None
        and facts.latest_financial_record_at is not None
    ):
        until = facts.latest_financial_record_at + timedelta(days=rule.period_days)
        if until > now:
            recorded = facts.latest_financial_record_at.date().isoformat()
            grounds.append(
                Retained(
                    category=category,
                    ground=rule.ground,
                    until=until,
                    reason=f"financial record dated {recorded}",
                )
            )

    if not grounds:
        return None
    open_ended = [g for g in grounds if g.until is None]
    if open_ended:
        return open_ended[0]
    return max(grounds, key=lambda g: g.until or now)


def _followups(system: System, keep: list[Retained]) -> list[Followup]:
    by_due: dict[datetime, list[Category]] = {}
    for retained in keep:
        if retained.until is not None:
            by_due.setdefault(retained.until, []).append(retained.category)
    return [
        Followup(system=system, categories=tuple(cats), due_at=due)
        for due, cats in sorted(by_due.items())
    ]


def recipients_to_notify(datamap: DataMap, categories: Iterable[Category]) -> list[Recipient]:
    """Recipients that received any of `categories` and must be told (Art. 19)."""
    return [r for r in datamap.recipients_of(categories) if r.notify_on_rights_requests]
