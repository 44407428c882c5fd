"""The SDK side of crypto-shredding (privops.connectors.encryption): a system encrypts its
events' personal fields before producing, a connector reads its task's identifiers, and
erasure makes both unreadable. Keys come from a real ring fed by a list standing for the
``privacy.subject-keys`` topic, and a key service doing what the worker does."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from privops.adapters.kek import KekFile
from privops.adapters.settings import Settings
from privops.connectors.encryption import (
    RingKeySource,
    WorkerKeySource,
    decrypt_record,
    encrypt_record,
    key_json,
    key_record,
    personal_fields,
    task_identifiers,
    worker_keys,
)
from privops.core.errors import ConfigError, PrivopsError, RuntimeUnavailable
from privops.core.fieldcrypt import (
    MAIN_SCOPE,
    MalformedField,
    ShreddedKey,
    TamperedField,
    is_encrypted,
)
from privops.core.personal import map_personal
from privops.core.records import (
    ALL_RECORDS,
    UPSTREAM_EVENTS,
    CustomerCreated,
    Erase,
    Identifiers,
    RecipientNotification,
    Record,
    Rectify,
    Task,
)
from privops.core.subject_keys import Kek, KeyRing, SubjectErased, SubjectKey, create, unwrap
from privops.core.vocab import Category, System, TaskAction
from tests.unit.test_schemas import build

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
ANN, BOB = "subj-ann", "subj-bob"
KEK = Kek(1, bytes(range(32)))
Topic = list[tuple[str, SubjectKey | None]]


class KeyService:
    """The worker's part: get-or-create at the subject's owner, stored before handed out."""

    def __init__(self, topic: Topic, clock: datetime = NOW) -> None:
        self.topic = topic
        self.own = KeyRing(lambda r: unwrap(r, KEK))
        self.clock = clock

    def __call__(self, subject_id: str, scope: str) -> SubjectKey:
        found = self.own.current(subject_id, scope)
        if found is not None:
            (record,) = [r for r in self.own.records(subject_id) if r.key_id == found.key_id]
            return record
        record, _ = create(subject_id, scope, KEK, self.clock)
        self.topic.append((record.key_id, record))  # acknowledged before the key leaves
        self.own.apply(record.key_id, record)
        return record


def reader(topic: Topic, service: KeyService | None = None) -> RingKeySource:
    """A system's key source, caught up with the topic."""
    ring = KeyRing(lambda r: unwrap(r, KEK))
    for key_id, record in topic:
        ring.apply(key_id, record)
    return RingKeySource(ring, service or KeyService(topic))


def catch_up(source: RingKeySource, topic: Topic) -> None:
    for key_id, record in topic:
        source.ring.apply(key_id, record)


def customer(subject_id: str = ANN) -> CustomerCreated:
    return CustomerCreated(
        event_id="e1",
        occurred_at=NOW,
        source=System.crm,
        subject_id=subject_id,
        identifiers=Identifiers(customer_id="c-42", email="ann@example.com", phone="+447700900123"),
    )


def erase_task(identifiers: dict[str, str], kind: type[Task] = Erase, **extra: Any) -> Any:
    return kind(
        task_id="t1",
        request_id="r1",
        subject_id=ANN,
        system=System.crm,
        issued_at=NOW,
        identifiers=identifiers,
        **extra,
    )


@pytest.fixture
def topic() -> Topic:
    return []


def test_an_event_is_produced_with_its_personal_fields_encrypted(topic: Topic) -> None:
    keys = reader(topic, KeyService(topic))
    event = customer()
    sealed = encrypt_record(event, keys)
    assert type(sealed) is CustomerCreated
    assert sealed.identifiers.email is not None
    assert sealed.identifiers.phone is not None
    assert is_encrypted(sealed.identifiers.email)
    assert is_encrypted(sealed.identifiers.phone)
    assert "ann@example.com" not in sealed.model_dump_json()
    assert sealed.identifiers.customer_id == "c-42"
    assert sealed.model_dump(exclude={"identifiers"}) == event.model_dump(exclude={"identifiers"})
    assert decrypt_record(sealed, keys) == event


