"""The erasure plan: per system, what to erase and what to keep and why (Art. 17(3)).

Pure: the data map, the subject's facts and the active legal holds go in, a plan comes
out; the worker turns it into tasks, follow-ups and Art. 19 notifications. Everything
without a ground to keep it is erased. A category kept for a known time gets a
follow-up erasure on the day its retention ends. Financial records run from the end of
the company's financial year (the data map's organisation.financial_year_end), not from
the invoice date, so they are never erased up to eleven months early.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from privops.core.clock import UK
from privops.core.datamap import (
    DataMap,
    InvestigationHold,
    Organisation,
    RetentionAnchor,
    RetentionCondition,
    RetentionRule,
)
from privops.core.errors import DomainError
from privops.core.holds import LegalHold as LegalHold  # re-exported: erasure plans take holds
from privops.core.vocab import Category, System


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


MAX_REFS_PER_RECIPIENT: Final = 16
"""References kept per recipient; a recipient's count is bounded by the data map."""


class Disclosure(_Model):
    """What one recipient of the data map received, under one of its own references."""

    recipient: str
    # The recipient's own reference for the subject (search id, account number).
    recipient_ref: str | None = None
    categories: tuple[Category, ...]
    first_at: AwareDatetime
    last_at: AwareDatetime

    @field_validator("categories")
    @classmethod
    def _canonical(cls, value: tuple[Category, ...]) -> tuple[Category, ...]:
        """Vocabulary order without repeats, so equal disclosures compare equal."""
        return tuple(c for c in Category if c in value)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.recipient, self.recipient_ref)

    def merge(self, other: Disclosure) -> Disclosure:
        """Both disclosures as one entry: every category, the first and the last time."""
        received = {*self.categories, *other.categories}
        return self.model_copy(
            update={
                "categories": self._canonical(tuple(received)),
                "first_at": min(self.first_at, other.first_at),
                "last_at": max(self.last_at, other.last_at),
            }
        )


def _add(entries: dict[tuple[str, str | None], Disclosure], disclosure: Disclosure) -> None:
    known = entries.get(disclosure.key)
    entries[disclosure.key] = known.merge(disclosure) if known else disclosure


# Closed investigation ids remembered per subject (a late InvestigationOpened of one
# forgotten past this opens it again: footage kept longer, never erased early).
MAX_CLOSED_INVESTIGATIONS: Final = 64

MAX_OPEN_INVESTIGATIONS: Final = 64
"""Open investigation ids listed per subject. Before, the list grew with every id a
system sent, until the subject's facts were a record Kafka refuses (review, session 25).
One more opened while this many are listed is not listed, but that an investigation is
open is kept (``SubjectFacts.unlisted_investigation_open``): footage is never erased
while one may be open."""


class SubjectFacts(_Model):
    """What the systems know about the subject that decides retention."""

    # Latest invoice or payment date: the financial-records period counts from the end
    # of the financial year that contains it.
    latest_financial_record_at: AwareDatetime | None = None
    open_credit_account: bool = False
    open_debt: bool = False
    # When the last credit account and debt were closed and settled.
    credit_closed_at: AwareDatetime | None = None
    # When the balance event the three fields above come from happened: an older one,
    # arriving late, changes nothing (events arrive out of order).
    balance_at: AwareDatetime | None = None
    open_investigation_ids: tuple[str, ...] = ()
    # An investigation was opened while MAX_OPEN_INVESTIGATIONS were listed: its id is
    # not kept, so no close can be matched to it, and the footage is kept with no end
    # date from then on. Safe side: a subject with 64 investigations open at once is a
    # system misbehaving, and erasing evidence under investigation cannot be undone.
    unlisted_investigation_open: bool = False
    # Investigations seen closed and when, oldest first (at most
    # MAX_CLOSED_INVESTIGATIONS): an InvestigationOpened from before that close, arriving
    # after it, does not open it again; one from after it (a reopening) does.
    closed_investigations: tuple[tuple[str, AwareDatetime], ...] = ()
    # When each listed open investigation was last opened (from 0.44; one opened before
    # has none): a close from before a reopening, arriving after it, does not close it.
    # Left out of a stored value while empty, so an earlier release reads it.
    opened_investigations: tuple[tuple[str, AwareDatetime], ...] = Field(
        default=(), exclude_if=lambda value: not value
    )
    # When the latest investigation involving the subject's footage concluded.
    investigation_closed_at: AwareDatetime | None = None
    # Who actually received the subject's data (Art. 19), sorted by recipient and ref.
    disclosures: tuple[Disclosure, ...] = ()

    def disclosed(self, disclosure: Disclosure) -> SubjectFacts:
        """These facts with one more disclosure; `self` itself if it adds nothing.

        One entry per recipient and reference, not per event: a payment processor is sent
        data with every card payment, so per-event entries would grow without end, and a
        redelivered disclosure merges into the entry it made (idempotent without keeping
        every disclosure id). Past MAX_REFS_PER_RECIPIENT references the least recently
        used folds into the recipient's entry without a reference: the recipient is still
        told about every category it received, only that old reference is dropped.
        """
        entries = {d.key: d for d in self.disclosures}
        _add(entries, disclosure)
        name = disclosure.recipient
        refs = [d for d in entries.values() if d.recipient == name and d.recipient_ref]
        if len(refs) > MAX_REFS_PER_RECIPIENT:
            oldest = min(refs, key=lambda d: (d.last_at, d.recipient_ref or ""))
            del entries[oldest.key]
            _add(entries, oldest.model_copy(update={"recipient_ref": None}))
        merged = tuple(entries[k] for k in sorted(entries, key=lambda k: (k[0], k[1] or "")))
        if merged == self.disclosures:
            return self
        return self.model_copy(update={"disclosures": merged})


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


