"""The hot path's shortcuts give exactly what the model paths give (issue 11).

Audit hashes, audit ids and Avro bytes are compared with what the straightforward code
(pydantic dump, ``json.dumps``, ``strftime``, ``uuid.uuid5``) produces, over many
generated values: a difference here would be a chain that no longer verifies or a
record that reads back differently.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.utils import generate_many
from hypothesis import given, settings
from hypothesis import strategies as st

from privops.adapters import metrics
from privops.adapters.avro import Codec
from privops.core import consent as rules
from privops.core.audit import (
    GENESIS,
    AuditChainer,
    AuditFieldError,
    canonical_json,
    derive_audit_id,
    next_fields,
    utc_text,
    verify,
)
from privops.core.consent import ConsentFact, FactKind, SoftOptIn
from privops.core.facts import consent_state_fields, consent_state_record
from privops.core.records import ALL_RECORDS, AuditEvent, ConsentState, Record
from privops.core.vocab import Channel, LawfulBasis, Purpose, System

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY = b"fast-path-audit-key-0123456789"
NAMESPACE = uuid.UUID("6f1c7a52-3d0e-5b8e-9a51-0c4a1e2f7d10")
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TEXTS = ["", "a", "ev-0001", "ünïcødé ✓", "x\x1fy", 'quote " and \\ slash', "\u2028"]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SCHEMAS)


def _text(rng: random.Random) -> str:
    return rng.choice(TEXTS) + "".join(rng.choice("abc019-_:/.é") for _ in range(rng.randrange(12)))


def test_audit_ids_are_uuid5_text() -> None:
    rng = random.Random(11)
    for _ in range(2_000):
        parts = [_text(rng) for _ in range(rng.randrange(1, 4))]
        assert derive_audit_id(*parts) == str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


def test_times_are_strftime_text() -> None:
    rng = random.Random(12)
    for _ in range(2_000):
        offset = timedelta(minutes=rng.randrange(-14 * 60, 14 * 60))
        tz = timezone(offset)
        when = datetime(
            rng.choice([1, 999, 1000, 1970, 2026, 9998]),
            rng.randrange(1, 13),
            rng.randrange(1, 29),
            rng.randrange(24),
            rng.randrange(60),
            rng.randrange(60),
            rng.choice([0, 1, 999_999, rng.randrange(1_000_000)]),
            tzinfo=tz,
        )
        if when.year == 1 and offset > timedelta(0):  # UTC would leave datetime's range
            continue
        expected = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert utc_text(when) == expected


def test_canonical_json_is_json_dumps() -> None:
    rng = random.Random(13)
    for _ in range(500):
        payload = {_text(rng): rng.choice([None, True, 7, -3, _text(rng)]) for _ in range(6)}
        expected = json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
        assert canonical_json(payload) == expected


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70), st.text()
)


@settings(max_examples=600, deadline=None, database=None)
@given(
    payload=st.dictionaries(
        st.text(),
        st.one_of(
            JSON_VALUES,
            st.lists(JSON_VALUES, max_size=3),  # not flat: the encoder writes these
            st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
            st.sampled_from([Purpose.marketing, Channel.sms, 1.5]),
        ),
        max_size=8,
    )
)
def test_canonical_json_is_json_dumps_for_any_payload(payload: dict[str, Any]) -> None:
    """Flat dicts are joined by hand (the hot path), the rest by the encoder: both are
    json.dumps, byte for byte, or fail where it fails (a lone surrogate in UTF-8)."""
    try:
        expected: bytes | type[Exception] = json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (UnicodeEncodeError, ValueError, TypeError) as exc:
        expected = type(exc)
    if isinstance(expected, bytes):
        assert canonical_json(payload) == expected
    else:
        with pytest.raises(expected):
            canonical_json(payload)


def _reference_hash(record: AuditEvent) -> str:
    """The hash as the first keyed chainer made it: model dump, json.dumps, strftime."""
    fields: dict[str, Any] = record.model_dump(exclude={"hash"})
    fields["occurred_at"] = record.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    return hmac.new(KEY, data, hashlib.sha256).hexdigest()


def test_chained_records_carry_the_reference_hash_and_verify() -> None:
    rng = random.Random(14)
    chainer = AuditChainer(key=KEY)
    records = []
    for i in range(500):
        local = timezone(timedelta(hours=rng.randrange(-5, 6)))
        record = chainer.next(
            actor=rng.choice(["crm", "dpo", "privops:req-1"]),
            action=rng.choice(["consent_changed", "dead_lettered"]),
            occurred_at=(T0 + timedelta(seconds=i, microseconds=rng.randrange(10**6))).astimezone(
                local
            ),
            request_id=rng.choice([None, "req-1", "req-ü"]),
            subject_ref=rng.choice([None, "sr_0123456789abcdef01234567"]),
            before=rng.choice([None, "granted", _text(rng)]),
            after=rng.choice([None, "withdrawn", _text(rng)]),
            reason=rng.choice([None, _text(rng)]),
            audit_id=derive_audit_id(str(i)),
        )
        assert record.hash == _reference_hash(record)
        records.append(record)
    assert records[0].prev_hash == GENESIS
    assert verify(records, {1: KEY}).ok


def _samples(codec: Codec, model: type[Record], count: int) -> list[Record]:
    """Valid records of ``model`` from random Avro data (what fails validation is skipped)."""
    parsed = fastavro.parse_schema(codec.latest[model.fullname()].schema, named_schemas={})
    found = []
    for datum in generate_many(parsed, count):
        try:
            found.append(model.model_validate(datum))
        except ValueError:
            continue
    return found


def _dumped(parsed: Any, record: Record) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record.model_dump(mode="python"))
    return buf.getvalue()


@pytest.mark.parametrize("model", ALL_RECORDS, ids=lambda m: m.fullname())
def test_encoding_a_record_is_encoding_its_dump(codec: Codec, model: type[Record]) -> None:
    parsed = fastavro.parse_schema(codec.latest[model.fullname()].schema, named_schemas={})
    samples = _samples(codec, model, 40)
    for record in samples:
        assert codec.encode(record) == _dumped(parsed, record)


def test_chained_audit_records_encode_as_their_dump(codec: Codec) -> None:
    """Random text never passes AuditEvent's hash patterns, so build real ones too."""
    chainer = AuditChainer(key=KEY)
    parsed = fastavro.parse_schema(codec.latest[AuditEvent.fullname()].schema, named_schemas={})
    for i in range(200):
        record = chainer.next(actor="crm", action="x", occurred_at=T0, request_id=f"r-{i % 7}")
        assert codec.encode(record) == _dumped(parsed, record)


