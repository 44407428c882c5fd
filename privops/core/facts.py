"""What business events and request directives mean for consent and for retention.

The ingest agent decodes a record and asks this module whether it may act on it
(`admit_ingest`: only the record types that belong on the topic it came from;
`source_may_seal`: only under keys its system may use) and what it means:
`consent_facts` (PECR and UK GDPR meaning of an upstream event), `updated_facts` (the
retention and disclosure inputs the erasure plan and Art. 19 notices need, each moved
only by a system that holds its category), `directive_fact` (a request's effect on the
subject) and `consent_state_record` (the compacted topic's view of a state). Keeping the
mapping here, pure, lets it be table-tested without Kafka.

Soft opt-in (PECR reg. 22(3)) arises only from a sale whose event says the opt-out was
offered and that marketing will be about similar products; silence on either means no
soft opt-in. It covers email and SMS only where the sale event carries the email address
or telephone number. A ticked opt-out box is a refusal on email and SMS. A ConsentGiven claiming
a soft opt-in is refused: any system may send one, and none can vouch for a sale.

Cookie-banner choices: the marketing-cookie choice becomes a subject-wide marker that
governs profiling for marketing; the analytics choice is not mapped (see
privops.core.consent.decision for why).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from privops.core import records as r
from privops.core.consent import ConsentEntry, ConsentFact, FactKind, SoftOptIn, SubjectConsent
from privops.core.datamap import DataMap, Grant
from privops.core.erasure import (
    MAX_CLOSED_INVESTIGATIONS,
    MAX_OPEN_INVESTIGATIONS,
    Disclosure,
    SubjectFacts,
)
from privops.core.errors import PrivopsError, WrongTopic
from privops.core.fieldcrypt import MAIN_SCOPE
from privops.core.identity import EMAIL, PHONE, IdentityMap
from privops.core.pii import looks_like_pii
from privops.core.shredding import retained_parts
from privops.core.topics import SUBJECT_DIRECTIVES, SUPPRESSION, events_topic
from privops.core.vocab import Category, Channel, ConsentStatus, LawfulBasis, Purpose, System

F = FactKind

SOFT_OPT_IN_CHANNELS: Final = (Channel.email, Channel.sms)
"""PECR reg. 22: a soft opt-in covers electronic mail (email and SMS), not calls or post;
each only when the sale collected its contact detail (`_sale_facts`)."""

SALE_SOFT_OPT_IN: Final = SoftOptIn(
    collected_in_sale_or_negotiation=True,
    own_similar_products=True,
    opt_out_offered=True,
)
"""The conditions a sale that gives a soft opt-in meets: all three (PECR reg. 22(3))."""


# --- which records belong on which topic --------------------------------------------------

IngestInput = r.UpstreamEvent | r.SubjectDirective | r.LegalHoldPlaced | r.LegalHoldReleased
"""What the ingest agent acts on."""

_DIRECTIVE_RECORDS: Final = (r.SubjectDirective, r.LegalHoldPlaced, r.LegalHoldReleased)
_SYSTEM_OF_EVENTS_TOPIC: Final = {events_topic(system): system for system in System}


def admit_ingest(topic: str, record: r.Record) -> IngestInput:
    """`record` if the ingest agent may act on it having read it from `topic`.

    Raises WrongTopic otherwise: upstream events only on their own system's
    `<system>.events`, directives and legal holds only on the internal directives topic.
    """
    name = type(record).__name__
    if topic == SUBJECT_DIRECTIVES:
        if isinstance(record, _DIRECTIVE_RECORDS):
            return record
        raise WrongTopic(f"{name} does not belong on {topic}")
    system = _SYSTEM_OF_EVENTS_TOPIC.get(topic)
    if system is None:
        raise WrongTopic(f"{topic} is not an ingest topic")
    if not isinstance(record, r.UpstreamEvent):
        raise WrongTopic(f"{name} does not belong on {topic}")
    if record.source is not system:
        raise WrongTopic(f"{name} from {record.source.value} published on {topic}")
    return record


MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far ahead of the worker's clock an event's ``occurred_at`` may be. The latest
event by occurred_at wins (DESIGN.md section 5) and retention counts from it, so one
dated ahead would outrank every real withdrawal until then (a grant dated 2099 never
withdrawn by a STOP; a system stamping UK summer time as UTC, an hour ahead, beating
the unsubscribe that followed), and one dated past year 9999's arithmetic stopped the
erasure planner (review, session 25). Systems' clocks are NTP-synchronised: minutes
of skew, not hours."""