_CATEGORY_ORDER: Final = {category: n for n, category in enumerate(Category)}


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
    holds = active_holds(subject_id, legal_holds, now)

    instructions: list[SystemInstruction] = []
    followups: list[Followup] = []
    for system in System:
        held = holdings.get(system)
        if not held:
            continue
        erase: list[Category] = []
        keep: list[Retained] = []
        for category in sorted(held, key=_CATEGORY_ORDER.__getitem__):  # the enum's order
            kept = retention_of(category, datamap, holds, facts, now)
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


def retention_of(
    category: Category,
    datamap: DataMap,
    holds: list[LegalHold],
    facts: SubjectFacts,
    now: datetime,
) -> Retained | None:
    """The ground to keep `category` (``holds``: the subject's ``active_holds``), or
    None to erase it.

    Where several grounds apply the one without an end date wins, else the latest end.
    """
    rule = datamap.retention_for(category)
    grounds = [
        *_hold_grounds(category, holds),
        *_credit_grounds(category, rule, facts),
        *_investigation_grounds(category, rule, facts),
        *_financial_grounds(category, rule, facts, datamap.organisation),
    ]
    grounds = [g for g in grounds if g.until is None or g.until > now]
    if not grounds:
        return None
    open_ended = [g for g in grounds if g.until is None]
    if open_ended:
        return open_ended[0]
    return max(grounds, key=lambda g: g.until or now)


def active_holds(
    subject_id: str, legal_holds: Iterable[LegalHold], now: datetime
) -> list[LegalHold]:
    """The subject's legal holds in force at ``now``."""
    return [h for h in legal_holds if h.subject_id == subject_id and h.active_at(now)]


def held(category: Category, holds: list[LegalHold]) -> Retained | None:
    """The legal hold that keeps ``category`` (of ``active_holds``), if one does."""
    return next(_hold_grounds(category, holds), None)


HOLD_GROUND: Final = "legal_claims: legal hold {hold_id} (Art. 17(3)(e))"
INVESTIGATION_GROUND: Final = "legal_claims: investigation hold (Art. 17(3)(e))"
LEGAL_CLAIMS_TOLD: Final = (
    "legal_claims: kept for the establishment, exercise or defence of legal claims (Art. 17(3)(e))"
)
"""How the subject's erasure notice words a category kept by a legal hold or an open or
recent investigation: the ground, never the hold's id nor that an investigation exists.
Either may be what a crime investigation needs kept from them (DPA 2018 Sch. 2 para. 2),
which the access response withholds for the DPO's review for the same reason; the DPO's
own views keep the full ground (review, session 33)."""


def told_ground(ground: str) -> str:
    """``ground`` as the subject is told it (LEGAL_CLAIMS_TOLD for a hold or an
    investigation, any other ground as it is)."""
    prefix = HOLD_GROUND.split("{", 1)[0]
    if ground.startswith(prefix) or ground == INVESTIGATION_GROUND:
        return LEGAL_CLAIMS_TOLD
    return ground