def test_audit_fields_encode_as_the_validated_record(codec: Codec) -> None:
    """The worker encodes `next_fields`' dict without building the model: the same bytes
    as the validated record, and a record the model accepts, for varied input."""
    rng = random.Random(15)
    head = (0, GENESIS)
    for i in range(300):
        local = timezone(timedelta(hours=rng.randrange(-5, 6)))
        fields = next_fields(
            head,
            key=KEY,
            key_version=1,
            chain=f"app/{rng.choice(['sr_1', 'req-ü'])}",
            audit_id=derive_audit_id(str(i)),
            actor=rng.choice(["crm", "privops:req-1"]),
            action="consent_changed",
            occurred_at=(T0 + timedelta(seconds=i)).astimezone(local),
            request_id=rng.choice([None, "req-1"]),
            subject_ref=rng.choice([None, "sr_0123456789abcdef01234567"]),
            before=rng.choice([None, "granted"]),
            after=rng.choice([None, _text(rng)]),
            reason=rng.choice([None, _text(rng)]),
        )
        record = AuditEvent.model_validate(fields)
        assert record.hash == _reference_hash(record)
        assert codec.encode_datum(AuditEvent.fullname(), fields) == codec.encode(record)
        head = (record.seq, record.hash)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("reason", "write to jane.doe@example.com", "looks like raw PII"),
        ("after", "07700 900123", "looks like raw PII"),
        ("chain", "app/+447700900123", "looks like raw PII"),
        ("actor", "", "is empty"),
        ("subject_ref", 7, "must be text"),
    ],
)
def test_audit_fields_refuse_what_the_record_refuses(field: str, value: Any, problem: str) -> None:
    kwargs: dict[str, Any] = {"chain": "app/c", "actor": "crm", field: value}
    with pytest.raises(AuditFieldError, match=problem) as caught:
        next_fields(
            (0, GENESIS),
            key=KEY,
            key_version=1,
            audit_id="a-1",
            action="x",
            occurred_at=T0,
            **kwargs,
        )
    if isinstance(value, str) and value:
        assert value not in str(caught.value)
    with pytest.raises(AuditFieldError, match="timezone-aware"):
        next_fields(
            (0, GENESIS),
            key=KEY,
            key_version=1,
            chain="c",
            audit_id="a",
            actor="crm",
            action="x",
            occurred_at=datetime(2026, 1, 1),
        )


