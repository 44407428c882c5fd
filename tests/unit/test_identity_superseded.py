"""Earlier identifiers (review, session 27): the identity map keeps the values a newer one
replaced, so an erasure's suppression covers the subject's old email (not an old phone:
carriers reassign numbers), its tasks carry them to the systems (whose rows under them
are the subject's where the row's owner key says so), and they are sealed wherever
privops stores or sends them.

Before, ``merge`` replaced a value and forgot it: a re-import under the old address was
not recognised as an erased person. What an old value must not reach, a stranger who
holds it now, is tested in test_reassigned_identifiers."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import fastavro
import pytest

from privops import contract
from privops.adapters.avro import Codec, latest_schemas, load_versions
from privops.connectors.reference import TelephonyConnector, open_store, seed_customers, seed_stores
from privops.core import records as r
from privops.core import sealing
from privops.core.fieldcrypt import DataKey, decrypt_field, is_encrypted
from privops.core.identity import (
    MAX_PREVIOUS,
    IdentityMap,
    Superseded,
    for_system,
    keeping,
    merge,
    normalise_phone,
    previous_for_system,
    suppression_keys,
    suppression_match,
)
from privops.core.personal import personal_paths
from privops.core.request import RequestRecord, TaskRecord
from privops.core.vocab import RequestState, RequestType, System, TaskAction

SECRET = b"test-secret-not-for-production"
ANN = "subj-ann"
T0 = datetime(2026, 7, 20, 9, 0, tzinfo=UTC)
OLD_PHONE, NEW_PHONE = "07700 900111", "07700 900222"
OLD_EMAIL, NEW_EMAIL = "ann.old@example.com", "ann.new@example.com"


def at(day: int) -> datetime:
    return T0 + timedelta(days=day)


def changed() -> IdentityMap:
    """Ann's phone (telephony) and email (marketing) changed before her erasure."""
    found = merge(None, ANN, System.telephony, {"phone": OLD_PHONE}, at(0))
    found = merge(
        found, ANN, System.marketing, {"email": OLD_EMAIL, "subscriber_ref": "M-1"}, at(0)
    )
    found = merge(found, ANN, System.telephony, {"phone": NEW_PHONE}, at(50))
    return merge(found, ANN, System.marketing, {"email": NEW_EMAIL}, at(50))


def earlier(found: IdentityMap, system: System, name: str) -> list[str]:
    return found.systems[system][name].earlier()


# --- merge ---------------------------------------------------------------------------------


def test_a_replaced_value_is_kept_as_an_earlier_one_per_system_and_globally() -> None:
    found = changed()
    assert for_system(found, System.telephony) == {"phone": NEW_PHONE}
    assert earlier(found, System.telephony, "phone") == [OLD_PHONE]
    assert earlier(found, System.marketing, "email") == [OLD_EMAIL]
    assert found.email is not None
    assert found.phone is not None
    assert (found.email.value, found.email.earlier()) == (NEW_EMAIL, [OLD_EMAIL])
    assert (found.phone.value, found.phone.earlier()) == ("+447700900222", ["+447700900111"])
    # When each was last asserted: what orders them, whatever order events came in.
    assert found.systems[System.telephony]["phone"].previous == (
        Superseded(value=OLD_PHONE, occurred_at=at(0)),
    )
    assert earlier(found, System.marketing, "subscriber_ref") == []


def test_earlier_values_are_newest_first_never_duplicated_and_bounded() -> None:
    found = merge(None, ANN, System.crm, {"email": "a@example.com"}, at(0))
    for day, letter in enumerate("bcab", start=1):  # a value comes back, then goes again
        found = merge(found, ANN, System.crm, {"email": f"{letter}@example.com"}, at(day))
    assert found.systems[System.crm]["email"].value == "b@example.com"
    assert earlier(found, System.crm, "email") == ["a@example.com", "c@example.com"]

    for day in range(10, 10 + 2 * MAX_PREVIOUS):
        found = merge(found, ANN, System.crm, {"email": f"n{day}@example.com"}, at(day))
    kept = earlier(found, System.crm, "email")
    assert len(kept) == MAX_PREVIOUS
    last = 10 + 2 * MAX_PREVIOUS - 1
    assert kept == [f"n{day}@example.com" for day in range(last - 1, last - 1 - MAX_PREVIOUS, -1)]
    assert found.email is not None
    assert len(found.email.previous) == MAX_PREVIOUS