def test_encrypting_twice_changes_nothing(topic: Topic) -> None:
    keys = reader(topic)
    once = encrypt_record(customer(), keys)
    assert encrypt_record(once, keys) == once


def test_a_dict_record_needs_its_name_and_is_not_changed_in_place(topic: Topic) -> None:
    keys = reader(topic)
    datum: dict[str, Any] = customer().model_dump(mode="python")
    with pytest.raises(ValueError, match="record_name"):
        encrypt_record(datum, keys)
    sealed = encrypt_record(datum, keys, record_name=CustomerCreated.fullname())
    assert datum["identifiers"]["email"] == "ann@example.com"
    assert is_encrypted(sealed["identifiers"]["email"])
    opened = decrypt_record(sealed, keys, record_name=CustomerCreated.fullname())
    assert opened == datum


def test_two_systems_meeting_a_new_subject_write_under_one_key(topic: Topic) -> None:
    service = KeyService(topic)
    crm, orders = reader(topic, service), reader(topic, service)
    from_crm = encrypt_record(customer(), crm)
    from_orders = encrypt_record(customer(), orders)
    assert len(topic) == 1
    privops = reader(topic)  # the worker's ingest, from the topic alone
    assert decrypt_record(from_crm, privops) == decrypt_record(from_orders, privops)


def test_racing_creators_lose_no_data_and_readers_converge(topic: Topic) -> None:
    """A zombie owner during a rebalance creates a second key: both stay readable."""
    old_owner, new_owner = KeyService(topic), KeyService(topic, NOW + timedelta(seconds=1))
    crm, orders = reader([], old_owner), reader([], new_owner)
    from_crm = encrypt_record(customer(), crm)
    from_orders = encrypt_record(customer(), orders)
    assert len(topic) == 2
    for source in (crm, orders):
        catch_up(source, topic)
    assert crm.current_key(ANN, MAIN_SCOPE) == orders.current_key(ANN, MAIN_SCOPE)
    privops = reader(topic)
    assert decrypt_record(from_crm, privops) == decrypt_record(from_orders, privops)


def test_a_connector_reads_its_tasks_identifiers(topic: Topic) -> None:
    privops = reader(topic)
    plain = {"email": "ann@example.com", "customer_id": "c-42"}
    task = encrypt_record(erase_task(plain), privops)
    assert all(is_encrypted(v) for v in task.identifiers.values())
    assert task_identifiers(task, reader(topic)) == plain


def test_rectify_changes_are_personal_too(topic: Topic) -> None:
    privops = reader(topic)
    task = erase_task({"customer_id": "c-42"}, Rectify, changes={"email": "ann.new@example.com"})
    sealed = encrypt_record(task, privops)
    assert is_encrypted(sealed.changes["email"])
    assert decrypt_record(sealed, reader(topic)) == task


def test_values_swapped_between_identifiers_do_not_decrypt(topic: Topic) -> None:
    keys = reader(topic)
    task = encrypt_record(erase_task({"email": "a@example.com", "phone": "+447700900123"}), keys)
    swapped = task.model_copy(
        update={
            "identifiers": {"email": task.identifiers["phone"], "phone": task.identifiers["email"]}
        }
    )
    with pytest.raises(TamperedField):
        task_identifiers(swapped, keys)


def test_erasure_makes_the_subject_unreadable_and_leaves_others(topic: Topic) -> None:
    keys = reader(topic)
    ann, bob = encrypt_record(customer(ANN), keys), encrypt_record(customer(BOB), keys)
    for key_id in keys.ring.forget_subject(ANN):
        topic.append((key_id, None))  # the worker's tombstones
    connector = reader(topic)
    with pytest.raises(ShreddedKey):
        decrypt_record(ann, connector)
    with pytest.raises(ShreddedKey):
        decrypt_record(ann, keys)
    assert decrypt_record(bob, connector) == customer(BOB)


