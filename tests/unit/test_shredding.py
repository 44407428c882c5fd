"""Crypto-shredding, the pure parts: field ciphertext, wrapped keys, the ring, and the
contract's personal-field marks (privops.core.fieldcrypt, subject_keys, personal)."""

from __future__ import annotations

import copy
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from privops.adapters.avro import Codec, Contract, load_versions, to_avro
from privops.adapters.guard import fingerprint
from privops.core.errors import DecodeError
from privops.core.fieldcrypt import (
    MAIN_SCOPE,
    DataKey,
    MalformedField,
    ShreddedKey,
    TamperedField,
    decrypt_field,
    encrypt_field,
    is_encrypted,
    make_key_id,
    parse_field,
    split_key_id,
)
from privops.core.personal import (
    PERSONAL,
    PERSONAL_ATTR,
    PersonalPath,
    fields_only,
    map_personal,
    personal_paths,
    visit_model,
)
from privops.core.subject_keys import (
    Kek,
    KeyRing,
    KeyUnwrapFailed,
    SubjectKey,
    create,
    retained_scope,
    retained_until,
    rewrap,
    unwrap,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
ANN, BOB = "subj-ann", "subj-bob"
EMAIL = "ann@example.com"


def lookup(*keys: DataKey) -> Any:
    return {k.key_id: k for k in keys}.get


@pytest.fixture
def kek() -> Kek:
    return Kek(1, bytes(range(32)))


# --- field ciphertext -----------------------------------------------------------------------


def test_a_field_round_trips_and_names_its_key() -> None:
    key = DataKey.generate(ANN)
    token = encrypt_field(key, ANN, "identifiers.email", EMAIL)
    assert token.startswith(f"pv1:{key.key_id}:")
    assert EMAIL not in token
    assert parse_field(token)[0] == key.key_id
    assert decrypt_field(token, ANN, "identifiers.email", lookup(key)) == EMAIL


def test_the_same_value_encrypts_differently_each_time() -> None:
    key = DataKey.generate(ANN)
    assert encrypt_field(key, ANN, "f", EMAIL) != encrypt_field(key, ANN, "f", EMAIL)


def test_ciphertext_moved_to_another_field_does_not_decrypt() -> None:
    key = DataKey.generate(ANN)
    token = encrypt_field(key, ANN, "identifiers.email", EMAIL)
    with pytest.raises(TamperedField) as info:
        decrypt_field(token, ANN, "identifiers.phone", lookup(key))
    assert info.value.reason == "tampered_field"


def test_ciphertext_moved_to_another_subject_does_not_decrypt() -> None:
    ann, bob = DataKey.generate(ANN), DataKey.generate(BOB)
    token = encrypt_field(ann, ANN, "identifiers.email", EMAIL)
    with pytest.raises(TamperedField):
        decrypt_field(token, BOB, "identifiers.email", lookup(ann, bob))


def test_a_field_is_encrypted_only_with_its_own_subjects_key() -> None:
    with pytest.raises(ValueError, match="own subject"):
        encrypt_field(DataKey.generate(BOB), ANN, "f", EMAIL)


def test_an_altered_ciphertext_is_tampered() -> None:
    key = DataKey.generate(ANN)
    token = encrypt_field(key, ANN, "f", EMAIL)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TamperedField):
        decrypt_field(flipped, ANN, "f", lookup(key))


def test_a_missing_key_is_shredded_and_the_error_keeps_the_value_out() -> None:
    key = DataKey.generate(ANN)
    token = encrypt_field(key, ANN, "f", EMAIL)
    with pytest.raises(ShreddedKey) as info:
        decrypt_field(token, ANN, "f", lookup())
    assert isinstance(info.value, DecodeError)
    assert info.value.reason == "shredded_key"
    assert info.value.key_id == key.key_id
    assert EMAIL not in str(info.value)


