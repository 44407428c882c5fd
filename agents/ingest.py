"""Business-system events and request directives -> identity map, consent, retention facts.

Reads:  orders.events, crm.events, telephony.events, marketing.events, web.events,
        cctv.events, privops.internal.subject-directives (all keyed by subject id)
Writes: privacy.consent-state (compacted), privacy.audit, privacy.deadletter,
        privops.internal.suppression (global view); tables identities, consent,
        subject-facts, legal-holds (through streams.state: chunks in, one flush out).

A record is acted on only if its type belongs on the topic it came from (the topic's ACL
says who wrote it); anything else is a `wrong_topic` dead letter. Disclosures are checked
against the data map (streams.context.collaborators) before anything
is written.
"""

from __future__ import annotations

import logging
from datetime import datetime

from faust.types import Message, StreamT

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
    consent_state_fields,
    directive_fact,
    updated_facts,
)
from privops.core.holds import update_holds
from privops.core.identity import identifier_keys, merge, suppression_keys, suppression_match
from privops.core.topics import CONSENT_STATE, SUBJECT_DIRECTIVES, events_topic
from privops.core.vocab import System
from streams import pipeline
from streams.app import app
from streams.audit import PSEUDONYM_KEY, PSEUDONYM_KEYS, audit, ref
from streams.context import collaborators
from streams.io import TOPICS, dead_letter, decode, output_datum
from streams.state import state
from streams.tables import CONSENT, FACTS, HOLDS, IDENTITIES, suppression

log = logging.getLogger(__name__)
_CONSENT_STATE = r.ConsentState.fullname()


SUBJECT_TOPICS = [events_topic(s) for s in System] + [SUBJECT_DIRECTIVES]
# Make sure each topic is declared once in the catalogue with its partitions.
assert all(name in TOPICS for name in SUBJECT_TOPICS)
inlet = pipeline.inlet("ingest", SUBJECT_TOPICS)


@app.agent(pipeline.chunks(), concurrency=1)
async def ingest(chunks: StreamT[list[Message]]) -> None:
    async for chunk in chunks:
        await pipeline.work(chunk, on_message, inlet)


pipeline.feed(inlet, ingest)


async def on_message(message: Message) -> None:
    record = await decode(message, "ingest")
    if record is None:
        return
    try:
        on_record(admit_ingest(message.topic, record))
    except (WrongTopic, UndeclaredDisclosure) as exc:
        dead_letter(message, "ingest", exc.reason, str(exc))
    except UnknownDirectiveKind as exc:
        dead_letter(message, "ingest", "unknown_value", str(exc))
    except DomainError as exc:
        dead_letter(message, "ingest", "missing_identifier", str(exc))
    except ValueError as exc:  # pydantic validation of a fact: unknown values, shape
        dead_letter(message, "ingest", "unknown_value", str(exc)[:500])


def on_record(record: IngestInput) -> None:
    if isinstance(record, r.UpstreamEvent):
        on_upstream(record)
    elif isinstance(record, r.SubjectDirective):
        on_directive(record)
    else:
        on_hold(record)


def on_upstream(record: r.UpstreamEvent) -> None:
    metrics.count_event(record.source, type(record).__name__)
    sid = record.subject_id
    # Everything the event means first (pure): an undeclared disclosure or a consent
    # fact of an impossible shape is refused before any table is touched.
    stored_facts = state.get(FACTS, sid)
    facts = stored_facts or SubjectFacts()
    new_facts = updated_facts(facts, record, collaborators().datamap)
    meaning = consent_facts(record)
    raw_ids = record.identifiers.present()
    identity = state.get(IDENTITIES, sid)
    merged = merge(identity, sid, record.source, raw_ids, record.occurred_at)

    current = state.get(CONSENT, sid)
    suppressed = current is not None and current.suppressed
    if not suppressed:
        suppressed = is_suppressed(raw_ids, record.source)
    if suppressed:
        audit(
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
        state.put(IDENTITIES, sid, merged)
    if new_facts != facts or stored_facts is None:
        state.put(FACTS, sid, new_facts)

    new_state = apply_facts(current, sid, meaning)
    if new_state is None:  # first sight of the subject: known, nothing asked yet
        new_state = rules.SubjectConsent(subject_id=sid, updated_at=record.occurred_at)
        state.put(CONSENT, sid, new_state)
        publish_state(sid, new_state, record.occurred_at)


def is_suppressed(raw_ids: dict[str, str], source: System) -> bool:
    """The identifiers match the suppression list (a global view: keyed by identifier
    hash, not by subject), under the current pseudonym key or one it replaced. A match
    under a replaced key enters the identifiers' current keys, so the list re-keys
    itself as erased people's identifiers come back."""
    matched = suppression_match(suppression.data, PSEUDONYM_KEYS, raw_ids, source)
    if matched is None:
        return False
    sref = suppression.get(matched) or ""
    for key in identifier_keys(PSEUDONYM_KEY, raw_ids, source) - suppression.data.keys():
        suppression.put(key, sref)
    return True


def apply_facts(
    current: rules.SubjectConsent | None,
    sid: str,
    facts: list[rules.ConsentFact],
    actor: str | None = None,
) -> rules.SubjectConsent | None:
    """Fold one input's facts, then write, audit and publish the state once."""
    new_state, changes = rules.apply_all(current, sid, facts)
    if new_state is None:
        return None
    if new_state != current:
        state.put(CONSENT, sid, new_state)
    for change in changes:
        labels = change.metric_labels()
        metrics.count_consent_change(labels["purpose"], labels["channel"], labels["status"])
        audit(
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
        publish_state(sid, new_state, max(fact.occurred_at for fact in facts))
    return new_state


def publish_state(sid: str, consent: rules.SubjectConsent, at: datetime) -> None:
    """The subject's privacy.consent-state record, encoded from plain data (no model:
    one per change on the hot path; the same bytes as ``output`` of the model)."""
    datum = consent_state_fields(consent, at)
    output_datum(CONSENT_STATE, sid, _CONSENT_STATE, datum)


def on_hold(cmd: r.LegalHoldPlaced | r.LegalHoldReleased) -> None:
    """Keep the subject's legal holds (audited by the workflow agent that forwarded them)."""
    sid = cmd.subject_id
    holds = state.get(HOLDS, sid)
    update = update_holds(holds or [], cmd)
    if update.changed:
        state.put(HOLDS, sid, list(update.holds))


def on_directive(directive: r.SubjectDirective) -> None:
    """A request's effect on the subject: restriction, suppression, objection, withdrawal."""
    sid = directive.subject_id
    fact = directive_fact(directive)
    if fact.kind is FactKind.suppressed:
        identity = state.get(IDENTITIES, sid)
        if identity is not None:
            sref = ref(sid)
            for key in suppression_keys(PSEUDONYM_KEY, identity):
                suppression.put(key, sref)
    apply_facts(state.get(CONSENT, sid), sid, [fact], actor=f"privops:{directive.request_id}")