def _hold_grounds(category: Category, holds: list[LegalHold]) -> Iterator[Retained]:
    for hold in holds:
        if category in hold.categories:
            yield Retained(
                category=category,
                ground=HOLD_GROUND.format(hold_id=hold.hold_id),
                until=None,
                reason=hold.reason,
            )


def _credit_grounds(
    category: Category, rule: RetentionRule, facts: SubjectFacts
) -> Iterator[Retained]:
    credit_open = facts.open_credit_account or facts.open_debt
    while_open = rule.condition is RetentionCondition.while_account_or_debt_open
    if credit_open and (rule.kept_while_account_or_debt_open or while_open):
        open_things = [
            name
            for name, is_open in (
                ("credit account", facts.open_credit_account),
                ("debt", facts.open_debt),
            )
            if is_open
        ]
        yield Retained(
            category=category,
            ground=_open_credit_ground(facts.open_credit_account, facts.open_debt),
            until=None,
            reason=f"{' and '.join(open_things)} open",
        )
    elif while_open and facts.credit_closed_at is not None and rule.period_days is not None:
        yield Retained(
            category=category,
            ground=rule.ground,
            until=_after(facts.credit_closed_at, timedelta(days=rule.period_days)),
            reason=f"account and debt closed {facts.credit_closed_at.date().isoformat()}",
        )


OPEN_ACCOUNT_GROUND: Final = (
    "contract: an open credit account still needs it (Art. 6(1)(b); Art. 17(1)(a) does "
    "not apply while it is open)"
)
OPEN_DEBT_GROUND: Final = "legal_claims: a debt owed is recovered with it (Art. 17(3)(e))"


def _open_credit_ground(account: bool, debt: bool) -> str:
    """Why an open credit account or debt keeps data: a performing account is a
    contract that still needs it, not a legal claim; a debt owed is one. Before, both
    were told as legal claims (legal review, session 35)."""
    if account and debt:
        return (
            "contract and legal_claims: an open credit account still needs it, and a debt "
            "owed is recovered with it (Art. 6(1)(b), Art. 17(1)(a) and 17(3)(e))"
        )
    return OPEN_ACCOUNT_GROUND if account else OPEN_DEBT_GROUND


def _investigation_grounds(
    category: Category, rule: RetentionRule, facts: SubjectFacts
) -> Iterator[Retained]:
    if not isinstance(rule.condition, InvestigationHold):
        return
    ground = INVESTIGATION_GROUND
    if facts.open_investigation_ids or facts.unlisted_investigation_open:
        listed = sorted(facts.open_investigation_ids)
        if facts.unlisted_investigation_open:
            listed.append(f"others not listed (over {MAX_OPEN_INVESTIGATIONS} open at once)")
        yield Retained(
            category=category,
            ground=ground,
            until=None,
            reason="open investigation " + ", ".join(listed),
        )
    elif facts.investigation_closed_at is not None:
        days = rule.condition.investigation_hold_plus_days
        closed = facts.investigation_closed_at.date().isoformat()
        yield Retained(
            category=category,
            ground=ground,
            until=_after(facts.investigation_closed_at, timedelta(days=days)),
            reason=f"investigation concluded {closed}; kept {days} days after",
        )


def _financial_grounds(
    category: Category, rule: RetentionRule, facts: SubjectFacts, organisation: Organisation
) -> Iterator[Retained]:
    recorded_at = facts.latest_financial_record_at
    if not rule.overrides_erasure or recorded_at is None:
        return
    until = retention_end(rule, recorded_at, organisation)
    if until is not None:
        yield Retained(
            category=category,
            ground=rule.ground,
            until=until,
            reason=f"financial record dated {recorded_at.astimezone(UK).date().isoformat()}",
        )