EARLIEST_EVENT: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""No business event of this company is older: an earlier date is a system's default
(1970-01-01, the epoch) or a bug, not history (``too_far_back``)."""


def too_far_back(occurred_at: datetime) -> str | None:
    """Why an event dated ``occurred_at`` is no real date, or None. Taken as dated, an
    investigation closed "in 1970" made its footage erasable at once, and an unsubscribe
    "in 1970" lost, unaudited, to every grant (review, session 44)."""
    if occurred_at >= EARLIEST_EVENT:
        return None
    return (
        f"occurred_at is {occurred_at.date().isoformat()}, before "
        f"{EARLIEST_EVENT.date().isoformat()}: a default or a bug, not a date (check the "
        "system's clock and that it sets occurred_at)"
    )


def too_far_ahead(occurred_at: datetime, now: datetime) -> str | None:
    """Why an event dated ``occurred_at`` cannot be taken at ``now``, or None."""
    ahead = occurred_at - now
    if ahead <= MAX_CLOCK_SKEW:
        return None
    minutes = int(ahead.total_seconds() // 60)
    return (
        f"occurred_at is {minutes} minutes ahead of privops' clock (at most "
        f"{int(MAX_CLOCK_SKEW.total_seconds() // 60)} allowed): check the system's clock "
        "and that it stamps UTC"
    )


# --- directives ---------------------------------------------------------------------------


class DirectiveKind(StrEnum):
    """What a request asks of the subject's consent state (privops.internal.subject-directives)."""

    restricted = "restricted"
    restriction_lifted = "restriction_lifted"
    suppressed = "suppressed"
    objected = "objected"
    withdrawn = "withdrawn"
    # A rectified phone a system confirmed (from 0.44): the old number's screening ends.
    number_changed = "number_changed"


_DIRECTIVE_FACTS: Final[dict[DirectiveKind, FactKind]] = {
    DirectiveKind.restricted: F.restricted,
    DirectiveKind.restriction_lifted: F.restriction_lifted,
    DirectiveKind.suppressed: F.suppressed,
    DirectiveKind.objected: F.objected,
    DirectiveKind.withdrawn: F.withdrawn,
    DirectiveKind.number_changed: F.number_changed,
}


class UnknownDirectiveKind(PrivopsError):
    """A directive this worker does not understand: dead-lettered, never silently dropped."""


def directive_fact(directive: r.SubjectDirective) -> ConsentFact:
    """The consent fact a request's directive stands for.

    Raises UnknownDirectiveKind for a kind outside `DirectiveKind`, and pydantic's
    ValidationError for a purpose/channel the fact kind does not take.
    """
    try:
        kind = DirectiveKind(directive.kind)
    except ValueError:
        known = ", ".join(k.value for k in DirectiveKind)
        raise UnknownDirectiveKind(
            f"unknown directive kind {directive.kind!r} (known: {known})"
        ) from None
    return ConsentFact(
        event_id=directive.directive_id,
        occurred_at=directive.occurred_at,
        source=System.crm,
        kind=_DIRECTIVE_FACTS[kind],
        purpose=directive.purpose,
        channel=directive.channel,
        evidence=f"privacy.commands:{directive.request_id}",
    )


def recalled_suppression(subject_ref: str, at: datetime) -> ConsentFact:
    """The suppression of a subject the suppression list names (by ``subject_ref``) but
    whose consent state this worker does not have: one rebuilt under a new app id, whose
    tables never saw the erasure. Without it, an event of theirs carrying an identifier
    the erasure did not hash made them a fresh, unsuppressed state, and the key service a
    new key (review, session 26). Cited by the list, not by a request this worker cannot
    know; dated ``at`` (the input that met it), so a replay of the erasure's own, earlier
    directive takes its place (the earliest suppression marker is kept)."""
    return ConsentFact(
        event_id=f"suppression-list:{subject_ref}",
        occurred_at=at,
        source=System.crm,  # as a directive's: privops' own, no system's
        kind=F.suppressed,
        evidence=f"{SUPPRESSION}:{subject_ref}",
    )


