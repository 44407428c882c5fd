"""privops' own copies sealed under the subject's key (privops.core.sealing): every
personal value of the identities, subject-facts and requests tables and of the tasks
and notifications privops sends is ciphertext once written, opens back to the same
value, and is gone (stripped) once its key is destroyed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from privops import contract
from privops.adapters.avro import latest_schemas
from privops.core import records as r
from privops.core import sealing
from privops.core.erasure import Disclosure, SubjectFacts
from privops.core.fieldcrypt import (
    DataKey,
    KeyLookup,
    TamperedField,
    decrypt_field,
    is_encrypted,
)
from privops.core.holds import LegalHold
from privops.core.identity import IdentityMap, merge
from privops.core.personal import (
    ITEMS,
    VALUES,
    PersonalPath,
    holds_personal,
    map_personal,
    personal_paths,
)
from privops.core.request import KeptItem, RequestRecord, TaskRecord
from privops.core.vocab import Capacity, Category, RequestState, RequestType, System, TaskAction

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
ANN, BOB = "subj-ann", "subj-bob"
EMAIL, PHONE = "ann@example.com", "+447700900123"
NAME = "Ann Jones, 12 Acacia Avenue"  # free text that names her: the DPO's, a system's


def keys(*found: DataKey) -> KeyLookup:
    by_id = {k.key_id: k for k in found}
    return by_id.get


def identity() -> IdentityMap:
    found = merge(None, ANN, System.crm, {"contact_id": "KONTAKT-000001", "email": EMAIL}, NOW)
    found = merge(found, ANN, System.telephony, {"phone": PHONE}, NOW)
    assert found is not None
    return found


def request() -> RequestRecord:
    task = TaskRecord(
        task_id="T-1",
        system=System.crm,
        action=TaskAction.rectify,
        identifiers={"contact_id": "KONTAKT-000001", "email": EMAIL},
        changes={"name": "Ann Other"},
        export=r.ExportReference(
            location="s3://exports/ann.zip", record_count=3, checksum="sha256:00"
        ),
        outcome_reason=f"kept the invoices of {NAME}",
    )
    return RequestRecord(
        request_id="REQ-1",
        request_type=RequestType.rectification,
        subject_id=ANN,
        actor="dpo",
        state=RequestState.in_progress,
        received_on=NOW.date(),
        rectification={"name": "Ann Other", "email": EMAIL},
        tasks={"T-1": task},
        manifest={"subject": {"email": EMAIL}, "systems": ["crm"]},
        reason=f"asked by {NAME} on the phone",
        extension_reason=f"{NAME}'s files are on paper",
        send_to=f"Bright Energy, for {NAME}",  # a portability request's (Art. 20(2))
        representative=f"Smith & Co Solicitors, for {NAME}",  # made for them (from 0.41)
        capacity=Capacity.authorised,
        kept=[KeptItem(system=System.orders, category=Category.purchases, ground="tax")],
        created_at=NOW,
    )


def facts() -> SubjectFacts:
    told = Disclosure(
        recipient="Credit reference agencies",
        recipient_ref="CRA-ANN-77",
        categories=(Category.purchases,),
        first_at=NOW,
        last_at=NOW,
    )
    return SubjectFacts(disclosures=(told,))


CASES = [
    (sealing.IDENTITIES, "subj-ann", lambda: identity().model_dump(mode="json"), IdentityMap),
    (sealing.REQUESTS, "REQ-1", lambda: request().model_dump(mode="json"), RequestRecord),
    (sealing.FACTS, "subj-ann", lambda: facts().model_dump(mode="json"), SubjectFacts),
]
SECRETS = [
    EMAIL,
    PHONE,
    "KONTAKT-000001",
    "Ann Other",
    "s3://exports/ann.zip",
    "CRA-ANN-77",
    "Acacia",
]


@pytest.mark.parametrize(
    ("table", "key", "value", "model"), CASES, ids=lambda c: getattr(c, "name", "")
)
def test_a_sealed_value_holds_no_personal_value_and_opens_to_the_same_model(
    table: sealing.TableSealing, key: str, value: object, model: type[BaseModel]
) -> None:
    plain = value()  # type: ignore[operator]
    data_key = DataKey.generate(ANN)
    assert sealing.personal_values(plain, table)
    sealed = sealing.seal(plain, table, table.subject(key, plain), data_key)
    text = json.dumps(sealed)
    assert not [s for s in SECRETS if s in text], text
    assert sealing.plaintext_left(sealed, table) == []
    assert sealing.key_ids(sealed, table) == {data_key.key_id}
    opened = sealing.open_(json.loads(text), table, ANN, keys(data_key))
    assert model.model_validate(opened) == model.model_validate(plain)
    # Sealing twice changes nothing (a value read back and written again).
    assert sealing.seal(sealed, table, ANN, DataKey.generate(ANN)) == sealed


@pytest.mark.parametrize(
    ("table", "key", "value", "model"), CASES, ids=lambda c: getattr(c, "name", "")
)
def test_once_the_key_is_destroyed_the_value_reads_without_its_personal_values(
    table: sealing.TableSealing, key: str, value: object, model: type[BaseModel]
) -> None:
    plain = value()  # type: ignore[operator]
    sealed = sealing.seal(plain, table, ANN, DataKey.generate(ANN))
    opened = sealing.open_(sealed, table, ANN, keys())
    if table is sealing.IDENTITIES:
        assert opened is None  # nothing but identifiers: dropped
        return
    assert opened is not None
    text = json.dumps(opened)
    assert not [s for s in SECRETS if s in text], text
    assert not sealing.personal_values(opened, table)
    model.model_validate(opened)  # still a valid record (states, dates, history kept)


def test_a_requests_free_text_is_sealed_and_what_was_kept_and_why_is_not() -> None:
    """The DPO's reasons and a system's answer can name the person: they were stored as
    they are, and outlived the erasure (review, session 26). The grounds of what was
    kept are privops' own text and stay readable."""
    sealed = sealing.seal(
        request().model_dump(mode="json"), sealing.REQUESTS, ANN, DataKey.generate(ANN)
    )
    assert is_encrypted(sealed["reason"])
    assert is_encrypted(sealed["extension_reason"])
    assert is_encrypted(sealed["send_to"])
    assert is_encrypted(sealed["representative"])
    assert sealed["capacity"] == "authorised"
    assert is_encrypted(sealed["tasks"]["T-1"]["outcome_reason"])
    assert sealed["kept"][0]["ground"] == "tax"
    gone = sealing.open_(sealed, sealing.REQUESTS, ANN, keys())
    assert gone is not None
    assert (gone["reason"], gone["extension_reason"], gone["send_to"]) == (None, None, None)
    # open: its wait for the authority needs the capacity; closed, it goes too
    assert (gone["representative"], gone["capacity"]) == (None, "authorised")
    closed = sealing.REQUESTS.strip({**request().model_dump(mode="json"), "state": "completed"})
    assert closed is not None
    assert (closed["representative"], closed["capacity"]) == (None, None)
    assert gone["tasks"]["T-1"]["outcome_reason"] is None
    assert gone["kept"][0]["ground"] == "tax"