@pytest.mark.parametrize(
    ("system", "identifiers", "day"),
    [
        pytest.param(System.telephony, {"phone": NEW_PHONE}, 50, id="redelivered"),
        pytest.param(System.telephony, {"phone": NEW_PHONE}, 10, id="current-value-late"),
        pytest.param(System.telephony, {"phone": OLD_PHONE}, 0, id="earlier-value-redelivered"),
        pytest.param(System.telephony, {"phone": OLD_PHONE}, 20, id="earlier-value-late"),
        pytest.param(System.marketing, {"email": OLD_EMAIL}, 1, id="earlier-email-late"),
    ],
)
def test_a_late_or_redelivered_event_of_a_known_value_changes_nothing(
    system: System, identifiers: dict[str, str], day: int
) -> None:
    """merge returns the map itself (the hot path skips the write): no churn, no reorder."""
    found = changed()
    assert merge(found, ANN, system, identifiers, at(day)) is found


def test_a_late_event_with_an_unknown_older_value_takes_its_place_by_time() -> None:
    found = changed()
    late = merge(found, ANN, System.telephony, {"phone": "07700 900333"}, at(-5))
    assert late is not found
    assert for_system(late, System.telephony) == {"phone": NEW_PHONE}  # current unchanged
    assert earlier(late, System.telephony, "phone") == [OLD_PHONE, "07700 900333"]
    assert late.phone is not None
    assert late.phone.value == "+447700900222"
    assert merge(late, ANN, System.telephony, {"phone": "07700 900333"}, at(-5)) is late


def test_a_late_value_older_than_every_one_kept_is_dropped_without_a_change() -> None:
    found = merge(None, ANN, System.crm, {"email": "n0@example.com"}, at(0))
    for day in range(1, MAX_PREVIOUS + 1):
        found = merge(found, ANN, System.crm, {"email": f"n{day}@example.com"}, at(day))
    ancient = {"email": "ancient@example.com"}
    assert merge(found, ANN, System.crm, ancient, at(-100)) is found


def test_an_identity_stored_before_earlier_values_loads_with_none() -> None:
    stored = {
        "subject_id": ANN,
        "systems": {"crm": {"email": {"value": OLD_EMAIL, "occurred_at": "2026-07-20T09:00:00Z"}}},
        "email": {"value": OLD_EMAIL, "occurred_at": "2026-07-20T09:00:00Z"},
        "phone": None,
    }
    found = IdentityMap.model_validate(stored)
    assert found.systems[System.crm]["email"].previous == ()
    moved = merge(found, ANN, System.crm, {"email": NEW_EMAIL}, at(1))
    assert earlier(moved, System.crm, "email") == [OLD_EMAIL]
    assert IdentityMap.model_validate(moved.model_dump(mode="json")) == moved


def test_an_identity_with_no_earlier_values_is_stored_as_before() -> None:
    """No ``previous`` key at all: a worker of before this field (``extra="forbid"``)
    still reads what this one writes, unless the subject has an earlier value."""
    found = merge(None, ANN, System.crm, {"contact_id": "K-1", "email": OLD_EMAIL}, at(0))
    stored = found.model_dump(mode="json")
    assert stored["systems"]["crm"]["email"] == {
        "value": OLD_EMAIL,
        "occurred_at": "2026-07-20T09:00:00Z",
    }
    assert "previous" not in json.dumps(stored)
    assert "previous" in json.dumps(changed().model_dump(mode="json"))


# --- suppression -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identifiers",
    [
        pytest.param({"email": OLD_EMAIL}, id="old-email"),
        pytest.param({"email": " Ann.Old@Example.com"}, id="old-email-other-case"),
        pytest.param({"email": NEW_EMAIL}, id="new-email"),
        pytest.param({"phone": NEW_PHONE}, id="new-phone"),
    ],
)
def test_a_re_import_under_an_earlier_email_or_a_current_value_is_recognised(
    identifiers: dict[str, str],
) -> None:
    keys = suppression_keys(SECRET, changed())
    assert suppression_match(keys, (SECRET,), identifiers) is not None


