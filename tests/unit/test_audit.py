"""The audit hash chain: building, restarting, and catching tampering."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from privops.core.audit import (
    GENESIS,
    SYSTEM_CHAIN,
    AuditChainer,
    AuditEvent,
    canonical_bytes,
    chain_key,
    compute_hash,
    derive_audit_id,
    hashed_fields,
    looks_like_pii,
    redact,
    verify,
)
from privops.core.errors import DomainError

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SUBJECT = "sr_" + "ab" * 16


def build(
    chainer: AuditChainer, request_id: str | None, n: int, start: int = 0
) -> list[AuditEvent]:
    return [
        chainer.next(
            actor="dpo-key-1",
            action="request.transition",
            occurred_at=T0 + timedelta(minutes=start + i),
            request_id=request_id,
            subject_ref=SUBJECT,
            before="in_progress",
            after="awaiting_systems",
            reason=f"step {start + i}",
            audit_id=derive_audit_id("evt", str(request_id), str(start + i)),
        )
        for i in range(n)
    ]


def test_chain_links_from_genesis() -> None:
    records = build(AuditChainer(), "req-1", 3)
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[0].prev_hash == GENESIS
    assert records[1].prev_hash == records[0].hash
    assert records[2].prev_hash == records[1].hash
    assert all(r.chain == "req-1" for r in records)
    result = verify(records)
    assert result.ok
    assert result.checked == 3
    assert result.first_break is None


def test_chain_key_prefers_request_then_subject() -> None:
    assert chain_key("req-1", SUBJECT) == "req-1"
    assert chain_key(None, SUBJECT) == SUBJECT
    assert chain_key(None, None) == SYSTEM_CHAIN


def test_chains_are_independent_and_may_interleave() -> None:
    chainer = AuditChainer()
    a, b = build(chainer, "req-a", 3), build(chainer, None, 2)
    assert b[0].chain == SUBJECT
    assert b[0].seq == 1
    assert verify([a[0], b[0], a[1], b[1], a[2]]).ok


def test_canonical_bytes_are_deterministic_and_sorted() -> None:
    one = canonical_bytes({"b": 1, "a": None, "t": T0})
    two = canonical_bytes({"t": T0.astimezone(timezone(timedelta(hours=1))), "a": None, "b": 1})
    assert one == two == b'{"a":null,"b":1,"t":"2026-03-02T09:30:00.000000Z"}'
    with pytest.raises(DomainError):
        canonical_bytes({"x": 1.5})


def test_hash_covers_every_field_but_itself() -> None:
    record = build(AuditChainer(), "req-1", 1)[0]
    fields = hashed_fields(record)
    assert "hash" not in fields
    assert compute_hash(record.prev_hash, fields) == record.hash
    assert compute_hash(record.prev_hash, {**fields, "hash": "ignored"}) == record.hash
    for name in fields:
        if name == "prev_hash":
            continue
        changed = {**fields, name: "x" if fields[name] != "x" else "y"}
        assert compute_hash(record.prev_hash, changed) != record.hash, name
    assert compute_hash("1" * 64, fields) != record.hash


@pytest.mark.parametrize(
    ("field", "value"),
    [("after", "completed"), ("actor", "someone-else"), ("reason", "edited"), ("seq", 7)],
)
def test_tampered_field_is_named(field: str, value: object) -> None:
    records = build(AuditChainer(), "req-1", 4)
    victim = records[1]
    records[1] = victim.model_copy(update={field: value})
    result = verify(records)
    assert not result.ok
    assert result.first_break is not None
    assert result.first_break.audit_id == victim.audit_id
    assert result.first_break.problem == "hash_mismatch"
    assert len(result.breaks) == 1  # re-anchored: the records after it still link


def test_tampered_timestamp_is_named() -> None:
    records = build(AuditChainer(), "req-1", 3)
    victim = records[2]
    records[2] = victim.model_copy(update={"occurred_at": T0 - timedelta(days=1)})
    result = verify(records)
    assert result.first_break is not None
    assert (result.first_break.audit_id, result.first_break.problem) == (
        victim.audit_id,
        "hash_mismatch",
    )


def test_deleted_record_is_a_missing_link() -> None:
    records = build(AuditChainer(), "req-1", 4)
    del records[1]
    result = verify(records)
    assert not result.ok
    assert result.first_break is not None
    assert result.first_break.problem == "missing_link"
    assert result.first_break.audit_id == records[1].audit_id
    assert result.first_break.seq == 3


def test_deleted_first_record_is_a_missing_link() -> None:
    records = build(AuditChainer(), "req-1", 3)
    result = verify(records[1:])
    assert result.first_break is not None
    assert result.first_break.problem == "missing_link"
    assert result.first_break.seq == 2


def test_reordered_records_break_the_chain() -> None:
    records = build(AuditChainer(), "req-1", 4)
    records[1], records[2] = records[2], records[1]
    result = verify(records)
    assert not result.ok
    assert result.first_break is not None
    assert result.first_break.problem == "missing_link"
    assert result.first_break.seq == 3


def test_re_produced_altered_record_is_a_duplicate() -> None:
    records = build(AuditChainer(), "req-1", 3)
    original = records[1]
    fields = {**hashed_fields(original), "after": "completed"}
    forged = AuditEvent.model_validate({**fields, "hash": compute_hash(original.prev_hash, fields)})
    result = verify([*records, forged])
    assert result.first_break is not None
    assert result.first_break.problem == "duplicate"
    assert result.first_break.audit_id == original.audit_id


def test_exact_redelivery_is_tolerated_unless_asked_not_to() -> None:
    records = build(AuditChainer(), "req-1", 3)
    assert verify([*records, records[1]]).ok
    strict = verify([*records, records[1]], tolerate_exact_duplicates=False)
    assert strict.first_break is not None
    assert strict.first_break.problem == "duplicate"


def test_seq_gap_when_links_hold_but_numbers_skip() -> None:
    records = build(AuditChainer(), "req-1", 2)
    fields = {**hashed_fields(records[1]), "seq": 5}
    skipped = AuditEvent.model_validate(
        {**fields, "hash": compute_hash(records[1].prev_hash, fields)}
    )
    result = verify([records[0], skipped])
    assert result.first_break is not None
    assert result.first_break.problem == "seq_gap"


def test_chain_continues_after_restart_from_persisted_state() -> None:
    first = AuditChainer()
    before = build(first, "req-1", 3) + build(first, "req-2", 1)
    persisted = json.loads(json.dumps(first.state()))  # as a table would store it
    restarted = AuditChainer(persisted)
    assert restarted.head("req-1") == (3, before[2].hash)
    after = build(restarted, "req-1", 2, start=3) + build(restarted, "req-2", 1, start=1)
    assert [r.seq for r in after] == [4, 5, 2]
    assert verify(before + after).ok


def test_chainer_state_can_be_rebuilt_from_the_topic() -> None:
    records = build(AuditChainer(), "req-1", 3)
    rebuilt = AuditChainer()
    for record in records:
        rebuilt.observe(record)
    nxt = build(rebuilt, "req-1", 1, start=3)[0]
    assert nxt.seq == 4
    assert verify([*records, nxt]).ok


def test_bad_chainer_state_is_refused() -> None:
    with pytest.raises(DomainError, match="bad audit chain state"):
        AuditChainer({"req-1": ["3", "abc"]})


def test_occurred_at_must_be_aware_and_is_stored_in_utc() -> None:
    chainer = AuditChainer()
    with pytest.raises(ValidationError):
        chainer.next(actor="a", action="x", occurred_at=datetime(2026, 1, 1), request_id="r")
    assert chainer.head("r") == (0, GENESIS)  # a refused record does not move the chain
    local = datetime(2026, 6, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    record = chainer.next(actor="a", action="x", occurred_at=local, request_id="r")
    assert record.occurred_at.tzinfo == UTC
    assert record.occurred_at.hour == 9


@pytest.mark.parametrize("field", ["reason", "before", "after", "subject_ref", "actor"])
def test_records_refuse_raw_pii_without_echoing_it(field: str) -> None:
    kwargs: dict[str, str] = {"actor": "dpo", field: "contact jane.doe@example.com"}
    with pytest.raises(ValidationError) as caught:
        AuditChainer().next(action="x", occurred_at=T0, request_id="r", **kwargs)
    assert "jane.doe" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "jane.doe@example.com",
        "mail j_smith+shop@mail.example.co.uk now",
        "07700 900123",
        "07700900123",
        "+44 7700 900123",
        "+447700900123",
        "+44 (0)20 7946 0958",
        "(020) 7946 0958",
        "call 0161-496-0000 today",
        "01632 960001",
        "ring 07700 900123.",
    ],
)
def test_looks_like_pii_finds_emails_and_uk_phones(text: str) -> None:
    assert looks_like_pii(text)
    assert not looks_like_pii(redact(text))


@pytest.mark.parametrize(
    "text",
    [
        "request req-7f3a state in_progress -> awaiting_systems",
        "0" * 64,
        "a3f0e1c29b7d4e1f8a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081",
        "123e4567-e89b-12d3-a456-426614174000",
        "2026-03-02T09:30:00.000000Z",
        "offset 1234567890 partition 3",
        "took 0.0123456789 s",
        "ratio 10.07700900123",
        "sr_07700900123abc",
    ],
)
def test_looks_like_pii_passes_ids_hashes_and_numbers(text: str) -> None:
    assert not looks_like_pii(text)
