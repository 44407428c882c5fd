"""Business-system events and request directives -> identity map, consent, retention facts.

Reads:  orders.events, crm.events, telephony.events, marketing.events, web.events,
        cctv.events, privops.internal.subject-directives (all keyed by subject id)
Writes: privacy.consent-state (compacted), privacy.audit, privacy.deadletter,
        privops.internal.suppression (global view); tables identities, consent,
        subject-facts, legal-holds.

A record is acted on only if its type belongs on the topic it came from (the topic's ACL
says who wrote it); anything else is a `wrong_topic` dead letter. Disclosures are checked
against the data map (streams.context.collaborators) before anything
is written.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import StreamT

from privops.adapters import metrics
from privops.core import consent as rules
from privops.core import records as r
from privops.core.consent import FactKind
from privops.core.erasure import SubjectFacts
from privops.core.errors import DomainError, WrongTopic
from privops.core.facts import (
    IngestInput,
    UndeclaredDisclosure,
    UnknownDirectiveKind,
    admit_ingest,
    consent_facts,
    consent_state_record,
    directive_fact,
    updated_facts,
)
from privops.core.holds import LegalHold, update_holds
from privops.core.identity import IdentityMap, is_reimport, merge, suppression_keys
from privops.core.topics import CONSENT_STATE, SUBJECT_DIRECTIVES, events_topic
from privops.core.vocab import System
from streams.app import app
from streams.audit import PSEUDONYM_KEY, audit, ref
from streams.context import collaborators
from streams.io import TOPICS, dead_letter, decode, emit
from streams.tables import (
    DecodedCache,
    consent,
    identities,
    legal_holds,
    subject_facts,
    suppression,
)

log = logging.getLogger(__name__)


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


@app.agent(subject_stream, concurrency=1)
async def ingest(stream: StreamT[Any]) -> None:
    async for event in stream.events():
        record = await decode(event, "ingest")
        if record is None:
            continue
        try:
            await on_record(admit_ingest(event.message.topic, record))
        except (WrongTopic, UndeclaredDisclosure) as exc:
            await dead_letter(event, "ingest", exc.reason, str(exc))
        except UnknownDirectiveKind as exc:
            await dead_letter(event, "ingest", "unknown_value", str(exc))
        except DomainError as exc:
            await dead_letter(event, "ingest", "missing_identifier", str(exc))
        except ValueError as exc:  # pydantic validation of a fact: unknown values, shape
            await dead_letter(event, "ingest", "unknown_value", str(exc)[:500])


async def on_record(record: IngestInput) -> None:
    if isinstance(record, r.UpstreamEvent):
        await on_upstream(record)
    elif isinstance(record, r.SubjectDirective):
        await on_directive(record)
    else:
        on_hold(record)


async def on_upstream(record: r.UpstreamEvent) -> None:
    metrics.count_event(record.source, type(record).__name__)
    sid = record.subject_id
    # Everything the event means first (pure): an undeclared disclosure or a consent
    # fact of an impossible shape is refused before any table is touched.
    stored_facts = facts_cache.get(sid)
    facts = stored_facts or SubjectFacts()
    new_facts = updated_facts(facts, record, collaborators().datamap)
    meaning = consent_facts(record)
    raw_ids = record.identifiers.present()
    identity = identity_cache.get(sid)
    merged = merge(identity, sid, record.source, raw_ids, record.occurred_at)

    state = consent_cache.get(sid)
    suppressed = state is not None and state.suppressed
    if not suppressed:
        # Keyed by identifier hash, not by this subject: a global view (streams.tables).
        suppressed = is_reimport(suppression.data, PSEUDONYM_KEY, raw_ids, record.source)
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

    if new_facts != facts or stored_facts is None:
        subject_facts[sid] = new_facts.model_dump(mode="json")
        facts_cache.put(sid, new_facts)

    state = await apply_facts(state, sid, meaning)
    if state is None:  # first sight of the subject: known, nothing asked yet
        state = rules.SubjectConsent(subject_id=sid, updated_at=record.occurred_at)
        consent[sid] = state.model_dump(mode="json")
        consent_cache.put(sid, state)
        await emit(CONSENT_STATE, sid, consent_state_record(state, record.occurred_at))


async def apply_facts(
    state: rules.SubjectConsent | None,
    sid: str,
    facts: list[rules.ConsentFact],
    actor: str | None = None,
) -> rules.SubjectConsent | None:
    """Fold one input's facts, then write, audit and publish the state once."""
    new_state, changes = rules.apply_all(state, sid, facts)
    if new_state is None:
        return None
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
        at = max(fact.occurred_at for fact in facts)
        await emit(CONSENT_STATE, sid, consent_state_record(new_state, at))
    return new_state


def on_hold(cmd: r.LegalHoldPlaced | r.LegalHoldReleased) -> None:
    """Keep the subject's legal holds (audited by the workflow agent that forwarded them)."""
    sid = cmd.subject_id
    current = [LegalHold.model_validate(h) for h in legal_holds.get(sid) or []]
    update = update_holds(current, cmd)
    if update.changed:
        legal_holds[sid] = [h.model_dump(mode="json") for h in update.holds]


async def on_directive(directive: r.SubjectDirective) -> None:
    """A request's effect on the subject: restriction, suppression, objection, withdrawal."""
    sid = directive.subject_id
    fact = directive_fact(directive)
    if fact.kind is FactKind.suppressed:
        identity = identity_cache.get(sid)
        if identity is not None:
            sref = ref(sid)
            for key in suppression_keys(PSEUDONYM_KEY, identity):
                await suppression.put(key, sref)
    state = consent_cache.get(sid)
    await apply_facts(state, sid, [fact], actor=f"privops:{directive.request_id}")