# --- consent ------------------------------------------------------------------------------


class SoftOptInNotFromSale(PrivopsError, ValueError):
    """A ConsentGiven claiming a soft opt-in. DESIGN.md section 5: "a soft opt-in arises
    only from a sale or negotiation event that says the opt-out was offered"; any system
    may send a ConsentGiven and declare the conditions met, so before, a web form could
    make a soft opt-in no sale stood behind (review, session 25). A ValueError, so the
    ingest agent dead-letters it as it does a fact of an impossible shape."""


def consent_facts(
    event: r.UpstreamEvent, taken: Mapping[str, str] | None = None
) -> list[ConsentFact]:
    """The consent meaning of a business event (most events have none). ``taken``: the
    identifiers privops takes from it (``declared_identifiers``; default all it carries),
    the contact details a sale's soft opt-in may cover.

    Raises SoftOptInNotFromSale for a ConsentGiven on the soft opt-in basis, and
    pydantic's ValidationError for a fact of an impossible shape.
    """
    match event:
        case r.ConsentGiven():
            if event.basis is LawfulBasis.soft_opt_in:
                raise SoftOptInNotFromSale(
                    "a soft opt-in comes only from a sale or negotiation event (OrderPlaced, "
                    "QuoteRequested) saying the opt-out was offered; a ConsentGiven records "
                    "explicit consent only"
                )
            return [_fact(event, F.granted, event.purpose, event.channel, event.basis)]
        case r.ConsentWithdrawn():
            return [_fact(event, F.withdrawn, event.purpose, event.channel)]
        case r.UnsubscribeClicked():
            return [_fact(event, F.withdrawn, Purpose.marketing, Channel.email)]
        case r.StopReplyReceived():
            return [_fact(event, F.withdrawn, Purpose.marketing, Channel.sms)]
        case r.MarketingObjectionRecorded():
            return [_fact(event, F.objected)]
        case r.TpsStatusChecked():
            return [_fact(event, F.tps_listed if event.listed else F.tps_unlisted)]
        case r.TpsWaiverRecorded():
            return [_fact(event, F.tps_no_objection)]
        case r.OrderPlaced() | r.QuoteRequested():
            return _sale_facts(event, event.identifiers.present() if taken is None else taken)
        case r.CookieConsentRecorded():
            kind = F.marketing_cookies_accepted if event.marketing else F.marketing_cookies_refused
            return [_fact(event, kind)]
    return []


def grant_of(fact: ConsentFact) -> Grant | None:
    """The permission ``fact`` records (``Grant``), or None for a fact that only narrows
    contact, which any system may record."""
    match fact.kind:
        case F.granted:
            return Grant.soft_opt_in if fact.basis is LawfulBasis.soft_opt_in else Grant.consent
        case F.opted_back_in:
            return Grant.consent
        case F.tps_unlisted:
            return Grant.tps_screening
        case F.tps_no_objection:
            return Grant.tps_waiver
        case F.marketing_cookies_accepted:
            return Grant.marketing_cookies
    return None


def granted_facts(
    source: System, meaning: list[ConsentFact], datamap: DataMap
) -> tuple[list[ConsentFact], list[Grant]]:
    """Of ``meaning`` (an event's consent facts, ``consent_facts``), those ``source`` may
    record, and the permissions left out: a fact that widens contact is taken only from
    a system the data map lets record it (``SystemSpec.may_grant``); one that narrows it
    from every system.

    The topic proves which system wrote an event, not that it collects that permission:
    before, cctv's ``TpsStatusChecked(listed=false)`` made a TPS-listed number callable,
    and any system's ``ConsentGiven`` or sale opened a channel (review, session 44). The
    event's other facts (an opt-out box ticked) and its identifiers are taken as ever."""
    needed = [(fact, grant_of(fact)) for fact in meaning]
    if all(grant is None for _, grant in needed):
        return meaning, []
    spec = datamap.systems.get(source)
    allowed = spec.may_grant if spec is not None else frozenset()
    kept = [fact for fact, grant in needed if grant is None or grant in allowed]
    refused = sorted({g for _, g in needed if g is not None and g not in allowed})
    return (meaning, []) if not refused else (kept, refused)


