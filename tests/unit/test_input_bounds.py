"""What one subject's state can grow to from the systems' events (review, session 25).

Each event fits Kafka's record limit; what the subject-facts table keeps of many did
not: two InvestigationOpened with 600 kB ids made a changelog value over 1 MiB, which
the broker refused, stopping the worker on every restart. The references privops keeps
are bounded in the models (Avro cannot bound a string), and how many it keeps in the
facts; together they bound the table's value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from privops.adapters.datamap_file import load_datamap
from privops.connectors.encryption import decrypt_record, encrypt_record
from privops.core import records as r
from privops.core import sealing
from privops.core.erasure import (
    MAX_CLOSED_INVESTIGATIONS,
    MAX_OPEN_INVESTIGATIONS,
    MAX_REFS_PER_RECIPIENT,
    Disclosure,
    SubjectFacts,
)
from privops.core.errors import DecodeError
from privops.core.fieldcrypt import MAX_SUBJECT_ID_CHARS, DataKey, encrypt_field
from privops.core.records import MAX_REF_CHARS
from privops.core.vocab import Category, System
from tests.unit.test_serde import LocalRegistry, decode, local_serde

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KAFKA_RECORD_LIMIT = 1_048_576
LONGEST_SUBJECT = "S" * MAX_SUBJECT_ID_CHARS
WIDEST_REF = "\N{GRINNING FACE}" * MAX_REF_CHARS  # 4 UTF-8 bytes a character


def upstream(kind: type[r.UpstreamEvent], subject: str = "S-1", **fields: Any) -> Any:
    return kind(
        event_id="ev-1",
        occurred_at=T0,
        source=System.cctv if "investigation_id" in fields else System.orders,
        subject_id=subject,
        identifiers=r.Identifiers(customer_id="C-1"),
        **fields,
    )


def opened(iid: str) -> r.InvestigationOpened:
    made: r.InvestigationOpened = upstream(r.InvestigationOpened, investigation_id=iid, reason="r")
    return made


def disclosed(ref: str | None, subject: str = "S-1") -> r.DataDisclosed:
    made: r.DataDisclosed = upstream(
        r.DataDisclosed,
        subject,
        disclosure_id="D-1",
        recipient="Credit reference agencies",
        categories=[Category.credit],
        recipient_ref=ref,
    )
    return made


# --- the references' bound ---------------------------------------------------------------

BAD_REFS = {
    "one-too-long": "I" * (MAX_REF_CHARS + 1),
    "600-kB": "x" * 600_000,
    "nul": "INV-1\x00",
    "newline": "INV-1\n",
}


@pytest.mark.parametrize("kind", [r.InvestigationOpened, r.InvestigationClosed])
@pytest.mark.parametrize("iid", [*BAD_REFS.values(), ""], ids=[*BAD_REFS, "empty"])
def test_an_investigation_id_is_a_bounded_printable_reference(
    kind: type[r.UpstreamEvent], iid: str
) -> None:
    extra = {"reason": "r"} if kind is r.InvestigationOpened else {}
    with pytest.raises(ValidationError, match="printable characters"):
        upstream(kind, investigation_id=iid, **extra)


@pytest.mark.parametrize("iid", ["I" * MAX_REF_CHARS, "INV 2026/001", "Ärger-1"])
def test_an_investigation_id_within_the_bound_is_taken(iid: str) -> None:
    assert opened(iid).investigation_id == iid


@pytest.mark.parametrize("ref", BAD_REFS.values(), ids=BAD_REFS.keys())
def test_a_plaintext_recipient_ref_is_a_bounded_printable_reference(ref: str) -> None:
    with pytest.raises(ValidationError, match="printable characters"):
        disclosed(ref)


def test_an_empty_recipient_ref_is_still_no_reference() -> None:
    assert disclosed("").recipient_ref == ""
    assert disclosed(None).recipient_ref is None


class OneKey:
    """A KeySource holding one subject's one key."""

    def __init__(self, key: DataKey) -> None:
        self.the_key = key

    def current_key(self, _subject_id: str, _scope: str) -> DataKey:
        return self.the_key

    def key(self, key_id: str) -> DataKey | None:
        return self.the_key if key_id == self.the_key.key_id else None


