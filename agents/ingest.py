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

An upstream event's personal fields arrive encrypted under the subject's data key
(docs/crypto-shredding.md) and are decrypted here, through the worker's key store
(``privacy.subject-keys``), before anything reads them, so the identity map and the
suppression list hold what the subject's identifiers are, not one of many ciphertexts
of them. A shredded key, a ciphertext that does not belong to this subject and field,
or one under a key its system may not seal under (another category's retained key) is a
dead letter (whose bytes hold only ciphertext); so is plaintext where
PRIVOPS_PERSONAL_PLAINTEXT=refuse, without its value (a dead letter is not shredded
with its subject's key; the event stays on its topic for the topic's retention).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from faust.types import Message, StreamT
from pydantic import ValidationError

from privops.adapters import metrics
from privops.adapters.guard import problems
from privops.adapters.kek import UnknownKekVersion
from privops.adapters.key_topic import subject_partition
from privops.connectors.encryption import decrypt_record, personal_fields
from privops.core import consent as rules
from privops.core import records as r
from privops.core.audit import step_time
from privops.core.consent import FactKind
from privops.core.erasure import SubjectFacts
from privops.core.errors import (
    DecodeError,
    DomainError,
    PrivopsError,
    RuntimeUnavailable,
    WrongTopic,
)
from privops.core.facts import (
    IngestInput,
    UndeclaredDisclosure,
    UnknownDirectiveKind,
    admit_ingest,
    consent_facts,
    consent_state_fields,
    declared_identifiers,
    directive_fact,
    foreign_fact,
    granted_facts,
    number_change,
    only_keeps_data,
    recalled_suppression,
    source_may_seal,
    too_far_ahead,
    too_far_back,
    updated_facts,
)
from privops.core.fanout import current_hold_states
from privops.core.fieldcrypt import (
    PREFIX,
    DataKey,
    MalformedField,
    ShreddedKey,
    TamperedField,
    parse_field,
    split_key_id,
)
from privops.core.holds import update_holds
from privops.core.identity import (
    IdentityMap,
    identifier_keys,
    merge,
    new_values,
    suppression_keys,
    suppression_match,
)
from privops.core.personal import ITEMS, VALUES, PersonalPath, typed_text
from privops.core.pii import redact
from privops.core.request import FOLLOWUP_ACTOR, Context
from privops.core.shredding import scope_category
from privops.core.subject_keys import KeyUnwrapFailed
from privops.core.topics import CONSENT_STATE, ingest_inputs
from privops.core.vocab import Category, System
from streams import pipeline
from streams.app import app, settings
from streams.audit import PSEUDONYM_KEY, audit, ref
from streams.context import collaborators
from streams.io import TOPICS, dead_letter, decode, output, output_datum
from streams.keystore import key_store, key_subject
from streams.state import state
from streams.tables import (
    CONSENT,
    FACTS,
    HOLDS,
    IDENTITIES,
    PSEUDONYM_KEYS,
    erased,
    listed_erased,
    suppression,
)

log = logging.getLogger(__name__)
R = TypeVar("R", bound=r.Record)
C = TypeVar("C", bound=r.Command)
_CONSENT_STATE = r.ConsentState.fullname()


PARTITIONS = settings.topic_partitions
# An event elsewhere than its subject's partition would split the subject: its consent
# and identity on one partition, its keys, requests and HTTP answers on another.
WRONG_PARTITION = (
    "not on its subject's partition: key events by subject id and partition them as the "
    "Java client does (murmur2; librdkafka: partitioner=murmur2_random)"
)


def on_its_partition(message: Message, subject_id: str) -> bool:
    """Whether ``message`` is on ``subject_id``'s partition (``PARTITIONS``, read here
    so that agent tests can count one)."""
    return message.partition == subject_partition(subject_id, PARTITIONS)


SUBJECT_TOPICS = ingest_inputs()
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
        admitted = admit_ingest(message.topic, record)
        if isinstance(admitted, r.UpstreamEvent):
            event = await readable_event(message, record, admitted)
            if event is None:
                return
            admitted = event
        elif isinstance(admitted, r.LegalHoldPlaced) and not hold_stored(admitted):
            # Applied here only when the workflow did not store it (an earlier version's,
            # a replay): its reason arrives sealed under its own field's label and is
            # opened first, or the holds table would keep a value it cannot read back
            # (review, session 29).
            admitted = await opened(admitted, admitted.subject_id, message.partition)
        on_record(admitted)
    except DecodeError as exc:  # a personal field: shredded key, tampered, not ciphertext
        if isinstance(exc, PlaintextRefused):
            dead_letter(message, "ingest", exc.reason, exc.detail, keep_value=False)
        else:
            refuse(message, record, exc.reason, exc.detail)
    except (WrongTopic, UndeclaredDisclosure, ImplausibleTime) as exc:
        refuse(message, record, exc.reason, str(exc))
    except UnknownDirectiveKind as exc:
        refuse(message, record, "unknown_value", str(exc))
    except DomainError as exc:
        refuse(message, record, "missing_identifier", str(exc))
    except ValueError as exc:  # pydantic validation of a fact: unknown values, shape
        refuse(message, record, "unknown_value", _described(exc))


async def readable_event(
    message: Message, record: r.Record, event: r.UpstreamEvent
) -> r.UpstreamEvent | None:
    """``event`` dated and with its personal fields opened; None when it was refused, or
    kept only as retention facts (an erased subject's, under their destroyed key)."""
    if (misplaced := where_wrong(message, event)) is not None:
        refuse(message, record, *misplaced)
        return None
    event = dated(event, getattr(message, "timestamp", None))
    try:
        return await readable(event, message.partition)
    except ShreddedKey:
        if not erased_before(event.subject_id):
            raise
        keep_retention_facts(event)  # read no personal field
        flag_reimport(event, "an event under an erased subject's destroyed key")
        return None


def where_wrong(message: Message, event: r.UpstreamEvent) -> tuple[str, str] | None:
    """(reason, detail) if ``event`` is not where it could be taken: on another partition
    or under another key than its subject's (its state would split)."""
    if not event.subject_id.strip():
        return "missing_identifier", "event carries no subject id"
    if not on_its_partition(message, event.subject_id):
        return "wrong_partition", WRONG_PARTITION
    if message.key != event.subject_id.encode():
        return "wrong_key", WRONG_KEY
    return None


class ImplausibleTime(PrivopsError):
    """An event dated too far ahead of the clock to be taken (``facts.too_far_ahead``), or
    before any real date (``facts.too_far_back``)."""

    reason = "implausible_time"


def dated(event: r.UpstreamEvent, stamp: object = None) -> r.UpstreamEvent:
    """``event``, if its ``occurred_at`` is not too far ahead of the wall clock (not the
    worker's, which PRIVOPS_CLOCK_OFFSET_DAYS may move), nor before any real date
    (``facts.too_far_back``, from 0.44); one that can only reduce
    contact (an unsubscribe, a STOP, a withdrawal from a system whose clock runs fast),
    or only keep data longer (``facts.only_keeps_data``), is taken as of when it was
    produced (its record's timestamp ``stamp``, if plausible, else now:
    ``audit.step_time``), never lost; any other is ImplausibleTime: it would
    outrank every real later event (review, session 25). Not now, when the record says:
    replayed after a crash, the event and its audit step must be dated as the first
    time, or the step forks its chain (review, session 35)."""
    now = datetime.now(UTC)
    ahead = too_far_ahead(event.occurred_at, now) or too_far_back(event.occurred_at)
    if ahead is None:
        return event
    meaning = consent_facts(event)
    protects = all(fact.only_protects for fact in meaning) if meaning else only_keeps_data(event)
    if protects:
        return event.model_copy(update={"occurred_at": step_time(stamp, now)})
    raise ImplausibleTime(ahead)


def refuse(
    message: Message, record: r.Record, reason: str, detail: str, consumer: str = "ingest"
) -> None:
    """Dead-letter ``message``, its value kept only if no personal field of ``record``
    (as decoded, before anything was opened) is plaintext: a dead letter is never
    shredded with its subject's key, so plaintext there would outlive an erasure
    (review, session 25: a wrong-partition or wrong-topic event kept an email whole;
    session 43: the workflow's dead letters, a business event on a results topic, too)."""
    try:
        found = personal_values(record, event_paths(record))
    except (LookupError, ValueError):  # no committed schema to read the paths from
        found = [("?", "")]
    keep = all(value.startswith(PREFIX) for _, value in found)
    dead_letter(message, consumer, reason, detail, keep_value=keep)


WRONG_KEY = (
    "not keyed by its subject id: key events by the subject_id they carry (the key "
    "decides the partition, and dead letters and answers follow it)"
)


def _described(exc: ValueError) -> str:
    """The error for a dead letter, never quoting the input (pydantic's own text quotes
    every value it refused: an email address, with a fact's id built from it)."""
    if isinstance(exc, ValidationError):
        return problems(exc)[:500]
    return redact(str(exc)[:500])


# --- personal fields ------------------------------------------------------------------


class PlaintextRefused(MalformedField):
    """Plaintext in a personal field, where PRIVOPS_PERSONAL_PLAINTEXT=refuse."""


KEYS_RETRY_MAX_SECONDS = 30.0
# Not the event's fault: the partition is moving, the key topic is behind, or this
# worker's KEK does not open the stored keys. Wait and ask again, as for the registry.
KEYS_UNAVAILABLE = (RuntimeUnavailable, KeyUnwrapFailed, UnknownKekVersion)

Paths = tuple[tuple[str, tuple[str, ...]], ...]
"""Personal paths as (label, steps): the label named in errors, the steps walked."""

_paths: dict[type[r.Record], Paths] = {}


def labelled(paths: tuple[PersonalPath, ...]) -> Paths:
    return tuple((str(path), path.steps) for path in paths)


def event_paths(event: r.Record) -> Paths:
    """The record type's personal paths, from its newest committed schema (once per type)."""
    found = _paths.get(type(event))
    if found is None:
        schema_paths = personal_fields(event.fullname(), settings.schema_dir)
        found = _paths[type(event)] = labelled(schema_paths)
    return found


def personal_values(record: Any, paths: Paths) -> list[tuple[str, str]]:
    """(label, value) of every personal string in ``record`` (a model or its dict), read
    in place: finding that nothing is encrypted must not cost a dump of the model."""
    found: list[tuple[str, str]] = []
    for label, steps in paths:
        _collect(record, steps, 0, label, found)
    return found


def _collect(
    value: Any, steps: tuple[str, ...], at: int, label: str, out: list[tuple[str, str]]
) -> None:
    while value is not None and at < len(steps):
        step = steps[at]
        if step in (ITEMS, VALUES):
            for item in value if step == ITEMS else value.values():
                _collect(item, steps, at + 1, label, out)
            return
        value = value.get(step) if isinstance(value, dict) else getattr(value, step, None)
        at += 1
    if value is not None:
        out.append((label, value))


Parsed = dict[str, tuple[str, bytes]]
"""Ciphertexts parsed (``parse_field``): value -> (key id, sealed bytes)."""


def ciphertexts(subject_id: str, values: list[tuple[str, str]]) -> tuple[Parsed, list[str]]:
    """The ciphertexts among ``values``, parsed, and the paths holding plaintext.

    A value that starts like a ciphertext must be one (``MalformedField``), never taken
    for plaintext; one under another subject's key is refused before any key is looked
    up (``TamperedField``): it could not authenticate here anyway (the subject is in
    the associated data), and its key may live on a partition this worker does not own.
    """
    parsed: Parsed = {}
    plaintext: list[str] = []
    for path, value in values:
        if not value.startswith(PREFIX):
            plaintext.append(path)
            continue
        try:
            key_id, sealed = parse_field(value)
        except MalformedField as exc:
            raise MalformedField(f"{path}: {exc.detail}") from None
        if key_subject(key_id) != subject_id:
            raise TamperedField(f"{path}: ciphertext under another subject's key")
        parsed[value] = (key_id, sealed)
    return parsed, plaintext


class _Found:
    """The keys looked up for one event (a ``KeySource`` for ``decrypt_record``): what
    the store answered is what decrypts, with no second lookup."""

    def __init__(self, keys: dict[str, DataKey | None]) -> None:
        self.keys = keys

    def key(self, key_id: str) -> DataKey | None:
        return self.keys.get(key_id)

    def current_key(self, subject_id: str, scope: str) -> DataKey:
        raise LookupError(f"ingest writes nothing under a {scope} key of {subject_id!r}")


async def readable(event: r.UpstreamEvent, partition: int) -> r.UpstreamEvent:
    """``event`` with its personal fields in plaintext (the same object if none was
    encrypted). ``ShreddedKey``, ``TamperedField`` or ``MalformedField`` (a DecodeError)
    when it cannot be; plaintext is refused or counted per PRIVOPS_PERSONAL_PLAINTEXT."""
    parsed, plaintext = ciphertexts(event.subject_id, personal_values(event, event_paths(event)))
    if parsed:
        check_scopes(event.source, parsed)
    if plaintext:
        if settings.personal_plaintext != "accept":
            raise PlaintextRefused(f"{', '.join(plaintext)}: plaintext in a personal field")
        metrics.count_plaintext_personal_fields(event.source, len(plaintext))
    return await _decrypted(event, event.subject_id, partition, parsed, bool(plaintext))


_CATEGORIES = frozenset(c.value for c in Category)


def check_scopes(source: System, parsed: Parsed) -> None:
    """``TamperedField`` (before any key is looked up) for an event sealed under a key
    its system may not seal under (``facts.source_may_seal``): the key service lists
    every stored key of a subject to any system, so crm could seal its events under
    orders' retained purchases key, which outlives the subject's erasure for years
    (review, session 34). Only upstream events: a task result is sealed under the very
    key its task was, whatever its scope (privops.connectors.runner)."""
    datamap = collaborators().datamap
    for key_id in {key_id for key_id, _ in parsed.values()}:
        scope = split_key_id(key_id)[1]
        if not source_may_seal(source, scope, datamap):
            category = scope_category(scope)
            named = f"a retained {category} key" if category in _CATEGORIES else "a key"
            raise TamperedField(
                f"a personal field is sealed under {named} that {source.value} may not "
                "use: it seals under main, or retained:<category>:<date> of a category "
                "the data map says it holds"
            )


async def opened(record: R, subject_id: str, partition: int) -> R:
    """A record privops reads besides the upstream events (a task result's export
    location, a command's rectified values) with its personal fields in plaintext;
    plaintext is taken as it is (connectors and the CLI seal when they hold the KEK).
    ``ShreddedKey``/``TamperedField``/``MalformedField`` (a DecodeError) when it
    cannot be opened."""
    parsed, plaintext = ciphertexts(subject_id, personal_values(record, event_paths(record)))
    return await _decrypted(record, subject_id, partition, parsed, bool(plaintext))


async def opened_command(cmd: C, subject_id: str, partition: int) -> C:
    """``opened`` for a command the DPO signed: its text in plaintext (an older CLI's, a
    script's: the CLI seals it, privops.tools.command_sealing) is counted in
    privops_plaintext_command_fields_total, or refused where
    PRIVOPS_PERSONAL_PLAINTEXT=refuse (``PlaintextRefused``). Not counted: a field left at
    its default (verify's method "documents"), the CLI's ``WITHHELD`` (no key to seal
    under: no text), and the follow-up erasure the worker issues itself (privops' own
    words)."""
    values = personal_values(cmd, event_paths(cmd))
    parsed, plaintext = ciphertexts(subject_id, values)
    unsealed = set(plaintext) if cmd.actor != FOLLOWUP_ACTOR else set()
    typed = [p for p, value in values if p in unsealed and typed_text(cmd, p, value)]
    if typed:
        if settings.personal_plaintext != "accept":
            raise PlaintextRefused(
                f"{', '.join(typed)}: the command's text is not sealed; send it with the "
                "privops CLI of this version, which seals it"
            )
        metrics.count_plaintext_command_fields(len(typed))
    return await _decrypted(cmd, subject_id, partition, parsed, bool(plaintext))


async def _decrypted(
    record: R, subject_id: str, partition: int, parsed: Parsed, with_plaintext: bool
) -> R:
    """``record`` opened with exactly the keys of the ciphertexts ``parsed`` (the same
    object if none), each parsed once. Plaintext beside ciphertext got here only if
    accepted."""
    if not parsed:
        return record
    started = time.perf_counter()
    try:
        keys = await keys_for(sorted({key_id for key_id, _ in parsed.values()}), partition)
        return decrypt_record(
            record,
            _Found(keys),
            subject_id=subject_id,
            schema_dir=settings.schema_dir,
            legacy_plaintext=with_plaintext,
            parsed=parsed,
        )
    finally:
        metrics.add_personal_fields_open(time.perf_counter() - started)


async def keys_for(ids: list[str], partition: int) -> dict[str, DataKey | None]:
    """Each key, or None once the store has read its partition up to date without it
    (shredded). While the store cannot answer, wait and retry with backoff, unless the
    partitions move meanwhile (``Abandoned``)."""
    delay = 0.5
    while True:
        try:
            return await key_store().keys_for(ids, partition)
        except KEYS_UNAVAILABLE as exc:
            # An unwrap error names the key id, and with it the subject: not logged.
            why = str(exc) if isinstance(exc, RuntimeUnavailable) else type(exc).__name__
            log.warning("subject keys unavailable (%s); retrying in %.1f s", why, delay)
            await state.backoff(delay)
            delay = min(delay * 2, KEYS_RETRY_MAX_SECONDS)


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
    raw_ids, meaning = taken_parts(record)
    identity = state.get(IDENTITIES, sid)
    merged = merge(identity, sid, record.source, raw_ids, record.occurred_at)

    current = state.get(CONSENT, sid)
    if current is None and listed_erased(sid):
        current = recall_suppression(sid, record.occurred_at)
    if current is not None and current.suppressed:
        keep_retention_facts(record, stored_facts, new_facts)
        flag_reimport(record, "identifiers match an erased subject")
        return
    if is_suppressed(raw_ids, record.source):
        # An erased person's identifier: a re-import, or someone who shares it (a
        # household landline, an email an erased person once used). Nothing of the event
        # re-activates anyone, but a withdrawal, objection or STOP still applies to this
        # subject: it can only reduce contact. Before, it was dropped whole, and the
        # subject stayed contactable (review, session 25).
        flag_reimport(record, "identifiers match an erased subject")
        if protective := [fact for fact in meaning if fact.only_protects]:
            apply_facts(current, sid, protective)
        return
    if merged is not identity:
        state.put(IDENTITIES, sid, merged)
        if (changed := number_change(identity, merged, record)) is not None:
            meaning = [*meaning, changed]
        if identity is None or new_values(identity, merged):
            tell_holds(sid, merged)
    if new_facts != facts or stored_facts is None:
        state.put(FACTS, sid, new_facts)

    new_state = apply_facts(current, sid, meaning)
    if new_state is None:  # first sight of the subject: known, nothing asked yet
        new_state = rules.SubjectConsent(subject_id=sid, updated_at=record.occurred_at)
        state.put(CONSENT, sid, new_state)
        publish_state(sid, new_state, record.occurred_at)


_FOREIGN_TOLD: set[tuple[System, str, str]] = set()


def taken_parts(record: r.UpstreamEvent) -> tuple[dict[str, str], list[rules.ConsentFact]]:
    """The identifiers and consent facts privops takes from ``record``: those the data
    map lets its system record (``declared_identifiers``, ``granted_facts``); what is
    left out, and a retention fact ``updated_facts`` leaves out (``foreign_fact``), is
    counted and told (``tell_foreign_fact``)."""
    datamap = collaborators().datamap
    if (foreign := foreign_fact(record, datamap)) is not None:
        tell_foreign_fact(record, "retention_fact", lambda: foreign)
    raw_ids, undeclared = declared_identifiers(record, datamap)
    meaning, ungranted = granted_facts(record.source, consent_facts(record, raw_ids), datamap)
    name, source = type(record).__name__, record.source.value
    if ungranted:
        tell_foreign_fact(
            record,
            "grant",
            lambda: (
                f"{name} from {source} records {' and '.join(ungranted)}, which the "
                f"data map does not let {source} record (its grants): not taken (the rest of "
                "the event is)"
            ),
        )
    if undeclared:
        tell_foreign_fact(
            record,
            "identifiers",
            lambda: (
                f"{name} from {source} carries {' and '.join(undeclared)}, which the "
                f"data map does not say {source} knows subjects by: not taken (the rest of the "
                "event is)"
            ),
        )
    return raw_ids, meaning


def tell_foreign_fact(record: r.UpstreamEvent, part: str, why: Callable[[], str]) -> None:
    """Count a part of ``record`` not taken (a retention fact, identifiers, a grant:
    ``metrics.EVENT_PARTS``), and log ``why`` once per system, event type and part: a
    data map that does not list the category, kind or grant under the system sending it
    is a deployment's mistake to mend (or a system asserting what it may not), and every
    such event would otherwise say it again. ``why`` is called only to log."""
    metrics.count_event_part_not_taken(record.source, part)
    told = (record.source, type(record).__name__, part)
    if told not in _FOREIGN_TOLD:
        _FOREIGN_TOLD.add(told)
        log.warning("%s; said once per system and event type", why())


# Events whose retention facts still move after an erasure: what it keeps with no end
# date (an open debt, an open investigation) ends with them (workflow.review_retention).
RETENTION_EVENTS: tuple[type[r.UpstreamEvent], ...] = (
    r.AccountBalanceChanged,
    r.InvestigationOpened,
    r.InvestigationClosed,
)


def keep_retention_facts(
    record: r.UpstreamEvent,
    stored: SubjectFacts | None = None,
    updated: SubjectFacts | None = None,
) -> None:
    """An erased subject's retention facts, kept while retention keeps anything
    (privops.core.shredding.what_remains), still follow a debt being settled or an
    investigation concluding: the erasure's daily review re-plans what it keeps from
    them, and issues the follow-up erasure when the ground ends. Nothing else of the
    event is applied (it is flagged as a re-import), and no personal field is read.
    ``stored``/``updated``: the facts before and after, when the caller has them."""
    if not isinstance(record, RETENTION_EVENTS):
        return
    sid = record.subject_id
    if stored is None:
        stored = state.get(FACTS, sid)
    if stored is None:
        return  # nothing is kept: no ground left to end
    if updated is None:
        updated = updated_facts(stored, record, collaborators().datamap)
    if updated != stored:
        state.put(FACTS, sid, updated)


def erased_before(subject_id: str) -> bool:
    """The subject was erased: their consent state says so, or (a worker rebuilt from the
    topics under a new app id, whose tables never saw them) the suppression list, which
    outlives every table, holds their subject ref."""
    return erased(subject_id)  # the suppression list too, for a subject unknown here


def recall_suppression(sid: str, at: datetime) -> rules.SubjectConsent:
    """The suppressed consent state of a subject the suppression list names, for whom
    this worker has none (rebuilt under a new app id): written and published, so the
    key service and ``/consent`` refuse them and their later events take the erased
    subject's branch at once, without the keyed hash. Only for a subject with no consent
    state here (rare): a subject met for the first time pays one keyed hash."""
    fact = recalled_suppression(ref(sid), at)
    recalled = apply_facts(None, sid, [fact], actor="privops:suppression-list")
    assert recalled is not None
    assert recalled.suppressed
    return recalled


def flag_reimport(record: r.UpstreamEvent, why: str) -> None:
    """An event about an erased subject: audited and not applied, never re-activating
    them. A replay of the upstream topics after an erasure lands here for every event
    under the subject's destroyed key, which is expected, so it is no dead letter (the
    dead-letter alert is for input that needs a look)."""
    sid = record.subject_id
    audit(
        actor=record.source.value,
        action="consent_changed",
        cause=record.event_id,
        occurred_at=record.occurred_at,
        subject_id=sid,
        after="reimport_flagged",
        reason=f"{why}; not re-activated",
    )
    log.warning("re-import of an erased subject flagged (subject ref %s)", ref(sid))


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
    if new_state is not current:  # apply_all returns the state itself when it changed nothing
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


def tell_holds(sid: str, identity: IdentityMap) -> None:
    """The subject is known by a new value (or met for the first time, a hold placed
    before any system reported them): each system a legal hold reaches gets its record
    again with it (``fanout.hold_states``), or its held rows under a new phone or
    account would be deleted by age. Rare: a table read only when a value changed."""
    holds = state.get(HOLDS, sid)
    if not holds:
        return
    clock, datamap = collaborators().clock, collaborators().datamap
    ctx = Context(
        now=clock.now(), today=clock.today(), datamap=datamap, subject_ref="", identity=identity
    )
    for out in current_hold_states(ctx, sid, holds):
        output(out.topic, out.key, out.record)


def publish_state(sid: str, consent: rules.SubjectConsent, at: datetime) -> None:
    """The subject's privacy.consent-state record, encoded from plain data (no model:
    one per change on the hot path; the same bytes as ``output`` of the model)."""
    datum = consent_state_fields(consent, at)
    output_datum(CONSENT_STATE, sid, _CONSENT_STATE, datum)


def hold_stored(cmd: r.LegalHoldPlaced) -> bool:
    """Whether the subject's holds hold ``cmd``'s hold already (the workflow stored it)."""
    return any(h.hold_id == cmd.hold_id for h in state.get(HOLDS, cmd.subject_id) or ())


def on_hold(cmd: r.LegalHoldPlaced | r.LegalHoldReleased) -> None:
    """Keep the subject's legal holds. The workflow agent stores each hold as it decides
    it (and audits it), so this finds it stored and changes nothing; it still applies a
    hold forwarded by a worker that did not store it (one of an earlier version)."""
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
    current = state.get(CONSENT, sid)
    if current is None and fact.kind is not FactKind.suppressed and listed_erased(sid):
        # A restriction or withdrawal must not give an erased subject a fresh state that
        # their next event would find unsuppressed (a rebuilt worker).
        current = recall_suppression(sid, directive.occurred_at)
    apply_facts(current, sid, [fact], actor=f"privops:{directive.request_id}")