def _sale_facts(
    event: r.OrderPlaced | r.QuoteRequested, taken: Mapping[str, str]
) -> list[ConsentFact]:
    """PECR reg. 22(3): details collected in a sale or the negotiations for one (a quote
    request: DESIGN.md section 5; before session 33 only a sale counted), similar
    products, opt-out offered.

    The soft opt-in covers only the contact details "obtained in the course of the
    sale": email for the email address the sale event carries, SMS for its telephone
    number, neither for a detail it lacks. Before, an order that collected only an email
    made SMS marketing lawful to a number the customer gave elsewhere (review, session
    27). Ticking the opt-out box is a refusal, honoured whatever else the event says, on
    both channels: a refusal needs no contact detail. A detail privops does not take
    from the event's system (``declared_identifiers``: a web shop's phone, where the data
    map says web knows no one by phone) is none the sale collected as far as privops
    knows: its channel is not granted (review, session 43).
    """
    if event.marketing_opt_out_ticked:
        return [
            _fact(event, F.withdrawn, Purpose.marketing, channel)
            for channel in SOFT_OPT_IN_CHANNELS
        ]
    if not (event.marketing_opt_out_offered and event.similar_products_marketing):
        return []
    soft = SALE_SOFT_OPT_IN
    return [
        _fact(event, F.granted, Purpose.marketing, channel, LawfulBasis.soft_opt_in, soft)
        for channel, detail in ((Channel.email, EMAIL), (Channel.sms, PHONE))
        if taken.get(detail)
    ]


def _fact(
    event: r.UpstreamEvent,
    kind: FactKind,
    purpose: Purpose | None = None,
    channel: Channel | None = None,
    basis: LawfulBasis = LawfulBasis.none,
    soft_opt_in: SoftOptIn | None = None,
) -> ConsentFact:
    event_id = fact_event_id(event.event_id)
    return ConsentFact(
        event_id=event_id,
        occurred_at=event.occurred_at,
        source=event.source,
        kind=kind,
        purpose=purpose,
        channel=channel,
        basis=basis,
        soft_opt_in=soft_opt_in,
        evidence=f"{event.source.value}.events:{type(event).__name__}:{event_id}",
    )


MAX_FACT_EVENT_ID: Final = 120
# The start of a phone number anywhere in an id, glued or not: 0, 44 or + (00 is a 0
# before one), then at least 8 more digits, the first not 0. Before, only UK numbers
# were found: "stop_+33612345678" was kept whole (review, session 35). A long run of
# digits that is no phone number (a timestamp) is digested too, harmlessly. One
# alternation with no upper bound is faster than the exact shapes it covers. Digits
# split by dashes are not looked for: "ORD-2025-000123" would be, and a UUID event id
# would cost four times as much ("0044-7700-900123" glued to a word is kept whole).
_GLUED_NUMBER: Final = re.compile(r"(?:\+|0|44)[1-9]\d{7}")


def fact_event_id(event_id: str) -> str:
    """The event id a consent fact remembers and cites: the system's own when it is a
    short reference; else a digest of it (same id, same digest, so a redelivery is still
    known). A STOP whose id was long, or held an ``@`` (the evidence must never hold an
    address), was dead-lettered and never applied (review, session 25). An id holding
    something shaped like a phone number (``sms-stop-07700900123``) was kept whole in the
    consent state, which an erasure keeps for ever (review, session 26); so was one glued
    to it (``stop_07700900123``), which ``looks_like_pii`` lets pass so that ids and
    hashes in audit text do (``_GLUED_NUMBER``).

    Both checks cost 0.1-0.6 µs together on ids of up to 40 characters (~1 µs at 120;
    the email search runs only on text with an ``@``, digested before it): no cheaper
    pre-check exists, counting digits costs more than the phone pattern itself."""
    if (
        len(event_id) <= MAX_FACT_EVENT_ID
        and "@" not in event_id
        and event_id.isprintable()
        and not looks_like_pii(event_id)
        and _GLUED_NUMBER.search(event_id) is None
    ):
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def number_change(
    before: IdentityMap | None, after: IdentityMap, event: r.UpstreamEvent
) -> ConsentFact | None:
    """The fact that the subject's telephone number changed with ``event`` (their
    latest number, by occurred_at, is another than before), or None: the number a TPS
    screening or a "do not object" notice concerned is no longer the one called."""
    return _fact(event, F.number_changed) if phone_replaced(before, after) else None