def test_the_ciphertext_of_the_widest_reference_under_the_longest_key_id_is_taken() -> None:
    """A personal field arrives sealed: the bound on its ciphertext must take every
    reference within MAX_REF_CHARS, whoever's key sealed it."""
    key = DataKey.generate(LONGEST_SUBJECT, "s" * 64)
    sealed = encrypt_field(key, LONGEST_SUBJECT, "recipient_ref", WIDEST_REF)
    assert disclosed(sealed, LONGEST_SUBJECT).recipient_ref == sealed
    with pytest.raises(ValidationError, match="encrypted reference"):
        disclosed(sealed + "A", LONGEST_SUBJECT)


def test_a_sealed_recipient_ref_over_the_bound_is_refused_once_opened() -> None:
    """Its ciphertext fits; its plaintext is checked when the ingest agent opens it (an
    opened record is validated again), so it never reaches the facts."""
    key = DataKey.generate("S-1")
    too_long = disclosed(None).model_copy(update={"recipient_ref": "R" * (MAX_REF_CHARS + 1)})
    sealed = encrypt_record(too_long, OneKey(key), schema_dir=SCHEMAS)
    assert sealed.recipient_ref is not None
    assert sealed.recipient_ref.startswith("pv1:")
    with pytest.raises(ValidationError, match="printable characters"):
        decrypt_record(sealed, OneKey(key), schema_dir=SCHEMAS)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_an_over_long_reference_on_the_wire_is_an_invalid_record(use_async: bool) -> None:
    """What the ingest agent dead-letters: the bytes are a legal Avro record under a
    committed schema, and decoding refuses them (``invalid_record``) without quoting."""
    serde = local_serde(LocalRegistry())
    datum = {**opened("INV-1").model_dump(), "investigation_id": "x" * 600_000}
    data = serde.encode_datum(r.InvestigationOpened.fullname(), datum)
    assert len(data) < KAFKA_RECORD_LIMIT
    with pytest.raises(DecodeError) as info:
        decode(serde, data, use_async=use_async)
    assert info.value.reason == "invalid_record"
    assert "investigation_id" in info.value.detail
    assert "xxxxxxxx" not in info.value.detail


# --- what the facts can hold -------------------------------------------------------------


def test_a_subjects_facts_at_every_bound_stay_far_below_kafkas_record_limit() -> None:
    """Every list in the facts full, every reference as wide as allowed, sealed under
    the longest key id as the changelog holds it: well within one record."""
    dm = load_datamap()
    key = DataKey.generate(LONGEST_SUBJECT, "s" * 64)
    at = [T0 + timedelta(minutes=n) for n in range(100)]
    disclosures = [
        Disclosure(
            recipient=recipient.name,
            recipient_ref=ref,
            categories=recipient.categories,
            first_at=at[0],
            last_at=at[1],
        )
        for recipient in dm.recipients
        for ref in [None, *(f"{n:03}" + WIDEST_REF[3:] for n in range(MAX_REFS_PER_RECIPIENT))]
    ]
    facts = SubjectFacts(
        latest_financial_record_at=at[0],
        credit_closed_at=at[0],
        balance_at=at[0],
        open_investigation_ids=tuple(
            f"{n:03}" + "I" * (MAX_REF_CHARS - 3) for n in range(MAX_OPEN_INVESTIGATIONS)
        ),
        unlisted_investigation_open=True,
        closed_investigations=tuple(
            (f"{n:03}" + "C" * (MAX_REF_CHARS - 3), at[n % 100])
            for n in range(MAX_CLOSED_INVESTIGATIONS)
        ),
        investigation_closed_at=at[2],
        disclosures=tuple(disclosures),
    )
    value = sealing.seal(facts.model_dump(mode="json"), sealing.FACTS, LONGEST_SUBJECT, key)
    size = len(LONGEST_SUBJECT) + len(json.dumps(value).encode())
    assert size < KAFKA_RECORD_LIMIT // 4, size
