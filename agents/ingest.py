"""Business-system events and request directives -> identity map, consent, retention facts.

Reads:  orders.events, crm.events, telephony.events, marketing.events, web.events,
        cctv.events, privops.internal.subject-directives (all keyed by subject id)
Writes: privacy.consent-state (compacted), privacy.audit, privacy.deadletter;
        tables identities, consent, subject-facts, suppression, legal-holds.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from faust.types import EventT, StreamT

from privops.adapters import metrics
from privops.core import consent as rules
from privops.core import records as r
from privops.core.erasure import LegalHold, SubjectFacts
from privops.core.errors import DomainError
from privops.core.identity import IdentityMap, is_reimport, merge, suppression_keys
from privops.core.topics import CONSENT_STATE, SUBJECT_DIRECTIVES, events_topic
from privops.core.vocab import Channel, LawfulBasis, Purpose, System
from streams.app import app
from streams.audit import PSEUDONYM_KEY, audit, ref
from streams.io import TOPICS, dead_letter, decode, emit
from streams.tables import (
    DecodedCache,
    any_partition,
    consent,
    identities,
    legal_holds,
    subject_facts,
    suppression,
)

log = logging.getLogger(__name__)

F = rules.FactKind
SUBJECT_TOPICS = [events_topic(s) for s in System] + [SUBJECT_DIRECTIVES]
subject_stream = app.topic(
    *SUBJECT_TOPICS,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
# Make sure each topic is declared once in the catalogue with its partitions.
assert all(name in TOPICS for name in SUBJECT_TOPICS)

# This agent is the only writer of these tables: keep their hot values decoded.
CACHE_SIZE = 50_000
identity_cache = DecodedCache(identities, IdentityMap.model_validate, CACHE_SIZE)
consent_cache = DecodedCache(consent, rules.SubjectConsent.model_validate, CACHE_SIZE)
facts_cache = DecodedCache(subject_facts, SubjectFacts.model_validate, CACHE_SIZE)


def consent_facts(event: r.UpstreamEvent) -> list[rules.ConsentFact]:
    """The consent meaning of a business event (most events have none)."""
    evidence = f"{event.source.value}.events:{type(event).__name__}:{event.event_id}"
    base: dict[str, Any] = {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "source": event.source,
        "evidence": evidence,
    }

    def fact(kind: rules.FactKind, **kw: Any) -> rules.ConsentFact:
        return rules.ConsentFact(kind=kind, **base, **kw)

    match event:
        case r.ConsentGiven():
            soft = rules.SoftOptIn(**event.soft_opt_in.model_dump()) if event.soft_opt_in else None
            return [
                fact(
                    F.granted,
                    purpose=event.purpose,
                    channel=event.channel,
                    basis=event.basis,
                    soft_opt_in=soft,
                )
            ]
        case r.ConsentWithdrawn():
            return [fact(F.withdrawn, purpose=event.purpose, channel=event.channel)]
        case r.UnsubscribeClicked():
            return [fact(F.withdrawn, purpose=Purpose.marketing, channel=Channel.email)]
        case r.StopReplyReceived():
            return [fact(F.withdrawn, purpose=Purpose.marketing, channel=Channel.sms)]
        case r.MarketingObjectionRecorded():
            return [fact(F.objected)]
        case r.TpsStatusChecked():
            return [fact(F.tps_listed if event.listed else F.tps_unlisted)]
        case r.TpsWaiverRecorded():
            return [fact(F.tps_no_objection)]
        case r.OrderPlaced() if event.marketing_opt_out_offered:
            # PECR reg. 22(3): details collected in a sale, similar products, opt-out
            # offered. Ticking the opt-out box is a refusal instead.
            if event.marketing_opt_out_ticked:
                return [
                    fact(F.withdrawn, purpose=Purpose.marketing, channel=c)
                    for c in (Channel.email, Channel.sms)
                ]
            soft = rules.SoftOptIn(
                collected_in_sale_or_negotiation=True,
                own_similar_products=True,
                opt_out_offered=True,
            )
            return [
                fact(
                    F.granted,
                    purpose=Purpose.marketing,
                    channel=c,
                    basis=LawfulBasis.soft_opt_in,
                    soft_opt_in=soft,
                )
                for c in (Channel.email, Channel.sms)
            ]
    return []


def updated_facts(facts: SubjectFacts, event: r.UpstreamEvent) -> SubjectFacts:
    """Retention inputs for the erasure plan (financial records, credit, investigations)."""
    at = event.occurred_at
    match event:
        case r.OrderPlaced() | r.PaymentRecorded():
            latest = facts.latest_financial_record_at
            if latest is None or at > latest:
                return facts.model_copy(update={"latest_financial_record_at": at})
        case r.AccountBalanceChanged():
            open_debt = event.overdue_pence > 0 or (
                event.balance_pence > 0 and not event.credit_account_open
            )
            closed = None if event.credit_account_open or open_debt else at
            return facts.model_copy(
                update={
                    "open_credit_account": event.credit_account_open,
                    "open_debt": open_debt,
                    "credit_closed_at": closed or facts.credit_closed_at,
                }
            )
        case r.InvestigationOpened():
            ids = tuple(sorted({*facts.open_investigation_ids, event.investigation_id}))
            return facts.model_copy(update={"open_investigation_ids": ids})
        case r.InvestigationClosed():
            ids = tuple(i for i in facts.open_investigation_ids if i != event.investigation_id)
            return facts.model_copy(
                update={"open_investigation_ids": ids, "investigation_closed_at": at}
            )
    return facts


def consent_state_record(state: rules.SubjectConsent, now: datetime) -> r.ConsentState:
    return r.ConsentState(
        subject_id=state.subject_id,
        updated_at=state.updated_at or now,
        preferences=[
            r.ChannelConsent(
                purpose=Purpose(key.split(":")[0]),
                channel=Channel(key.split(":")[1]),
                status=entry.status.value,
                basis=entry.basis,
                source=entry.source,
                occurred_at=entry.occurred_at,
                event_id=entry.event_id,
                evidence=entry.evidence,
            )
            for key, entry in sorted(state.entries.items())
        ],
        marketing_objection=state.objection is not None,
        tps_listed=state.tps_listed,
        restricted=state.restricted,
        suppressed=state.suppressed,
    )


@app.agent(subject_stream, concurrency=1)
async def ingest(stream: StreamT[Any]) -> None:
    async for event in stream.events():
        record = await decode(event, "ingest")
        if record is None:
            continue
        try:
            if isinstance(record, r.UpstreamEvent):
                await on_upstream(event, record)
            elif isinstance(record, r.SubjectDirective):
                await on_directive(record)
            elif isinstance(record, r.LegalHoldPlaced | r.LegalHoldReleased):
                on_hold(record)
            else:
                await dead_letter(
                    event,
                    "ingest",
                    "invalid_record",
                    f"{record.fullname()} does not belong on {event.message.topic}",
                )
        except DomainError as exc:
            await dead_letter(event, "ingest", "missing_identifier", str(exc))
        except ValueError as exc:  # pydantic validation of a fact: unknown values, shape
            await dead_letter(event, "ingest", "unknown_value", str(exc)[:500])


async def on_upstream(event: EventT[Any], record: r.UpstreamEvent) -> None:
    metrics.count_event(record.source, type(record).__name__)
    topic_system = event.message.topic.split(".")[0]
    if record.source.value != topic_system:
        raise DomainError(f"source {record.source} published on {event.message.topic}")
    sid = record.subject_id
    raw_ids = record.identifiers.present()
    identity = identity_cache.get(sid)
    merged = merge(identity, sid, record.source, raw_ids, record.occurred_at)

    state = consent_cache.get(sid)
    suppressed = state is not None and state.suppressed
    if not suppressed:
        # The suppression list is keyed by identifier hash, not by this subject: an
        # erased subject's key may live in any partition.
        with any_partition():
            suppressed = is_reimport(suppression, PSEUDONYM_KEY, raw_ids, record.source)
    if suppressed:
        await audit(
            actor=record.source.value,
            action="consent_changed",
            cause=record.event_id,
            occurred_at=record.occurred_at,
            subject_id=sid,
            after="reimport_flagged",
            reason="identifiers match an erased subject; not re-activated",
        )
        log.warning("re-import of an erased subject flagged (subject ref %s)", ref(sid))
        return
    if merged is not identity:
        identities[sid] = merged.model_dump(mode="json")
        identity_cache.put(sid, merged)

    stored_facts = facts_cache.get(sid)
    facts = stored_facts or SubjectFacts()
    new_facts = updated_facts(facts, record)
    if new_facts != facts or stored_facts is None:
        subject_facts[sid] = new_facts.model_dump(mode="json")
        facts_cache.put(sid, new_facts)

    for fact in consent_facts(record):
        state = await apply_fact(state, sid, fact)
    if state is None:  # first sight of the subject: known, nothing asked yet
        state = rules.SubjectConsent(subject_id=sid, updated_at=record.occurred_at)
        consent[sid] = state.model_dump(mode="json")
        consent_cache.put(sid, state)
        await emit(CONSENT_STATE, sid, consent_state_record(state, record.occurred_at))


async def apply_fact(
    state: rules.SubjectConsent | None,
    sid: str,
    fact: rules.ConsentFact,
    actor: str | None = None,
) -> rules.SubjectConsent:
    new_state, changes = rules.apply(state, sid, fact)
    if new_state != state:
        consent[sid] = new_state.model_dump(mode="json")
        consent_cache.put(sid, new_state)
    for change in changes:
        labels = change.metric_labels()
        metrics.count_consent_change(labels["purpose"], labels["channel"], labels["status"])
        await audit(
            actor=actor or change.source.value,
            action="consent_changed",
            cause=f"{change.event_id}:{labels['purpose']}:{labels['channel']}",
            occurred_at=change.occurred_at,
            subject_id=sid,
            before=change.before.value if change.before else None,
            after=labels["status"],
            reason=f"{labels['purpose']}/{labels['channel']}: {change.reason} "
            f"(evidence {change.evidence})",
        )
    if changes:
        await emit(CONSENT_STATE, sid, consent_state_record(new_state, fact.occurred_at))
    return new_state


def on_hold(cmd: r.LegalHoldPlaced | r.LegalHoldReleased) -> None:
    """Keep the subject's legal holds (audited by the workflow agent that forwarded them)."""
    sid = cmd.subject_id
    holds = [LegalHold.model_validate(h) for h in legal_holds.get(sid) or []]
    if isinstance(cmd, r.LegalHoldPlaced):
        if any(h.hold_id == cmd.hold_id for h in holds):
            return
        holds.append(
            LegalHold(
                hold_id=cmd.hold_id,
                subject_id=sid,
                categories=tuple(cmd.categories),
                reason=cmd.reason,
                placed_at=cmd.issued_at,
            )
        )
    else:
        holds = [
            h.model_copy(update={"released_at": cmd.issued_at})
            if h.hold_id == cmd.hold_id and h.released_at is None
            else h
            for h in holds
        ]
    legal_holds[sid] = [h.model_dump(mode="json") for h in holds]


_DIRECTIVE_FACTS: dict[str, rules.FactKind] = {
    "restricted": F.restricted,
    "restriction_lifted": F.restriction_lifted,
    "suppressed": F.suppressed,
    "objected": F.objected,
    "withdrawn": F.withdrawn,
}


async def on_directive(directive: r.SubjectDirective) -> None:
    """A request's effect on the subject: restriction, suppression, objection, withdrawal."""
    sid = directive.subject_id
    kind = _DIRECTIVE_FACTS.get(directive.kind)
    if kind is None:
        raise ValueError(f"unknown directive {directive.kind!r}")
    if kind is F.suppressed:
        identity = identity_cache.get(sid)
        if identity is not None:
            sref = ref(sid)
            for key in suppression_keys(PSEUDONYM_KEY, identity):
                suppression[key] = sref
    state = consent_cache.get(sid)
    fact = rules.ConsentFact(
        event_id=directive.directive_id,
        occurred_at=directive.occurred_at,
        source=System.crm,
        kind=kind,
        purpose=directive.purpose,
        channel=directive.channel,
        evidence=f"privacy.commands:{directive.request_id}",
    )
    await apply_fact(state, sid, fact, actor=f"privops:{directive.request_id}")