def phone_replaced(before: IdentityMap | None, after: IdentityMap) -> bool:
    """Whether the subject's latest phone in ``after`` is another than in ``before``: a
    TPS screening or "do not object" notice of the old one no longer holds."""
    old, new = (before.phone if before else None), after.phone
    return old is not None and new is not None and old.value != new.value


# --- retention facts and disclosures ------------------------------------------------------


class UndeclaredDisclosure(PrivopsError):
    """A disclosure the data map does not declare: to a recipient it does not list, or of
    categories that recipient is not declared to receive.

    Not recorded: Art. 19 notices, the Art. 15 answer and the record of processing all
    come from the data map, so a disclosure outside it is a gap the DPO must see (dead
    letter), not one to paper over.
    """

    reason: Final = "undeclared_disclosure"


def check_disclosure(datamap: DataMap, event: r.DataDisclosed) -> Disclosure:
    """The disclosure `event` reports, if the data map declares it; else UndeclaredDisclosure."""
    recipient = next((x for x in datamap.recipients if x.name == event.recipient), None)
    if recipient is None:
        # Never the name sent: it is the producer's text, and may be a person's (a
        # landlord, a solicitor), which the dead letter's error would carry where its
        # record's sealed fields do not go (review, session 35). The record holds it.
        declared = "; ".join(sorted(x.name for x in datamap.recipients))
        raise UndeclaredDisclosure(
            f"the recipient named ({len(event.recipient)} characters) is not in the data map "
            f"(its recipients: {declared})"
        )
    if not event.categories:
        raise UndeclaredDisclosure(f"disclosure to {event.recipient!r} names no category")
    undeclared = [c.value for c in event.categories if c not in recipient.categories]
    if undeclared:
        raise UndeclaredDisclosure(
            f"{event.recipient!r} is not declared to receive {', '.join(sorted(undeclared))}"
        )
    return Disclosure(
        recipient=event.recipient,
        recipient_ref=event.recipient_ref or None,
        categories=tuple(event.categories),
        first_at=event.occurred_at,
        last_at=event.occurred_at,
    )


FACT_CATEGORIES: Final[dict[type[r.UpstreamEvent], Category]] = {
    r.OrderPlaced: Category.purchases,
    r.PaymentRecorded: Category.payment,
    r.AccountBalanceChanged: Category.credit,
    r.InvestigationOpened: Category.cctv,
    r.InvestigationClosed: Category.cctv,
}
"""The category whose retention each fact-bearing event moves: only a system the data
map says holds it may move it (``foreign_fact``)."""


def foreign_fact(event: r.UpstreamEvent, datamap: DataMap) -> str | None:
    """Why ``event``'s retention fact is not taken (None: it is): a fact-bearing event
    from a system the data map does not say holds its category. The topic proves which
    system wrote an event, not that it may speak for another's data: before, web's
    InvestigationClosed closed cctv's investigation (its footage became erasable), any
    system's InvestigationOpened kept footage for ever, marketing's AccountBalanceChanged
    closed an open debt, and any OrderPlaced or PaymentRecorded stretched the six-year
    financial retention (review, session 34). Only the fact is left out: the rest of the
    event (a sale's opt-out, its identifiers) is taken as ever, since a dead letter lost
    a withdrawal with it (second review, session 34)."""
    category = FACT_CATEGORIES.get(type(event))
    if category is None:
        return None
    spec = datamap.systems.get(event.source)
    if spec is not None and category in spec.categories:
        return None
    return (
        f"{type(event).__name__} from {event.source.value}: the data map does not say "
        f"{event.source.value} holds {category.value} data, so its retention facts are "
        "not taken from it (the rest of the event is)"
    )