@pytest.mark.parametrize(
    ("identifiers", "system"),
    [
        pytest.param({"phone": OLD_PHONE}, None, id="old-phone"),
        pytest.param({"phone": "+44 7700 900111"}, None, id="old-phone-other-layout"),
        pytest.param({"phone": OLD_PHONE}, System.telephony, id="old-phone-from-its-system"),
    ],
)
def test_an_earlier_phone_is_not_suppressed(
    identifiers: dict[str, str], system: System | None
) -> None:
    """Carriers reassign a number: its next holder would be taken for the erased subject
    and every event of his dropped (review, session 27). Listed before."""
    keys = suppression_keys(SECRET, changed())
    assert suppression_match(keys, (SECRET,), identifiers, system) is None


def test_an_earlier_system_id_is_suppressed_for_its_system() -> None:
    found = merge(None, ANN, System.crm, {"contact_id": "K-1"}, at(0))
    found = merge(found, ANN, System.crm, {"contact_id": "K-2"}, at(1))
    keys = suppression_keys(SECRET, found)
    assert suppression_match(keys, (SECRET,), {"contact_id": "K-1"}, System.crm) is not None
    assert suppression_match(keys, (SECRET,), {"contact_id": "K-1"}, System.orders) is None


# --- what tasks carry ----------------------------------------------------------------------


def test_previous_for_system_gives_what_that_system_knew_the_subject_by_before() -> None:
    found = changed()
    assert previous_for_system(found, System.telephony) == {"phone": [OLD_PHONE]}
    assert previous_for_system(found, System.marketing) == {"email": [OLD_EMAIL]}
    assert previous_for_system(found, System.cctv) == {}
    # An email privops inferred for a system that never reported one: the subject's
    # earlier ones from any system come with it.
    assert previous_for_system(found, System.cctv, {"email": NEW_EMAIL}) == {"email": [OLD_EMAIL]}
    # Its own, when it reported one, never the global ones.
    assert previous_for_system(found, System.marketing, {"email": NEW_EMAIL}) == {
        "email": [OLD_EMAIL]
    }


def test_keeping_drops_an_erased_systems_earlier_values_from_the_global_ones() -> None:
    """What an erasure that keeps a system's data keeps: that system's identifiers, and
    the global email's earlier values only where a kept system knew them."""
    found = merge(None, ANN, System.orders, {"customer_id": "C-1", "email": NEW_EMAIL}, at(60))
    found = merge(found, ANN, System.marketing, {"email": OLD_EMAIL}, at(0))
    found = merge(found, ANN, System.marketing, {"email": NEW_EMAIL}, at(50))
    assert found.email is not None
    assert found.email.earlier() == [OLD_EMAIL]
    kept = keeping(found, {System.orders})
    assert kept is not None
    assert set(kept.systems) == {System.orders}
    assert kept.email is not None
    assert (kept.email.value, kept.email.previous) == (NEW_EMAIL, ())
    assert kept.phone is None
    assert OLD_EMAIL not in kept.model_dump_json()
    both = keeping(found, {System.orders, System.marketing})
    assert both is not None
    assert both.email is not None
    assert both.email.earlier() == [OLD_EMAIL]
    assert keeping(found, {System.cctv}) is None


# --- sealed where stored and sent ------------------------------------------------------------


def test_earlier_values_are_sealed_in_the_identities_table() -> None:
    plain = changed().model_dump(mode="json")
    data_key = DataKey.generate(ANN)
    sealed = sealing.seal(plain, sealing.IDENTITIES, ANN, data_key)
    text = json.dumps(sealed)
    for value in (OLD_EMAIL, OLD_PHONE, "+447700900111", "900111"):
        assert value not in text
    assert sealing.plaintext_left(sealed, sealing.IDENTITIES) == []
    opened = sealing.open_(
        json.loads(text), sealing.IDENTITIES, ANN, {data_key.key_id: data_key}.get
    )
    assert IdentityMap.model_validate(opened) == changed()


def _no_keys(_key_id: str) -> DataKey | None:
    return None  # every key destroyed