def test_plaintext_in_a_personal_field_is_refused_unless_legacy(topic: Topic) -> None:
    keys = reader(topic)
    plain = erase_task({"email": "ann@example.com"})
    with pytest.raises(MalformedField):
        task_identifiers(plain, keys)
    assert task_identifiers(plain, keys, legacy_plaintext=True) == {"email": "ann@example.com"}


def test_a_record_without_subject_id_takes_the_kafka_key(topic: Topic) -> None:
    keys = reader(topic)
    note = RecipientNotification(
        notification_id="n1",
        request_id="r1",
        issued_at=NOW,
        recipient="debt-collector",
        action=TaskAction.erase,
        categories=[Category.credit],
        subject_ref="sr-1",
        recipient_refs=["ACC-991"],
    )
    with pytest.raises(ValueError, match="subject_id"):
        encrypt_record(note, keys)
    sealed = encrypt_record(note, keys, subject_id=ANN)
    assert is_encrypted(sealed.recipient_refs[0])
    assert decrypt_record(sealed, keys, subject_id=ANN) == note
    with pytest.raises(TamperedField):
        decrypt_record(sealed, encrypt_source_for_bob(topic), subject_id=BOB)


def encrypt_source_for_bob(topic: Topic) -> RingKeySource:
    source = reader(topic)
    source.current_key(BOB, MAIN_SCOPE)
    catch_up(source, topic)
    return source


def test_a_retained_scope_gets_its_own_key(topic: Topic) -> None:
    keys = reader(topic)
    main = encrypt_record(customer(), keys)
    kept = encrypt_record(customer(), keys, scope="retained:purchases:2032-03-31")
    assert main.identifiers.email is not None
    assert kept.identifiers.email is not None
    assert main.identifiers.email.split(":")[1] != kept.identifiers.email.split(":")[1]
    assert {r.scope for r in keys.ring.records(ANN)} == {
        MAIN_SCOPE,
        "retained:purchases:2032-03-31",
    }


PERSONAL_RECORDS = [model for model in ALL_RECORDS if personal_fields(model.fullname())]


@pytest.mark.parametrize("model", PERSONAL_RECORDS, ids=lambda model: model.__name__)
def test_a_model_is_sealed_and_opened_as_its_dump_is(topic: Topic, model: type[Record]) -> None:
    """A model whose personal fields are all record fields is sealed and opened in place
    (``personal.visit_model``), any other through its dump: both ways agree, on every
    record with personal fields, each with every optional field filled."""
    keys = reader(topic, KeyService(topic))
    record, name = build(model), model.fullname()
    paths = personal_fields(name)

    def shape(found: Record) -> Any:
        return map_personal(
            found.model_dump(), paths, lambda _, v: "<sealed>" if is_encrypted(v) else v
        )

    sealed = encrypt_record(record, keys, subject_id=ANN)
    from_dump = model.model_validate(
        encrypt_record(record.model_dump(), keys, subject_id=ANN, record_name=name)
    )
    assert shape(sealed) == shape(from_dump) != record.model_dump()
    assert decrypt_record(sealed, keys, subject_id=ANN) == record
    assert decrypt_record(from_dump, keys, subject_id=ANN) == record
    opened = decrypt_record(sealed.model_dump(), keys, subject_id=ANN, record_name=name)
    assert model.model_validate(opened) == record


def test_every_upstream_event_has_personal_fields_to_encrypt() -> None:
    for event in UPSTREAM_EVENTS:
        paths = {str(p) for p in personal_fields(event.fullname())}
        assert {"identifiers.email", "identifiers.phone"} <= paths, event.fullname()
    with pytest.raises(ValueError, match="no committed schema"):
        personal_fields("privops.events.Nope")