def declared_identifiers(
    event: r.UpstreamEvent, datamap: DataMap
) -> tuple[dict[str, str], list[str]]:
    """The identifiers ``event`` carries that privops takes, and the shared kinds (email,
    phone) it leaves out: those the data map does not say ``event``'s system knows
    subjects by. An email or phone is the subject's for every system: a task goes to a
    system that never met them with it, and an erasure puts it on the suppression list.
    Before, cctv (which knows people by camera only) or a mis-keyed event could make
    another person's email a subject's, sending their rows to the subject's access
    request and flagging their own events as an erased person's (review, session 43).
    The rest of the event is taken. A system-local id goes back to its own system only."""
    carried = event.identifiers.present()
    spec = datamap.systems.get(event.source)
    if spec is None:
        return carried, []
    left_out = [kind for kind in (EMAIL, PHONE) if kind in carried and kind not in spec.identifiers]
    if not left_out:
        return carried, []
    return {k: v for k, v in carried.items() if k not in left_out}, left_out


def source_may_seal(source: System, scope: str, datamap: DataMap) -> bool:
    """Whether ``source`` may seal its events' personal fields under a key of ``scope``:
    ``main``, or a retained scope of a category the data map says it holds (the key
    service's rule, ``shredding.system_may_ask``, without its date window: an event
    sealed under a key of that scope was written while it could be asked for).

    A retained key outlives an erasure while its category is kept, and the key service
    lists every stored key of a subject to any system (a connector opens a task sealed
    under privops' storage key with it), so before, crm could seal its events under
    orders' ``retained:purchases:<date>`` key and keep them readable for six years after
    the subject's erasure (review, session 34)."""
    if scope == MAIN_SCOPE:
        return True
    parts = retained_parts(scope)
    spec = datamap.systems.get(source)
    return parts is not None and spec is not None and parts[0] in {c.value for c in spec.categories}


def only_keeps_data(event: r.UpstreamEvent) -> bool:
    """Whether all ``event`` can do is keep the subject's data longer, or say who
    received it: an investigation opened, a credit account or debt still open, a
    disclosure. Dated ahead of the clock, such an event is taken as of when it was
    produced (``agents.ingest.dated``), as a withdrawal is: refused, footage under
    investigation or a debt's records were erased meanwhile, and a recipient never
    told (a system stamping UK summer time as UTC is an hour ahead; review, session 44).
    Not a close, a settled balance or a sale: those end a period or start one."""
    match event:
        case r.InvestigationOpened() | r.DataDisclosed():
            return True
        case r.AccountBalanceChanged():
            return event.credit_account_open or event.overdue_pence > 0 or event.balance_pence > 0
    return False


def updated_facts(facts: SubjectFacts, event: r.UpstreamEvent, datamap: DataMap) -> SubjectFacts:
    """Retention inputs for the erasure plan (financial records, credit, investigations)
    and who received the subject's data (Art. 19).

    Returns `facts` itself when the event changes nothing, so the caller can skip a write.
    Raises UndeclaredDisclosure for a disclosure the data map does not declare; pure, so
    the caller can call it before it writes anything else. A fact-bearing event from a
    system that does not hold its category changes nothing (``foreign_fact``).
    """
    if foreign_fact(event, datamap) is not None:
        return facts
    at = event.occurred_at
    match event:
        case r.DataDisclosed():
            return facts.disclosed(check_disclosure(datamap, event))
        case r.OrderPlaced() | r.PaymentRecorded():
            latest = facts.latest_financial_record_at
            if latest is None or at > latest:
                return facts.model_copy(update={"latest_financial_record_at": at})
        case r.AccountBalanceChanged():
            # The latest balance by occurred_at wins: a settled balance from before an
            # overdue one, arriving late, must not close the debt (DESIGN.md section 5).
            if facts.balance_at is not None and at < facts.balance_at:
                return facts
            # A debt is open while anything is overdue, or a balance is owed on a closed
            # account; the credit period only starts once both are settled.
            open_debt = event.overdue_pence > 0 or (
                event.balance_pence > 0 and not event.credit_account_open
            )
            closed = None if event.credit_account_open or open_debt else at
            return facts.model_copy(
                update={
                    "open_credit_account": event.credit_account_open,
                    "open_debt": open_debt,
                    "credit_closed_at": closed or facts.credit_closed_at,
                    "balance_at": at,
                }
            )
        case r.InvestigationOpened():
            return _opened(facts, event.investigation_id, at)
        case r.InvestigationClosed():
            iid = event.investigation_id
            closes = dict(facts.closed_investigations)
            if iid in closes and closes[iid] > at:
                return facts  # an older close of it, arriving late
            opened = dict(facts.opened_investigations).get(iid)
            if opened is not None and opened > at:
                # The close of an earlier round, arriving after the reopening: it stays
                # open, as it does when the two arrive in order. Before, the result
                # hung on the order, and the footage of an open investigation could be
                # erased (review, session 44).
                return facts
            ids = tuple(i for i in facts.open_investigation_ids if i != iid)
            others = [(i, when) for i, when in facts.closed_investigations if i != iid]
            seen_closed = [*others, (iid, at)][-MAX_CLOSED_INVESTIGATIONS:]
            # The latest conclusion counts, whatever order the closes arrive in.
            latest = facts.investigation_closed_at
            return facts.model_copy(
                update={
                    "open_investigation_ids": ids,
                    "opened_investigations": tuple(
                        (i, when) for i, when in facts.opened_investigations if i != iid
                    ),
                    "closed_investigations": tuple(seen_closed),
                    "investigation_closed_at": at if latest is None else max(latest, at),
                }
            )
    return facts