def _request(previous: dict[str, list[str]]) -> RequestRecord:
    task = TaskRecord(
        task_id="T-1",
        system=System.telephony,
        action=TaskAction.erase,
        identifiers={"phone": NEW_PHONE},
    )
    dumped = task.model_dump(mode="json")
    if "previous_identifiers" in TaskRecord.model_fields:
        dumped["previous_identifiers"] = previous
    return RequestRecord(
        request_id="REQ-1",
        request_type=RequestType.erasure,
        subject_id=ANN,
        actor="dpo",
        state=RequestState.in_progress,
        received_on=date(2026, 7, 20),
        tasks={"T-1": TaskRecord.model_validate(dumped)},
        created_at=T0,
    )


def test_a_requests_tasks_earlier_identifiers_are_sealed_and_stripped_with_the_key() -> None:
    """Whether or not the request model carries them yet (fanout's patch), the requests
    table seals them, and a value without its key keeps none of them."""
    plain = _request({"phone": [OLD_PHONE]}).model_dump(mode="json")
    plain["tasks"]["T-1"]["previous_identifiers"] = {"phone": [OLD_PHONE]}
    sealed = sealing.seal(plain, sealing.REQUESTS, ANN, DataKey.generate(ANN))
    assert OLD_PHONE not in json.dumps(sealed)
    assert is_encrypted(sealed["tasks"]["T-1"]["previous_identifiers"]["phone"][0])
    gone = sealing.open_(sealed, sealing.REQUESTS, ANN, _no_keys)
    assert gone is not None
    assert gone["tasks"]["T-1"]["previous_identifiers"] == {}
    older = _request({}).model_dump(mode="json")
    older["tasks"]["T-1"].pop("previous_identifiers", None)
    stripped = sealing.open_(
        sealing.seal(older, sealing.REQUESTS, ANN, DataKey.generate(ANN)),
        sealing.REQUESTS,
        ANN,
        _no_keys,
    )
    assert stripped is not None
    RequestRecord.model_validate(stripped)  # a request stored before: no field added


def _erase(**extra: object) -> r.Erase:
    fields: dict[str, object] = {
        "task_id": "T-1",
        "request_id": "REQ-1",
        "subject_id": ANN,
        "system": System.telephony,
        "issued_at": T0,
        "identifiers": {"phone": NEW_PHONE},
    }
    return r.Erase.model_validate({**fields, **extra})


@pytest.mark.parametrize("model", r.TASKS, ids=lambda m: m.__name__)
def test_every_task_carries_earlier_identifiers_as_a_personal_field(model: type[r.Task]) -> None:
    schema = latest_schemas(contract.schema_dir())[model.fullname()].schema
    assert "previous_identifiers{}[]" in [str(p) for p in personal_paths(schema)]
    (field,) = [f for f in schema["fields"] if f["name"] == "previous_identifiers"]
    assert field["default"] == {}


def test_a_tasks_earlier_identifiers_are_sealed_as_connectors_read_them() -> None:
    task = _erase(previous_identifiers={"phone": [OLD_PHONE, "07700 900000"]})
    schema = latest_schemas(contract.schema_dir())[r.Erase.fullname()].schema
    paths = personal_paths(schema)
    data_key = DataKey.generate(ANN)
    sealed = sealing.seal_record(task, ANN, data_key, paths)
    first = sealed.previous_identifiers["phone"][0]
    assert is_encrypted(first)
    label = "previous_identifiers{phone}[]"
    assert decrypt_field(first, ANN, label, {data_key.key_id: data_key}.get) == OLD_PHONE
    blank = sealing.seal_record(task, ANN, None, paths)
    assert blank.previous_identifiers == {"phone": ["", ""]}


def test_a_task_written_before_the_field_reads_with_none() -> None:
    versions = load_versions(contract.schema_dir())[r.Erase.fullname()]
    first = versions[0].schema
    assert "previous_identifiers" not in {f["name"] for f in first["fields"]}
    datum = _erase().model_dump(mode="python")
    datum.pop("previous_identifiers", None)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(first), datum)
    read = Codec(contract.schema_dir()).decode(first, buf.getvalue())
    assert isinstance(read, r.Erase)
    assert read.previous_identifiers == {}


# --- the reference systems look rows up by them, where the row is the subject's --------------