@pytest.mark.parametrize(
    "token",
    [
        EMAIL,
        "pv1:",
        "pv1:no-key-id",
        "pv1:subj/main/0011223344556677:",
        "pv1:subj/main/0011223344556677:not*base64",
        "pv1:subj/main/0011223344556677:AAAA",
        "pv1:subj/Main/0011223344556677:" + "A" * 40,
        "pv1:subj/main/xyz:" + "A" * 40,
        "pv2:subj/main/0011223344556677:" + "A" * 40,
    ],
)
def test_malformed_fields_are_refused(token: str) -> None:
    key = DataKey(make_key_id("subj", MAIN_SCOPE, "0011223344556677"), bytes(32))
    assert not is_encrypted(token)
    with pytest.raises(MalformedField) as info:
        decrypt_field(token, "subj", "f", lookup(key))
    assert info.value.reason == "malformed_field"


@given(
    subject=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1),
    field=st.text(max_size=40),
    value=st.text(),
)
def test_any_text_round_trips(subject: str, field: str, value: str) -> None:
    subject = subject[:200]
    if not subject.isprintable():
        return
    key = DataKey.generate(subject, "retained:purchases:2032-03-31")
    token = encrypt_field(key, subject, field, value)
    assert is_encrypted(token)
    assert decrypt_field(token, subject, field, lookup(key)) == value


def test_key_ids_split_back_even_when_subject_ids_hold_separators() -> None:
    key_id = make_key_id("crm:42/a", "retained:purchases:2032-03-31", "00ff00ff00ff00ff")
    assert split_key_id(key_id) == ("crm:42/a", "retained:purchases:2032-03-31", "00ff00ff00ff00ff")


def test_a_bad_key_id_is_refused_every_time_it_comes() -> None:
    # split_key_id remembers the ids it has split: never a refusal.
    for _ in range(2):
        with pytest.raises(MalformedField):
            split_key_id("subj/Main/0011223344556677")


@pytest.mark.parametrize("scope", ["", "Main", "a/b", "x" * 65, "has space"])
def test_bad_scopes_are_refused(scope: str) -> None:
    with pytest.raises(ValueError, match="scope"):
        DataKey.generate(ANN, scope)


def test_a_data_key_never_shows_its_secret() -> None:
    key = DataKey.generate(ANN)
    assert key.secret.hex() not in repr(key)
    assert repr(key.secret) not in repr(key)


# --- wrapped keys -------------------------------------------------------------------------


def test_wrap_round_trips_and_keeps_the_metadata(kek: Kek) -> None:
    record, key = create(ANN, MAIN_SCOPE, kek, NOW)
    assert (record.subject_id, record.scope, record.kek_version) == (ANN, MAIN_SCOPE, 1)
    assert record.topic_key() == key.key_id.encode()
    assert key.secret not in record.wrapped
    assert unwrap(record, kek) == key


def test_a_wrapped_key_moved_to_another_subject_does_not_unwrap(kek: Kek) -> None:
    record, _ = create(ANN, MAIN_SCOPE, kek, NOW)
    bob_id = make_key_id(BOB, MAIN_SCOPE, split_key_id(record.key_id)[2])
    swapped = record.model_copy(update={"subject_id": BOB, "key_id": bob_id})
    swapped = SubjectKey.model_validate(swapped.model_dump())
    with pytest.raises(KeyUnwrapFailed):
        unwrap(swapped, kek)


def test_the_wrong_kek_does_not_unwrap(kek: Kek) -> None:
    record, _ = create(ANN, MAIN_SCOPE, kek, NOW)
    with pytest.raises(KeyUnwrapFailed):
        unwrap(record, Kek(1, bytes(32)))
    with pytest.raises(KeyUnwrapFailed, match="version 1"):
        unwrap(record, Kek(2, bytes(range(32))))


def test_rewrap_keeps_the_data_key_and_its_age(kek: Kek) -> None:
    record, key = create(ANN, MAIN_SCOPE, kek, NOW)
    new = Kek(2, bytes(range(1, 33)))
    moved = rewrap(record, kek, new)
    assert (moved.kek_version, moved.created_at, moved.key_id) == (2, NOW, record.key_id)
    assert unwrap(moved, new) == key