def _opened(facts: SubjectFacts, iid: str, at: datetime) -> SubjectFacts:
    """`facts` with investigation `iid` open (`facts` itself if that changes nothing).

    Past MAX_OPEN_INVESTIGATIONS listed, a new one is not listed but marked
    (`unlisted_investigation_open`): the list stays bounded, and the footage is still
    kept while one may be open (review, session 25).
    """
    closed = dict(facts.closed_investigations).get(iid)
    if closed is not None and at <= closed:
        return facts  # opened before a close that came first: it is over
    listed = facts.open_investigation_ids
    opened = dict(facts.opened_investigations)
    if iid in listed:
        if iid in opened and opened[iid] >= at:
            return facts
        opened[iid] = at  # opened again later (or first timed): the latest round counts
        return facts.model_copy(update={"opened_investigations": _timed(opened, listed)})
    if len(listed) < MAX_OPEN_INVESTIGATIONS:
        ids = tuple(sorted({*listed, iid}))
        opened[iid] = at
        return facts.model_copy(
            update={"open_investigation_ids": ids, "opened_investigations": _timed(opened, ids)}
        )
    if facts.unlisted_investigation_open:
        return facts
    return facts.model_copy(update={"unlisted_investigation_open": True})


def _timed(
    opened: dict[str, datetime], listed: tuple[str, ...]
) -> tuple[tuple[str, datetime], ...]:
    """When each of the ``listed`` open investigations was last opened, in their order."""
    return tuple((i, opened[i]) for i in listed if i in opened)


def consent_state_fields(state: SubjectConsent, now: datetime) -> dict[str, Any]:
    """The privacy.consent-state record for `state` as plain data (its Avro datum).

    The worker encodes this dict as it is (one per consent change, so no model is built
    for it); `consent_state_record` validates the same dict into the model.

    A soft opt-in whose conditions do not all hold is published as not asked, with no
    basis: `decide` refuses it (`soft_opt_in_invalid`), and the record carries no
    conditions, so "granted, soft_opt_in" told its readers they may send marketing
    (review, session 25). Only state from before ConsentGiven's soft opt-ins were
    refused can hold one; the entry's source and evidence still say what it rests on.
    """
    return {
        "subject_id": state.subject_id,
        "updated_at": state.updated_at or now,
        "preferences": [
            {
                "purpose": entry.purpose,
                "channel": entry.channel,
                **_status_and_basis(entry),
                "source": entry.source,
                "occurred_at": entry.occurred_at,
                "event_id": entry.event_id,
                "evidence": entry.evidence,
            }
            for _, entry in sorted(state.entries.items())
        ],
        "marketing_objection": state.objection is not None,
        "tps_listed": state.tps_listed,
        "restricted": state.restricted,
        "suppressed": state.suppressed,
    }


def _status_and_basis(entry: ConsentEntry) -> dict[str, Any]:
    if entry.basis is LawfulBasis.soft_opt_in and entry.soft_opt_in != SALE_SOFT_OPT_IN:
        return {"status": ConsentStatus.not_asked.value, "basis": LawfulBasis.none}
    return {"status": entry.status.value, "basis": entry.basis}


def consent_state_record(state: SubjectConsent, now: datetime) -> r.ConsentState:
    """The compacted privacy.consent-state record for `state` (`now` if it has no time)."""
    return r.ConsentState.model_validate(consent_state_fields(state, now))