# --- the SDK's key source over HTTP (WorkerKeySource) ------------------------------------------


class Worker:
    """The worker's HTTP key service over a KeyService; counts calls, can be told to
    refuse (erased), or to be busy (a partition moving) for a number of calls."""

    def __init__(self, topic: Topic) -> None:
        self.service = KeyService(topic)
        self.calls: list[tuple[str, str]] = []
        self.erased: set[str] = set()
        self.busy = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        subject = request.url.path.rsplit("/", 1)[1]
        self.calls.append((request.method, subject))
        if self.busy:
            self.busy -= 1
            return httpx.Response(503, json={"error": "partition moving"})
        if subject in self.erased and request.method == "POST":
            return httpx.Response(410, json={"error": "subject erased", "reason": "erased"})
        if request.method == "POST":
            record = self.service(subject, request.url.params.get("scope", MAIN_SCOPE))
            return httpx.Response(200, json=key_json(record))
        records = self.service.own.records(subject)
        return httpx.Response(
            200, json={"subject_id": subject, "keys": [key_json(r) for r in records]}
        )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def kek_file() -> KekFile:
    return KekFile(None, False, 1, {1: KEK}, {1: NOW})  # type: ignore[arg-type]


def http_source(worker: Worker, clock: Clock | None = None) -> WorkerKeySource:
    return WorkerKeySource(
        "http://worker.test:6066",
        kek_file(),
        transport=httpx.MockTransport(worker),
        clock=clock or Clock(),
        ttl_seconds=60,
        retry_seconds=1,
    )


def test_a_system_encrypts_with_the_key_the_worker_stored(topic: Topic) -> None:
    worker = Worker(topic)
    keys = http_source(worker)
    sealed = encrypt_record(customer(), keys)
    again = encrypt_record(customer(), keys)
    assert worker.calls == [("POST", ANN)]  # asked once, then from the cache
    assert [key_id for key_id, _ in topic] == [worker.service.own.records(ANN)[0].key_id]
    assert sealed.identifiers.email != again.identifiers.email  # fresh nonce each time
    # A connector elsewhere reads it back through the same service.
    reader_keys = http_source(worker)
    assert decrypt_record(sealed, reader_keys) == customer()
    assert worker.calls[-1] == ("GET", ANN)


def test_an_erased_subject_gets_no_key_and_old_data_stays_unreadable(topic: Topic) -> None:
    worker = Worker(topic)
    clock = Clock()
    keys = http_source(worker, clock)
    sealed = encrypt_record(customer(), keys)
    worker.service.own.forget_subject(ANN)  # the erasure's tombstones
    worker.erased.add(ANN)
    clock.now += 61  # the SDK's cache has let go of the key
    with pytest.raises(SubjectErased):
        encrypt_record(customer(), keys)
    with pytest.raises(ShreddedKey):
        decrypt_record(sealed, keys)
    with pytest.raises(ShreddedKey):
        decrypt_record(sealed, http_source(worker))


def test_a_busy_worker_is_asked_again_then_reported(topic: Topic) -> None:
    worker = Worker(topic)
    worker.busy = 1
    assert http_source(worker).current_key(ANN, MAIN_SCOPE).subject_id == ANN
    worker.busy = 100
    with pytest.raises(RuntimeUnavailable, match="partition moving"):
        http_source(worker).current_key(BOB, MAIN_SCOPE)


def test_an_unreachable_worker_is_named() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    keys = WorkerKeySource(
        "http://worker.test:6066", kek_file(), transport=httpx.MockTransport(down)
    )
    with pytest.raises(RuntimeUnavailable, match=r"worker\.test:6066"):
        keys.current_key(ANN, MAIN_SCOPE)