@pytest.mark.parametrize(
    "change",
    [
        {"subject_id": BOB},
        {"scope": "retained:purchases:2032-03-31"},
        {"wrapped": b"short"},
        {"created_at": datetime(2026, 3, 10)},
        {"kek_version": 0},
    ],
    ids=["subject", "scope", "wrapped", "naive", "version"],
)
def test_inconsistent_key_records_are_refused(kek: Kek, change: dict[str, Any]) -> None:
    record, _ = create(ANN, MAIN_SCOPE, kek, NOW)
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError, any field
        SubjectKey.model_validate({**record.model_dump(), **change})


def test_the_key_record_matches_its_committed_schema_and_round_trips(kek: Kek) -> None:
    committed = load_versions(SCHEMAS)["privops.keys.SubjectKey"]
    assert [v.version for v in committed] == [1]
    assert committed[-1].schema == to_avro(SubjectKey)
    record, _ = create(ANN, "retained:purchases:2032-03-31", kek, NOW)
    payload = Codec(SCHEMAS).encode(record)
    datum = fastavro.schemaless_reader(io.BytesIO(payload), committed[-1].schema, None)
    assert SubjectKey.model_validate(datum) == record


# --- scopes and what an erasure destroys ---------------------------------------------------


def test_retained_scopes_carry_their_end_date() -> None:
    scope = retained_scope("purchases", date(2032, 3, 31))
    assert scope == "retained:purchases:2032-03-31"
    assert retained_until(scope) == date(2032, 3, 31)
    assert retained_until(MAIN_SCOPE) is None
    assert retained_until("retained:purchases:soon") is None


# --- the ring ----------------------------------------------------------------------------


def _ring(kek: Kek, cache_size: int = 16) -> KeyRing:
    return KeyRing(lambda record: unwrap(record, kek), cache_size)


def test_a_tombstone_shreds_the_key_and_purges_the_cache(kek: Kek) -> None:
    ring = _ring(kek)
    record, key = create(ANN, MAIN_SCOPE, kek, NOW)
    ring.apply(record.key_id, record)
    token = encrypt_field(key, ANN, "f", EMAIL)
    assert decrypt_field(token, ANN, "f", ring.get) == EMAIL
    assert ring.cached() == 1
    ring.apply(record.key_id, None)
    assert (len(ring), ring.cached(), ring.records(ANN)) == (0, 0, [])
    with pytest.raises(ShreddedKey):
        decrypt_field(token, ANN, "f", ring.get)


def test_forgetting_a_subject_leaves_the_others(kek: Kek) -> None:
    ring = _ring(kek)
    for subject in (ANN, ANN, BOB):
        record, _ = create(subject, MAIN_SCOPE, kek, NOW)
        ring.apply(record.key_id, record)
    assert len(ring.forget_subject(ANN)) == 2
    assert ring.current(ANN) is None
    assert ring.current(BOB) is not None


def test_readers_converge_on_one_current_key_whatever_the_order(kek: Kek) -> None:
    """Two creators raced: both keys stay readable, and every reader writes under one."""
    first, k1 = create(ANN, MAIN_SCOPE, kek, NOW)
    second, k2 = create(ANN, MAIN_SCOPE, kek, NOW + timedelta(milliseconds=3))
    forward, backward = _ring(kek), _ring(kek)
    for record in (first, second):
        forward.apply(record.key_id, record)
    for record in (second, first):
        backward.apply(record.key_id, record)
    assert forward.current(ANN) == backward.current(ANN) == k2
    assert forward.get(k1.key_id) == k1
    tie, _ = create(ANN, MAIN_SCOPE, kek, NOW + timedelta(milliseconds=3))
    forward.apply(tie.key_id, tie)
    expected = max(tie.key_id, second.key_id)
    assert (current := forward.current(ANN)) is not None
    assert current.key_id == expected


def test_the_unwrapped_cache_is_bounded(kek: Kek) -> None:
    ring = _ring(kek, cache_size=2)
    keys = []
    for _ in range(3):
        record, key = create(ANN, MAIN_SCOPE, kek, NOW)
        ring.apply(record.key_id, record)
        keys.append(key)
    assert [ring.get(k.key_id) for k in keys] == keys
    assert ring.cached() == 2