def retention_end(
    rule: RetentionRule, anchor: datetime, organisation: Organisation
) -> datetime | None:
    """The first instant data kept under `rule` from `anchor` may go; None without a period.

    A period in days runs from the anchor's instant. A period in years, or one counted
    from the end of a financial year, runs in UK calendar days: the data is kept to the
    end of its last UK day (6 years from 31 March 2021 -> kept through 31 March 2027,
    erasable from 1 April 2027 00:00 UK time).
    """
    from_year_end = rule.period_from is RetentionAnchor.end_of_financial_year
    if rule.period_days is not None and not from_year_end:
        return _after(anchor, timedelta(days=rule.period_days))
    try:
        day = anchor.astimezone(UK).date()
        if from_year_end:
            day = organisation.financial_year_end_of(day)
        if rule.period_years is not None:
            last = _add_years(day, rule.period_years)
        elif rule.period_days is not None:
            last = day + timedelta(days=rule.period_days)
        else:
            return None
        return datetime.combine(last + timedelta(days=1), time(0), tzinfo=UK).astimezone(UTC)
    except (OverflowError, ValueError):
        return KEPT_TO_THE_END


KEPT_TO_THE_END: Final = datetime(9999, 12, 31, tzinfo=UTC)
"""Where a retention's end falls past the calendar (a fact dated near year 9999, which
ingest now refuses, kept from before): kept, and never a stop of the planner (review,
session 25: the date arithmetic raised, and the worker stopped on every restart)."""


def _after(moment: datetime, period: timedelta) -> datetime:
    try:
        return moment + period
    except OverflowError:
        return KEPT_TO_THE_END


def _add_years(day: date, years: int) -> date:
    """Same day `years` later; 29 February becomes 1 March (keeping a day longer, not shorter)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return date(day.year + years, 3, 1)


def _followups(system: System, keep: list[Retained]) -> list[Followup]:
    by_due: dict[datetime, list[Category]] = {}
    for retained in keep:
        if retained.until is not None:
            by_due.setdefault(retained.until, []).append(retained.category)
    return [
        Followup(system=system, categories=tuple(cats), due_at=due)
        for due, cats in sorted(by_due.items())
    ]


class RecipientNotice(_Model):
    """One Art. 19 notice: who to tell, about which affected categories, by its own refs."""

    recipient: str
    categories: tuple[Category, ...]
    recipient_refs: tuple[str, ...]


def recipients_to_notify(
    datamap: DataMap, categories: Iterable[Category], disclosures: Iterable[Disclosure]
) -> list[RecipientNotice]:
    """Recipients that actually received any of `categories` and must be told (Art. 19).

    Only disclosures count, never what the data map says a recipient may receive: a cash
    customer's erasure is no business of a credit reference agency. A recipient the data
    map exempts (notify_on_rights_requests: false, e.g. authorities) is not told; one the
    data map no longer lists is, since it still holds the data. Each notice carries the
    references the recipient knows the subject by, from the disclosures of the affected
    categories; order is the data map's, then unlisted recipients by name.
    """
    wanted = set(categories)
    listed = {recipient.name: recipient for recipient in datamap.recipients}
    affected: dict[str, tuple[set[Category], set[str]]] = {}
    for disclosure in disclosures:
        hit = wanted.intersection(disclosure.categories)
        spec = listed.get(disclosure.recipient)
        if not hit or (spec is not None and not spec.notify_on_rights_requests):
            continue
        cats, refs = affected.setdefault(disclosure.recipient, (set(), set()))
        cats |= hit
        if disclosure.recipient_ref:
            refs.add(disclosure.recipient_ref)
    rank = {name: n for n, name in enumerate(listed)}
    return [
        RecipientNotice(
            recipient=name,
            categories=tuple(c for c in Category if c in cats),
            recipient_refs=tuple(sorted(refs)),
        )
        for name, (cats, refs) in sorted(
            affected.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])
        )
    ]


def recipients_exempt(
    datamap: DataMap, categories: Iterable[Category], disclosures: Iterable[Disclosure]
) -> list[str]:
    """Recipients that received any of ``categories`` but the data map exempts from Art.
    19 notices (``notify_on_rights_requests: false``, e.g. authorities), in its order.
    Not told by privops: whether telling one could prejudice a crime investigation is
    weighed case by case (DPA 2018 Sch. 2 para. 2), so the DPO is asked to decide; Art.
    19 itself allows no standing exemption (legal review, session 33)."""
    wanted = set(categories)
    exempt = {r.name for r in datamap.recipients if not r.notify_on_rights_requests}
    hit = {d.recipient for d in disclosures if d.recipient in exempt and wanted & set(d.categories)}
    return [r.name for r in datamap.recipients if r.name in hit]