def test_an_open_request_with_no_key_keeps_its_free_text_until_it_closes() -> None:
    """A complaint from someone erased with nothing kept: the DPO needs its text to
    answer it; a portability request's organisation (Art. 20(2)) likewise, to send the
    copies. Written only where a record has one, so a record of before 0.40 reads in a
    release before it (which knows no such field)."""
    value = request().model_dump(mode="json")
    kept = sealing.REQUESTS.without_key(value)
    assert kept is not None
    assert (kept["reason"], kept["send_to"]) == (value["reason"], value["send_to"])
    assert kept["representative"] == value["representative"]  # the notices go to them
    closed = sealing.REQUESTS.without_key({**value, "state": "completed"})
    assert closed is not None
    assert (closed["reason"], closed["send_to"], closed["representative"]) == (None, None, None)
    bare = request().model_copy(update={"send_to": None}).model_dump(mode="json")
    assert "send_to" not in bare
    assert "send_to" not in (sealing.REQUESTS.without_key(bare) or {})
    own = request().model_copy(update={"representative": None, "capacity": None})
    plain = own.model_dump(mode="json")  # asked by the subject: 0.40 reads it
    assert not {"representative", "capacity", "authority_received_on"} & set(plain)
    assert "representative" not in (sealing.REQUESTS.without_key(plain) or {})