def test_a_record_under_another_key_is_refused(kek: Kek) -> None:
    record, _ = create(ANN, MAIN_SCOPE, kek, NOW)
    with pytest.raises(ValueError, match="arrived under"):
        _ring(kek).apply("other", record)


# --- the contract's personal marks -------------------------------------------------------

# A field that can carry text and is named like contact details or a person's name.
_NAMED_LIKE = re.compile(
    r"(^|_)(e?mail|email_address|phone|mobile|tel|name|names|surname|forename|address|"
    r"postcode|postal|street|birth|dob)(_|$)"
)


def _string_capable(avro: Any) -> bool:
    if isinstance(avro, list):
        return any(_string_capable(b) for b in avro)
    if isinstance(avro, dict):
        kind = avro.get("type")
        if kind == "array":
            return _string_capable(avro["items"])
        if kind == "map":
            return _string_capable(avro["values"])
        return bool(kind == "string")
    return bool(avro == "string")


def unmarked_contact_fields(schema: dict[str, Any]) -> list[str]:
    """Fields named like contact details or names that hold text but are not marked."""
    found: list[str] = []
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for field in node.get("fields", []):
                if (
                    _NAMED_LIKE.search(field["name"])
                    and _string_capable(field["type"])
                    and field.get(PERSONAL_ATTR) is not True
                ):
                    found.append(f"{node['name']}.{field['name']}")
            stack.extend(v for k, v in node.items() if k in ("fields", "type", "items", "values"))
    return found


def _all_versions() -> list[Any]:
    return [v for vs in load_versions(SCHEMAS).values() for v in vs]


@pytest.mark.parametrize("version", _all_versions(), ids=lambda v: f"{v.fullname}.v{v.version}")
def test_every_contact_like_field_is_marked_personal(version: Any) -> None:
    assert unmarked_contact_fields(version.schema) == []
    personal_paths(version.schema)  # marks sit only on strings (raises otherwise)


def test_the_check_finds_an_unmarked_contact_field() -> None:
    schema = copy.deepcopy(load_versions(SCHEMAS)["privops.events.CustomerCreated"][-1].schema)
    schema["fields"].append({"name": "postal_address", "type": ["null", "string"]})
    schema["fields"].append({"name": "display_name_present", "type": "boolean"})
    assert unmarked_contact_fields(schema) == ["CustomerCreated.postal_address"]


def test_every_upstream_event_marks_the_subjects_contact_details() -> None:
    for name, versions in load_versions(SCHEMAS).items():
        if name.startswith("privops.events."):
            for version in versions:
                paths = {str(p) for p in personal_paths(version.schema)}
                assert {"identifiers.email", "identifiers.phone"} <= paths, name


def test_paths_cover_maps_arrays_and_nested_records() -> None:
    latest = {n: vs[-1].schema for n, vs in load_versions(SCHEMAS).items()}
    paths = {n: [str(p) for p in personal_paths(s)] for n, s in latest.items()}
    assert paths["privops.tasks.Rectify"] == [
        "identifiers{}",
        "previous_identifiers{}[]",
        "changes{}",
    ]
    assert paths["privops.notifications.SubjectNotification"] == [
        "document",
        "exports[].location",
        "representative",
    ]
    assert paths["privops.results.TaskCompleted"] == ["export.location"]
    assert paths["privops.notifications.RecipientNotification"] == ["recipient_refs[]", "changes{}"]
    assert paths["privops.events.InvestigationOpened"] == [
        "identifiers.email",
        "identifiers.phone",
        "reason",
    ]
    assert paths["privops.audit.AuditEvent"] == []


def test_a_mark_on_something_other_than_text_is_refused() -> None:
    schema = {
        "type": "record",
        "name": "Bad",
        "namespace": "t",
        "fields": [{"name": "flag", "type": "boolean", PERSONAL_ATTR: True}],
    }
    with pytest.raises(ValueError, match="flag"):
        personal_paths(schema)


def _stripped(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _stripped(v) for k, v in schema.items() if k != PERSONAL_ATTR}
    if isinstance(schema, list):
        return [_stripped(v) for v in schema]
    return schema