def _random_facts(rng: random.Random, n: int) -> list[ConsentFact]:
    facts = []
    for i in range(n):
        at = T0 + timedelta(minutes=rng.randrange(600))
        kind = rng.choice(list(FactKind))
        purpose: Purpose | None = None
        channel: Channel | None = None
        basis = LawfulBasis.none
        soft = None
        if kind in (FactKind.granted, FactKind.opted_back_in):
            channel = rng.choice([Channel.email, Channel.sms, Channel.telephone])
            purpose = Purpose.marketing if kind is FactKind.granted else None
            basis = LawfulBasis.consent
            if kind is FactKind.granted and channel is not Channel.telephone and rng.random() < 0.4:
                basis = LawfulBasis.soft_opt_in
                soft = SoftOptIn(
                    collected_in_sale_or_negotiation=True,
                    own_similar_products=rng.random() < 0.8,
                    opt_out_offered=True,
                )
        elif kind is FactKind.withdrawn:
            purpose = rng.choice([None, Purpose.marketing, Purpose.analytics])
            channel = rng.choice([None, *Channel])
        elif kind is FactKind.suppressed and rng.random() < 0.8:
            kind = FactKind.tps_listed
        facts.append(
            ConsentFact(
                event_id=f"ev-{i}",
                occurred_at=at,
                source=rng.choice(list(System)),
                kind=kind,
                purpose=purpose,
                channel=channel,
                basis=basis,
                soft_opt_in=soft,
                evidence=f"crm.events:X:ev-{i}",
            )
        )
    return facts


def test_consent_state_datum_encodes_as_the_record(codec: Codec) -> None:
    rng = random.Random(15)
    name = ConsentState.fullname()
    compared = 0
    for subject in range(300):
        sid = f"s-{subject}"
        state = None
        for fact in _random_facts(rng, rng.randrange(1, 8)):
            state, _ = rules.apply(state, sid, fact)
            fields = consent_state_fields(state, T0)
            record = consent_state_record(state, T0)
            assert codec.encode_datum(name, fields) == codec.encode(record)
            compared += 1
    fresh = rules.SubjectConsent(subject_id="s-new")  # no time yet: `now` stands in
    assert codec.encode_datum(name, consent_state_fields(fresh, T0)) == codec.encode(
        consent_state_record(fresh, T0)
    )
    assert compared > 1_000


def _sample(name: str, labels: dict[str, str]) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0


def test_cached_metric_children_count_on_the_labelled_series() -> None:
    labels = {"source": "crm", "type": "TaskFailed"}
    before = _sample("privops_events_consumed_total", labels)
    metrics.count_event(System.crm, "TaskFailed")
    metrics.count_event("crm", "TaskFailed")
    assert _sample("privops_events_consumed_total", labels) == before + 2
    other = {"source": "other", "type": "other"}
    before_other = _sample("privops_events_consumed_total", other)
    metrics.count_event("someone@example.com", "not-a-type")
    assert _sample("privops_events_consumed_total", other) == before_other + 1