def _holds() -> list[LegalHold]:
    placed = LegalHold(
        hold_id="H-1",
        subject_id=ANN,
        categories=(Category.contact,),
        reason=f"claim by {NAME}: solicitor's letter",
        placed_at=NOW,
    )
    released = placed.model_copy(
        update={"hold_id": "H-0", "reason": f"{NAME}: settled", "released_at": NOW}
    )
    return [released, placed]


def test_a_legal_holds_reason_is_sealed_and_the_hold_outlives_its_key() -> None:
    """A hold's reason is the DPO's free text about a claim or an investigation: stored
    as it was, and kept whole after the erasure while the hold is active (review,
    session 26). Once the key it was sealed under is gone, the hold stays (it keeps its
    categories from erasure) and its reason does not."""
    plain: Any = [h.model_dump(mode="json") for h in _holds()]  # the table's JSON: a list
    data_key = DataKey.generate(ANN)
    assert sealing.personal_values(plain, sealing.HOLDS)
    sealed = sealing.seal(plain, sealing.HOLDS, sealing.HOLDS.subject(ANN, plain), data_key)
    assert "Acacia" not in json.dumps(sealed)
    assert sealing.plaintext_left(sealed, sealing.HOLDS) == []
    assert sealing.key_ids(sealed, sealing.HOLDS) == {data_key.key_id}
    opened = sealing.open_(json.loads(json.dumps(sealed)), sealing.HOLDS, ANN, keys(data_key))
    assert [LegalHold.model_validate(h) for h in opened or []] == _holds()
    # Stored before holds were sealed: read as it is.
    assert sealing.open_(plain, sealing.HOLDS, ANN, keys()) == plain

    gone = sealing.open_(sealed, sealing.HOLDS, ANN, keys())
    assert gone is not None
    holds = [LegalHold.model_validate(h) for h in gone]
    assert [(h.hold_id, h.categories, h.active) for h in holds] == [
        (h.hold_id, h.categories, h.active) for h in _holds()
    ]
    assert {h.reason for h in holds} == {sealing.HOLD_REASON_GONE}
    assert sealing.HOLDS.strip(plain) == gone  # a flush with no key writes the same


def test_a_value_moved_to_another_subject_or_field_does_not_open() -> None:
    data_key = DataKey.generate(ANN)
    sealed = sealing.seal(identity().model_dump(mode="json"), sealing.IDENTITIES, ANN, data_key)
    with pytest.raises(TamperedField):
        sealing.open_(sealed, sealing.IDENTITIES, BOB, keys(data_key))
    swapped = {**sealed, "phone": {**sealed["phone"], "value": sealed["email"]["value"]}}
    with pytest.raises(TamperedField):
        sealing.open_(swapped, sealing.IDENTITIES, ANN, keys(data_key))


def test_values_written_before_sealing_read_as_they_are() -> None:
    plain = request().model_dump(mode="json")
    assert (
        RequestRecord.model_validate(sealing.open_(plain, sealing.REQUESTS, ANN, keys()))
        == request()
    )


def test_a_request_without_personal_values_needs_no_key() -> None:
    bare = sealing.REQUESTS.strip(request().model_dump(mode="json"))
    assert bare is not None
    assert not sealing.personal_values(bare, sealing.REQUESTS)


def _paths(record: type[r.Record]) -> tuple[PersonalPath, ...]:
    return personal_paths(latest_schemas(contract.schema_dir())[record.fullname()].schema)


