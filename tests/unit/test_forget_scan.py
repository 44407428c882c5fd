"""The forget-check matcher (privops.core.forget_scan): plaintext in the bytes records are
written as (Avro, JSON), emails in any case, phones in any layout privops normalises,
ciphertext judged by whether its key is still live, and no searched value in any output."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest

from privops import contract
from privops.adapters.avro import Codec
from privops.core import records as r
from privops.core.fieldcrypt import MAIN_SCOPE, DataKey, encrypt_field, make_key_id
from privops.core.forget_scan import (
    Kind,
    Latest,
    Matcher,
    ValueKind,
    identity_values,
    key_subject,
    mask,
    needle,
    needles,
    placed,
)
from privops.core.identity import IdentityMap, merge
from privops.core.vocab import System

SUBJECT = "CUST-42"
EMAIL = "Ann.Smith@Example.com"
PHONE = "+447700900123"
NAME = "Zoë Brontë"


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(contract.schema_dir())


def avro_event(codec: Codec, email: str | None, phone: str | None, subject: str = SUBJECT) -> bytes:
    record = r.CustomerCreated(
        event_id="e-1",
        occurred_at=datetime(2026, 1, 5, tzinfo=UTC),
        source=System.crm,
        subject_id=subject,
        identifiers=r.Identifiers(customer_id=subject, email=email, phone=phone),
    )
    return codec.encode(record)


def matcher(*values: str, live: frozenset[str] = frozenset()) -> Matcher:
    pairs = [(f"value {i}", v) for i, v in enumerate(values, 1)]
    return Matcher(SUBJECT, tuple(needles(pairs)), live)


def kinds(hits: list) -> list[tuple[Kind, str]]:  # type: ignore[type-arg]
    return [(h.kind, h.what.split(" (")[0]) for h in hits]


# --- plaintext ------------------------------------------------------------------------------


def test_plaintext_in_avro_bytes_is_found_with_the_value_given_in_another_case(
    codec: Codec,
) -> None:
    data = avro_event(codec, "ann.smith@example.com", PHONE)
    hits, shredded = matcher(EMAIL.upper()).record(SUBJECT.encode(), data)
    assert kinds(hits) == [(Kind.PLAINTEXT, "value 1")]
    assert hits[0].part == "value"
    assert hits[0].at.startswith("byte ")
    assert shredded == 0


def test_avro_without_the_value_has_no_finding(codec: Codec) -> None:
    data = avro_event(codec, "someone.else@example.com", "+447700900999")
    assert matcher(EMAIL, "07700 900123", NAME).record(SUBJECT.encode(), data) == ([], 0)


def test_a_hit_in_a_decoded_avro_record_is_placed_on_its_field(codec: Codec) -> None:
    data = avro_event(codec, EMAIL, PHONE)
    hits, _ = matcher(EMAIL, "07700 900123").record(None, data)
    assert all(h.at.startswith("byte ") for h in hits)
    writer = codec.schema_text(r.CustomerCreated.fullname())
    decoded = codec.decode(writer, data).model_dump(mode="json")
    assert [h.at for h in placed(hits, decoded)] == ["identifiers.email", "identifiers.phone"]


def test_a_value_held_as_a_json_map_key_is_not_printed_in_its_path() -> None:
    data = json.dumps(
        {"seen": {EMAIL.lower(): {"phone": "07700 900123"}}, "by_name": {NAME: 1}}
    ).encode()
    hits, _ = matcher(EMAIL, "07700 900123", NAME).record(None, data)
    paths = sorted(h.at for h in hits)
    assert paths == ["by_name.{matching key}", "seen.{matching key}", "seen.{matching key}.phone"]
    shown = " ".join(f"{h.what} {h.at}" for h in hits).lower()
    assert EMAIL.lower() not in shown
    assert NAME.lower() not in shown


def test_a_map_key_that_is_no_searched_value_is_still_named_in_the_path() -> None:
    hits, _ = matcher(EMAIL).record(None, json.dumps({"notes": {"x": EMAIL}}).encode())
    assert [h.at for h in hits] == ["notes.x"]


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_plaintext_in_json_is_found_escaped_or_not_and_named_by_its_path(
    ensure_ascii: bool,
) -> None:
    data = json.dumps(
        {"subject_id": SUBJECT, "profile": {"names": ["x", NAME]}}, ensure_ascii=ensure_ascii
    ).encode()
    assert (b"\\u00eb" in data) is ensure_ascii
    hits, _ = matcher(NAME).record(None, data)
    assert [(h.kind, h.at) for h in hits] == [(Kind.PLAINTEXT, "profile.names[1]")]


def test_identity_record_json_is_searched_like_any_json() -> None:
    identity = merge(
        None, SUBJECT, System.crm, {"email": EMAIL, "phone": "07700 900123"}, datetime.now(UTC)
    )
    data = identity.__pydantic_serializer__.to_json(identity)
    hits, _ = matcher("ann.smith@EXAMPLE.com", "+44 7700 900123").record(SUBJECT.encode(), data)
    assert {h.at for h in hits} == {"systems.crm.email.value", "systems.crm.phone.value"}


@pytest.mark.parametrize(
    "written",
    [
        "+447700900123",
        "+44 7700 900123",
        "07700900123",
        "07700 900 123",
        "0044 7700 900123",
        "+44 (0)7700 900123",
        "447700900123",
        "tel:07700-900-123;",
    ],
)
def test_a_phone_is_found_in_any_layout_privops_normalises(written: str) -> None:
    hits, _ = matcher("07700 900123").record(None, f"call {written} now".encode())
    assert kinds(hits) == [(Kind.PLAINTEXT, "value 1")]


@pytest.mark.parametrize("written", ["07700 900124", "077009001234", "+33 7700 900 12"])
def test_another_number_is_not_the_phone(written: str) -> None:
    assert matcher("+447700900123").record(None, written.encode()) == ([], 0)


def test_a_value_too_short_to_mean_anything_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="value 1 is shorter") as caught:
        needles([("value 1", "Ann")])
    assert "Ann" not in str(caught.value)


def test_the_same_value_twice_is_one_needle_and_the_first_label_wins() -> None:
    found = needles([("value 1", EMAIL), ("identity record email", EMAIL.lower())])
    assert [n.label for n in found] == ["value 1"]
    assert [n.kind for n in needles([("a", "07700 900123"), ("b", "+447700900123")])] == [
        ValueKind.PHONE
    ]


# --- ciphertext and keys --------------------------------------------------------------------


def token(subject: str = SUBJECT, nonce: str = "00000000000000aa") -> tuple[str, str]:
    key = DataKey(make_key_id(subject, MAIN_SCOPE, nonce), os.urandom(32))
    return key.key_id, encrypt_field(key, subject, "identifiers{email}", EMAIL)


def test_ciphertext_under_a_live_key_is_found_and_under_a_destroyed_one_only_counted(
    codec: Codec,
) -> None:
    live_id, live = token()
    dead_id, dead = token(nonce="00000000000000bb")
    keys = Latest()
    keys.apply(0, 5, live_id.encode(), b"wrapped")
    keys.apply(1, 6, dead_id.encode(), b"wrapped")
    keys.apply(1, 9, dead_id.encode(), None)
    assert keys.live_keys() == {live_id}
    data = avro_event(codec, live, dead)
    hits, shredded = Matcher(SUBJECT, (), keys.live_keys()).record(None, data)
    assert [(h.kind, h.what.split(" (")[0]) for h in hits] == [
        (Kind.LIVE_CIPHERTEXT, f"key {live_id}")
    ]
    assert "decryptable by anyone holding the KEK" in hits[0].what
    assert shredded == 1


def test_a_key_recreated_after_its_tombstone_is_live_again_and_partitions_are_apart() -> None:
    keys = Latest()
    keys.apply(0, 1, b"S/main/0000000000000001", None)
    keys.apply(0, 2, b"S/main/0000000000000001", b"v")
    keys.apply(2, 1, b"S/main/0000000000000002", b"v")
    keys.apply(3, 1, b"S/main/0000000000000002", None)  # another partition's tombstone
    assert keys.live_keys() == {"S/main/0000000000000001", "S/main/0000000000000002"}


def test_only_this_subjects_tokens_count_even_when_its_id_prefixes_another() -> None:
    other_id, other = token(SUBJECT + "0")
    hits, shredded = Matcher(SUBJECT, (), frozenset({other_id})).record(None, other.encode())
    assert (hits, shredded) == ([], 0)


def test_a_token_with_json_escaped_slashes_is_still_found() -> None:
    key_id, value = token()
    data = json.dumps({"note": value}).replace("/", "\\/").encode()
    hits, _ = Matcher(SUBJECT, (), frozenset({key_id})).record(None, data)
    assert [(h.kind, h.at) for h in hits] == [(Kind.LIVE_CIPHERTEXT, "note")]


@pytest.mark.parametrize("subject", ["jos\u00e9-1", 'A "quoted" \\ id', "\u5c71\u7530"])
def test_a_token_of_a_subject_id_json_escapes_is_still_found(subject: str) -> None:
    """A table value is JSON, which escapes non-ASCII characters, quotes and backslashes
    of the subject id inside a key id: for such an id a live ciphertext in a changelog
    or a store went unseen and the check passed (review, session 44)."""
    key_id, value = token(subject)
    for data in (
        json.dumps({"note": value}).encode(),
        json.dumps({"note": value}, ensure_ascii=False).encode(),
        value.encode(),
    ):
        hits, _ = Matcher(subject, (), frozenset({key_id})).record(None, data)
        assert [h.kind for h in hits] == [Kind.LIVE_CIPHERTEXT], data
    hits, shredded = Matcher(subject, (), frozenset()).record(None, json.dumps([value]).encode())
    assert (hits, shredded) == ([], 1)


def test_key_ids_name_their_subject_from_the_right() -> None:
    assert key_subject("a/b/main/0123456789abcdef") == "a/b"
    assert key_subject("nonsense") is None


def test_latest_entries_for_one_key_only() -> None:
    entries = Latest(only=SUBJECT.encode())
    entries.apply(0, 1, SUBJECT.encode(), b"{}")
    entries.apply(0, 2, b"someone-else", b"{}")
    entries.apply(1, 3, SUBJECT.encode(), b"{}")
    entries.apply(1, 4, SUBJECT.encode(), None)
    assert entries.live() == [(SUBJECT.encode(), 0, 1)]


# --- identity records -----------------------------------------------------------------------


def test_identity_values_come_from_plaintext_identity_records_only() -> None:
    identity = merge(
        None, SUBJECT, System.crm, {"email": EMAIL, "customer_id": "C-1"}, datetime.now(UTC)
    )
    identity = merge(identity, SUBJECT, System.orders, {"phone": "07700 900123"}, datetime.now(UTC))
    data = identity.__pydantic_serializer__.to_json(identity)
    assert identity_values(data) == [
        ("identity record email", EMAIL.lower()),
        ("identity record phone", PHONE),
        ("identity record crm.email", EMAIL),
        ("identity record orders.phone", "07700 900123"),
    ]
    _, encrypted = token()
    sealed = IdentityMap.model_validate_json(data).model_dump(mode="json")
    sealed["email"]["value"] = encrypted
    sealed["systems"] = {}
    assert identity_values(json.dumps(sealed).encode()) == [("identity record phone", PHONE)]
    assert identity_values(None) == identity_values(b"\x00avro") == identity_values(b"[1]") == []


# --- nothing searched for is ever shown -----------------------------------------------------


def test_masks_show_one_character_at_most() -> None:
    assert mask(EMAIL, ValueKind.EMAIL) == "A***@***"
    assert mask("07700 900123", ValueKind.PHONE) == "0***"
    assert mask(NAME, ValueKind.TEXT) == "Z***"


def test_no_output_of_the_matcher_carries_a_searched_value(codec: Codec) -> None:
    key_id, value = token()
    values = (EMAIL, "07700 900123", NAME)
    m = matcher(*values, live=frozenset({key_id}))
    data = avro_event(codec, EMAIL, PHONE) + json.dumps({"n": NAME, "t": value}).encode()
    hits, _ = m.record(SUBJECT.encode(), data)
    assert len(hits) == 4
    shown = repr(m) + repr(hits) + " ".join(f"{h.what} {h.at}" for h in hits)
    shown += repr(needle(EMAIL, "value 1"))
    for secret in (*values, EMAIL.lower(), PHONE, "7700", "900123", "Bront", value):
        assert secret.lower() not in shown.lower()