def test_the_wire_format_is_what_the_key_service_contract_says(topic: Topic) -> None:
    record = KeyService(topic)(ANN, MAIN_SCOPE)
    wired = key_json(record)
    assert sorted(wired) == [
        "created_at",
        "kek_version",
        "key_id",
        "scope",
        "subject_id",
        "wrapped",
    ]
    assert base64.b64decode(wired["wrapped"]) == record.wrapped
    assert key_record(json.loads(json.dumps(wired))) == record


def test_an_answer_for_another_subject_is_refused(topic: Topic) -> None:
    service = KeyService(topic)

    def liar(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(key_json(service(BOB, MAIN_SCOPE))).encode())

    keys = WorkerKeySource("http://w.test", kek_file(), transport=httpx.MockTransport(liar))
    with pytest.raises(PrivopsError, match="answered"):
        keys.current_key(ANN, MAIN_SCOPE)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_caller_is_told_so_and_its_credentials_were_sent(status: int) -> None:
    seen: list[str | None] = []

    def guard(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(status, json={"error": "no", "reason": "principal 'x' may not"})

    keys = WorkerKeySource(
        "https://w.test",
        kek_file(),
        auth=httpx.BasicAuth("system-crm", "pw"),
        transport=httpx.MockTransport(guard),
    )
    with pytest.raises(PrivopsError, match=f"refused this caller \\({status}"):
        keys.current_key(ANN, MAIN_SCOPE)
    assert seen == ["Basic " + base64.b64encode(b"system-crm:pw").decode()]


def test_a_scope_the_system_may_not_have_is_named_not_its_credentials() -> None:
    """403 for a scope (another system's category): the credentials were fine."""

    def guard(_request: httpx.Request) -> httpx.Response:
        reason = "system-crm has keys of scope main, or retained:<category>:<date> ..."
        return httpx.Response(403, json={"error": "scope not allowed", "reason": reason})

    keys = WorkerKeySource("http://w.test", kek_file(), transport=httpx.MockTransport(guard))
    with pytest.raises(PrivopsError, match="system-crm has keys of scope main") as refused:
        keys.current_key(ANN, "retained:purchases:2032-03-31")
    assert "password" not in str(refused.value)


def test_a_key_source_with_a_password_refuses_plain_http_beyond_loopback(
    tmp_path: Path,
) -> None:
    """An independent review (session 23): an SDK user building the key source by hand
    sent the system's password over http:// to another machine."""
    auth = httpx.BasicAuth("system-crm", "pw")
    with pytest.raises(ConfigError, match="in the clear"):
        WorkerKeySource("http://10.0.0.5:6066", kek_file(), auth=auth)
    for fine in ("https://10.0.0.5:6066", "http://127.0.0.1:6066", "http://localhost:6066"):
        WorkerKeySource(fine, kek_file(), auth=auth).close()
    WorkerKeySource("http://10.0.0.5:6066", kek_file(), auth=auth, allow_plaintext=True).close()
    WorkerKeySource("http://10.0.0.5:6066", kek_file()).close()  # no password to send
    # worker_keys follows the settings: outside dev, plain HTTP beyond loopback needs
    # PRIVOPS_WEB_PLAINTEXT=allow.
    prod = Settings(
        env="prod",
        pseudonym_key="a-real-pseudonym-key-0001",
        audit_key="a-real-audit-key-0002",
        home=tmp_path,
    )
    with pytest.raises(ConfigError, match="in the clear"):
        worker_keys(prod, "http://10.0.0.5:6066", principal="system-crm")
    with pytest.raises(ConfigError, match="in the clear"):
        worker_keys(prod.model_copy(update={"web_host": "10.0.0.5"}), principal="system-crm")


def test_the_key_services_urls_are_logged_without_the_subject(
    topic: Topic, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs each request's URL at INFO; the key service's name the subject."""
    caplog.set_level(logging.INFO, logger="httpx")
    assert http_source(Worker(topic)).current_key(ANN, MAIN_SCOPE).subject_id == ANN
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines
    assert any("/subject-keys/..." in line for line in lines)
    assert not any(ANN in line for line in lines)