def _subscriber(db: sqlite3.Connection, ref: str, customer_id: str | None, email: str) -> None:
    db.execute(
        "INSERT INTO subscribers (subscriber_ref, customer_id, email) VALUES (?, ?, ?)",
        (ref, customer_id, email),
    )
    db.execute(
        "INSERT INTO subscriptions (subscription_id, subscriber_ref, channel, status)"
        " VALUES (?, ?, 'email', 'subscribed')",
        (f"{ref}-email", ref),
    )


def test_the_reference_telephony_leaves_calls_found_only_by_the_old_number(
    tmp_path: Path,
) -> None:
    """Telephony keys a caller by number: Ann's calls from her old number sit under
    another caller record, which only the old number finds. Those rows name no owner,
    and the task cannot tell when Ann held the number (it carries no dates), so they
    may be whoever holds it now: they are left (review, session 27; docs/connectors.md).
    This test erased them before; the rows under the current number still go."""
    customers = seed_customers(24, anchor=date(2026, 3, 2))
    seed_stores(tmp_path, customers)
    ann = next(c for c in customers if c.calls)
    store = open_store(tmp_path, System.telephony)
    new = normalise_phone(NEW_PHONE)  # as the system stores numbers
    with sqlite3.connect(store.path) as db:
        db.execute(
            "INSERT INTO callers (caller_ref, name, phone) VALUES ('T-NEW', ?, ?)",
            (ann.name, new),
        )
        db.execute(
            "INSERT INTO call_recordings (call_id, caller_ref, caller_number, started_at)"
            " VALUES ('CALL-NEW', 'T-NEW', ?, '2026-07-01T10:00:00')",
            (new,),
        )
    old = ann.phone
    assert store.resolve({"phone": NEW_PHONE}, {"phone": [old]}) == ["T-NEW"]
    task = _erase(identifiers={"phone": NEW_PHONE}, previous_identifiers={"phone": [old]})
    answer = asyncio.run(TelephonyConnector(tmp_path).erase(task))
    assert (answer.kind, answer.records_affected) == ("completed", 2)
    assert store.rows({"phone": NEW_PHONE}) == {}
    left = store.rows({"phone": old})
    assert len(left["call_recordings"]) == len(ann.calls)


def test_the_reference_store_finds_the_subjects_rows_by_earlier_values_for_every_action(
    tmp_path: Path,
) -> None:
    """Ann's older mailing-list entry, under her old address, names her customer number,
    which her current entry shows: it is hers, and every action takes it."""
    customers = seed_customers(24, anchor=date(2026, 3, 2))
    seed_stores(tmp_path, customers)
    ann = next(c for c in customers if c.subscriber_ref)
    store = open_store(tmp_path, System.marketing)
    with sqlite3.connect(store.path) as db:
        _subscriber(db, "MKT-OLD", ann.subject_id, OLD_EMAIL)
    current = {"email": ann.email}  # what a marketing task carries: no customer id
    previous = {"email": [OLD_EMAIL]}
    assert store.resolve(current) == [ann.subscriber_ref]
    assert store.resolve(current, previous) == sorted(["MKT-OLD", str(ann.subscriber_ref)])
    assert store.set_restricted(current, True, previous)
    assert store.rectify(current, {"name": "Ann Other"}, previous)
    rows = store.rows(current, previous)["subscribers"]
    assert {(row["subscriber_ref"], row["name"], row["restricted"]) for row in rows} == {
        ("MKT-OLD", "Ann Other", 1),
        (ann.subscriber_ref, "Ann Other", 1),
    }
    assert store.erase(current, previous=previous).found
    assert store.resolve({"email": OLD_EMAIL}) == []
    assert store.resolve(current) == []


def test_the_reference_store_takes_rows_under_an_earlier_system_id_without_a_check(
    tmp_path: Path,
) -> None:
    """A system never gives its own id to another person: rows under an earlier one are
    the subject's (a customer number replaced when two accounts were merged)."""
    customers = seed_customers(24, anchor=date(2026, 3, 2))
    seed_stores(tmp_path, customers)
    ann = customers[0]
    store = open_store(tmp_path, System.orders)
    current = {"customer_id": "CUST-NEW"}
    assert store.resolve(current) == []
    assert store.resolve(current, {"customer_id": [ann.subject_id]}) == [ann.subject_id]