def test_a_task_is_sealed_as_connectors_read_it_and_blanked_without_a_key() -> None:
    task = r.Rectify(
        task_id="T-1",
        request_id="REQ-1",
        subject_id=ANN,
        system=System.crm,
        issued_at=NOW,
        identifiers={"email": EMAIL},
        changes={"name": "Ann Other"},
    )
    paths = _paths(r.Rectify)
    assert sealing.personal_values_in(task.model_dump(), paths)
    data_key = DataKey.generate(ANN)
    sealed = sealing.seal_record(task, ANN, data_key, paths)
    assert is_encrypted(sealed.identifiers["email"])
    assert is_encrypted(sealed.changes["name"])
    assert (
        decrypt_field(sealed.identifiers["email"], ANN, "identifiers{email}", keys(data_key))
        == EMAIL
    )
    blank = sealing.seal_record(task, ANN, None, paths)
    assert blank.identifiers == {"email": ""}
    assert blank.changes == {"name": ""}
    empty = task.model_copy(update={"identifiers": {}, "changes": {}})
    assert not sealing.personal_values_in(empty.model_dump(), paths)


def test_the_retained_storage_scope_is_the_kept_category_that_lasts_longest() -> None:
    from privops.core import shredding

    until = NOW + timedelta(days=6 * 365)
    rec = request().model_copy(
        update={
            "request_type": RequestType.erasure,
            "kept": [
                KeptItem(
                    system=System.orders, category=Category.purchases, until=until, ground="tax"
                ),
                KeptItem(
                    system=System.crm,
                    category=Category.contact,
                    until=NOW + timedelta(days=30),
                    ground="x",
                ),
            ],
        }
    )
    kept = shredding.still_kept(rec, [], {}, NOW)
    scope = shredding.storage_scope(rec, kept, [], NOW)
    assert scope == shredding.key_scope(Category.purchases, until)
    nothing = shredding.still_kept(rec.model_copy(update={"kept": []}), [], {}, NOW)
    assert shredding.storage_scope(rec, nothing, [], NOW) is None


def _visited(
    datum: dict[str, object], paths: tuple[PersonalPath, ...], *, empty: bool = True
) -> bool:
    """What holds_personal answers, the long way: map_personal visits a string (with
    ``empty=False``, a non-empty one)."""
    seen: list[str] = []

    def see(_label: str, item: str) -> str:
        seen.append(item)
        return item

    map_personal(datum, paths, see)
    return any(empty or item for item in seen)


_TEXT = st.one_of(st.none(), st.text(max_size=3))
_SHAPES = st.fixed_dictionaries(
    {},
    optional={
        "email": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"value": _TEXT})),
        "rectification": st.dictionaries(st.text(max_size=2), _TEXT, max_size=3),
        "tasks": st.dictionaries(
            st.text(max_size=2),
            st.fixed_dictionaries(
                {}, optional={"identifiers": st.dictionaries(st.text(max_size=2), _TEXT)}
            ),
            max_size=3,
        ),
        "disclosures": st.lists(
            st.fixed_dictionaries({}, optional={"recipient_ref": _TEXT}), max_size=3
        ),
    },
)
_SHAPE_PATHS = (
    PersonalPath(("email", "value")),
    PersonalPath(("rectification", VALUES)),
    PersonalPath(("tasks", VALUES, "identifiers", VALUES)),
    PersonalPath(("disclosures", ITEMS, "recipient_ref")),
)


@given(_SHAPES)
def test_holds_personal_answers_whether_map_personal_visits_a_string(
    datum: dict[str, object],
) -> None:
    assert holds_personal(datum, _SHAPE_PATHS) is _visited(datum, _SHAPE_PATHS)
    assert holds_personal(datum, _SHAPE_PATHS, empty=False) is _visited(
        datum, _SHAPE_PATHS, empty=False
    )


@pytest.mark.parametrize(
    ("table", "key", "value", "model"), CASES, ids=lambda c: getattr(c, "name", "")
)
def test_holds_personal_on_every_sealing_table(
    table: sealing.TableSealing, key: str, value: object, model: type[BaseModel]
) -> None:
    plain = table.pack(value())  # type: ignore[operator]
    assert holds_personal(plain, table.paths)
    assert _visited(plain, table.paths)
    bare = table.strip(plain)
    if bare is not None:
        assert holds_personal(bare, table.paths) is _visited(bare, table.paths)


def test_holds_personal_refuses_a_non_string_where_a_string_belongs() -> None:
    with pytest.raises(TypeError, match="holds a string, not int"):
        holds_personal({"email": {"value": 7}}, _SHAPE_PATHS)