def test_marks_change_no_fingerprint_so_unmarked_writers_stay_trusted() -> None:
    versions = load_versions(SCHEMAS)
    contract = Contract(versions)
    marked = [v for v in _all_versions() if PERSONAL_ATTR in v.text]
    assert len(marked) >= 30
    for version in marked:
        plain = _stripped(version.schema)
        assert plain != version.schema
        assert fingerprint(plain) == fingerprint(version.schema)
        found = contract.version_of(json.dumps(plain))
        assert (found.fullname, found.version) == (version.fullname, version.version)


def test_map_personal_visits_each_value_under_its_own_label() -> None:
    schema = load_versions(SCHEMAS)["privops.tasks.Erase"][-1].schema
    datum: dict[str, Any] = {"task_id": "t1", "identifiers": {"email": EMAIL, "customer_id": "c1"}}
    seen: list[tuple[str, str]] = []

    def visit(label: str, value: str) -> str:
        seen.append((label, value))
        return value.upper()

    out = map_personal(datum, personal_paths(schema), visit)
    assert sorted(seen) == [("identifiers{customer_id}", "c1"), ("identifiers{email}", EMAIL)]
    assert out["identifiers"] == {"email": EMAIL.upper(), "customer_id": "C1"}
    assert datum["identifiers"]["email"] == EMAIL  # the input is left as it was
    assert map_personal({"task_id": "t1"}, personal_paths(schema), visit) == {"task_id": "t1"}


class Contact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    email: Annotated[str | None, PERSONAL] = None
    name: Annotated[str, PERSONAL, Field(max_length=12)] = ""
    customer_id: str = "c1"


class Person(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    contact: Contact
    other: Contact = Contact()
    note: Annotated[str | None, PERSONAL] = None

    @model_validator(mode="after")
    def _checked(self) -> Person:
        if self.note == "refused":
            raise ValueError("the record's own check")
        return self


PERSON_PATHS = tuple(
    PersonalPath(steps)
    for steps in (("contact", "email"), ("contact", "name"), ("note",), ("other", "email"))
)


def test_visit_model_visits_a_model_in_place_as_map_personal_visits_its_dump() -> None:
    person = Person(contact=Contact(email=EMAIL, name="Ann"), note="likes tea")
    seen: list[tuple[str, str]] = []

    def visit(label: str, value: str) -> str:
        seen.append((label, value))
        return value.upper()

    out = visit_model(person, PERSON_PATHS, visit)
    assert fields_only(PERSON_PATHS)
    assert seen == [("contact.email", EMAIL), ("contact.name", "Ann"), ("note", "likes tea")]
    assert out == Person.model_validate(map_personal(person.model_dump(), PERSON_PATHS, visit))
    assert out.contact == Contact(email=EMAIL.upper(), name="ANN")
    assert out.other is person.other  # nothing on its path changed: shared, not rebuilt
    assert person.contact.email == EMAIL  # the input is left as it was
    assert visit_model(person, PERSON_PATHS, lambda _label, value: value) is person


def test_visit_model_validates_each_model_it_changes_again() -> None:
    person = Person(contact=Contact(email=EMAIL, name="Ann"), note="likes tea")
    with pytest.raises(ValidationError, match="at most 12 characters"):
        visit_model(person, PERSON_PATHS, lambda _label, value: value * 5)
    with pytest.raises(ValidationError, match="the record's own check"):
        visit_model(person, PERSON_PATHS, lambda label, v: "refused" if label == "note" else v)


def test_visit_model_refuses_a_personal_field_that_holds_no_string() -> None:
    class Odd(BaseModel):
        count: int = 3

    with pytest.raises(TypeError, match="count: a personal field holds a string, not int"):
        visit_model(Odd(), (PersonalPath(("count",)),), lambda _label, value: value)


def test_paths_into_lists_or_maps_are_not_fields_only() -> None:
    schema = load_versions(SCHEMAS)["privops.tasks.Erase"][-1].schema
    assert not fields_only(personal_paths(schema))  # identifiers{}: a map's values
    assert fields_only(PERSON_PATHS)
