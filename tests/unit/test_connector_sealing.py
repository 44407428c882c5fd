"""The connector side of issue 15 step 5: tasks arrive with their identifiers encrypted
under the subject's key, the runner opens them before the connector sees the task, and
answers leave with their personal fields (an export's location) encrypted.

Keys are real: a ``KeyRing`` fed by a list standing for ``privacy.subject-keys``, a KEK,
and a key service that creates a key only once it is "stored" (what the worker does);
the connectors are the reference ones over seeded SQLite stores. Only the Avro bytes are
stood in for (the runner's decisions do not depend on them), as in test_connector_runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from privops.adapters.acls import principals, system_principal
from privops.adapters.api_auth import Credentials, basic_credentials
from privops.adapters.credentials import credentials_path, ensure_credentials
from privops.adapters.kek import KekFile
from privops.adapters.settings import Settings
from privops.connectors import Answer, Connector, ConnectorRunner, TransientRetry
from privops.connectors.encryption import (
    RingKeySource,
    WorkerKeySource,
    decrypt_record,
    encrypt_record,
    plaintext_fields,
    sealed_key_ids,
    sealed_scope,
)
from privops.connectors.ledger import Ledger
from privops.connectors.metrics import metric_value
from privops.connectors.reference import (
    CrmConnector,
    FakeCustomer,
    OrdersConnector,
    open_store,
    seed_customers,
    seed_stores,
)
from privops.core import records as r
from privops.core.fieldcrypt import (
    MAIN_SCOPE,
    DataKey,
    MalformedField,
    TamperedField,
    is_encrypted,
    parse_field,
    split_key_id,
)
from privops.core.subject_keys import Kek, KeyRing, SubjectErased, SubjectKey, create, unwrap
from privops.core.vocab import Category, System
from privops.tools.simulate import business_day, seal_events
from tests.unit.test_connector_runner import deliver_one

pytestmark = pytest.mark.usefixtures("holds_read")

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
KEK = Kek(1, bytes(range(32)))
FAST = TransientRetry(retries=2, first_delay=0.001)
RETAINED = "retained:purchases:2032-03-31"
Topic = list[tuple[str, SubjectKey | None]]


@dataclass
class KeyService:
    """The worker's part: get-or-create, stored (on ``topic``) before it is handed out;
    ``erased`` subjects get none (410)."""

    topic: Topic = field(default_factory=list)
    erased: set[str] = field(default_factory=set)
    own: KeyRing = field(default_factory=lambda: KeyRing(lambda rec: unwrap(rec, KEK)))

    def __call__(self, subject_id: str, scope: str) -> SubjectKey:
        if subject_id in self.erased:
            raise SubjectErased("the subject was erased")
        found = self.own.current_record(subject_id, scope)
        if found is not None:
            return found
        record, _ = create(subject_id, scope, KEK, NOW)
        self.topic.append((record.key_id, record))
        self.own.apply(record.key_id, record)
        return record

    def shred(self, subject_id: str) -> None:
        """The erasure: every key of the subject tombstoned."""
        self.erased.add(subject_id)
        for key_id in self.own.forget_subject(subject_id):
            self.topic.append((key_id, None))

    def reader(self) -> RingKeySource:
        """A process's key source, caught up with the topic."""
        ring = KeyRing(lambda rec: unwrap(rec, KEK))
        for key_id, record in self.topic:
            ring.apply(key_id, record)
        return RingKeySource(ring, self)


class AskingKeys:
    """As ``WorkerKeySource`` does: a current key is asked of the key service each time
    (POST), a key by id read from what is stored (GET)."""

    def __init__(self, service: KeyService) -> None:
        self.service = service
        self.stored = service.reader()

    def current_key(self, subject_id: str, scope: str) -> DataKey:
        return unwrap(self.service(subject_id, scope), KEK)

    def key(self, key_id: str) -> DataKey | None:
        return self.stored.key(key_id)


class _Serde:
    """Stands in for the Avro serde: hands the runner one record, keeps what it encodes."""

    def __init__(self, record: r.Record) -> None:
        self.record = record
        self.encoded: list[r.Record] = []

    async def decode_async(self, data: bytes | None) -> r.Record:
        return self.record

    def encode(self, record: r.Record) -> bytes:
        self.encoded.append(record)
        return b"x"


class Seen(CrmConnector):
    """The CRM reference connector, remembering each task as it was handed over."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.tasks: list[r.Task] = []

    async def handle(self, task: r.Task) -> Answer:
        self.tasks.append(task)
        return await super().handle(task)


class SeenOrders(OrdersConnector):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.tasks: list[r.Task] = []

    async def handle(self, task: r.Task) -> Answer:
        self.tasks.append(task)
        return await super().handle(task)


@pytest.fixture
def people(tmp_path: Path) -> list[FakeCustomer]:
    customers = seed_customers(4)
    seed_stores(tmp_path / "systems", customers)
    return customers


@pytest.fixture
def service() -> KeyService:
    return KeyService()


def task(
    kind: type[r.Task], customer: FakeCustomer, system: System, attempt: int = 1, **extra: Any
) -> Any:
    return kind(
        task_id=f"T-{kind.__name__}-{customer.number}",
        request_id=f"R-{customer.number}",
        subject_id=customer.subject_id,
        system=system,
        issued_at=NOW,
        attempt=attempt,
        identifiers=customer.identifiers(system),
        **extra,
    )


def runner_for(connector: Connector, keys: Any) -> ConnectorRunner:
    return ConnectorRunner(connector, Settings(), retry=FAST, clock=lambda: NOW, keys=keys)


async def deliver(
    runner: ConnectorRunner, ledger: Ledger, record: r.Record, monkeypatch: pytest.MonkeyPatch
) -> tuple[_Serde, list[tuple[str, bytes]]]:
    serde = _Serde(record)
    sent: list[tuple[str, bytes]] = []

    async def send(key: str, value: bytes) -> None:
        sent.append((key, value))

    monkeypatch.setattr(runner, "serde", serde)
    await deliver_one(runner, ledger, send)
    return serde, sent


def skipped(reason: str) -> float:
    return metric_value("privops_connector_skipped_total", system="crm", reason=reason)


# --- tasks open before the connector sees them -----------------------------------------------


async def test_a_sealed_task_reaches_the_connector_in_plaintext(
    tmp_path: Path, people: list[FakeCustomer], service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = people[1]
    plain = task(r.Erase, customer, System.crm, categories=[Category.contact])
    sealed = encrypt_record(plain, service.reader())
    assert all(is_encrypted(v) for v in sealed.identifiers.values())
    connector = Seen(tmp_path / "systems")
    runner = runner_for(connector, service.reader())
    answered: list[tuple[r.Task, r.TaskResult | None, bool]] = []
    runner.on_answer = lambda *a: answered.append(a)

    serde, sent = await deliver(runner, Ledger(tmp_path / "l.db"), sealed, monkeypatch)

    assert connector.tasks == [plain]
    assert [t for t, _, _ in answered] == [plain]
    (result,) = serde.encoded
    assert isinstance(result, r.TaskCompleted)
    assert result.records_affected > 0  # the store found the subject by the plaintext
    assert sent == [(customer.subject_id, b"x")]
    store = open_store(tmp_path / "systems", System.crm)
    assert not store.rows(customer.identifiers(System.crm))["contacts"]


async def test_a_rectify_tasks_changes_are_opened_too(
    tmp_path: Path, people: list[FakeCustomer], service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = people[0]
    plain = task(r.Rectify, customer, System.crm, changes={"phone": "+447700900999"})
    sealed = encrypt_record(plain, service.reader())
    assert is_encrypted(sealed.changes["phone"])
    connector = Seen(tmp_path / "systems")

    serde, _ = await deliver(
        runner_for(connector, service.reader()), Ledger(tmp_path / "l.db"), sealed, monkeypatch
    )

    assert connector.tasks == [plain]
    assert isinstance(serde.encoded[0], r.TaskCompleted)
    store = open_store(tmp_path / "systems", System.crm)
    assert store.rows({"phone": "+447700900999"})["contacts"]


async def test_a_plaintext_task_from_an_older_worker_still_works_and_asks_no_key(
    tmp_path: Path, people: list[FakeCustomer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = task(r.Restrict, people[2], System.crm)
    connector = Seen(tmp_path / "systems")
    keys = RingKeySource(KeyRing(lambda rec: unwrap(rec, KEK)), _no_keys)

    serde, sent = await deliver(
        runner_for(connector, keys), Ledger(tmp_path / "l.db"), plain, monkeypatch
    )

    assert connector.tasks == [plain]
    assert isinstance(serde.encoded[0], r.TaskCompleted)
    assert len(sent) == 1
    assert len(keys.ring) == 0


# --- tasks that do not open: skipped, never executed --------------------------------------------


async def test_a_task_under_a_shredded_key_is_skipped_counted_and_never_executed(
    tmp_path: Path,
    people: list[FakeCustomer],
    service: KeyService,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    customer = people[1]
    sealed = encrypt_record(task(r.Erase, customer, System.crm), service.reader())
    service.shred(customer.subject_id)  # the erasure completed; this is a stale re-send
    connector = Seen(tmp_path / "systems")
    runner = runner_for(connector, service.reader())
    ledger = Ledger(tmp_path / "l.db")
    before = skipped("shredded_key")

    serde, sent = await deliver(runner, ledger, sealed, monkeypatch)  # returns: then committed

    assert connector.tasks == []
    assert sent == []
    assert serde.encoded == []
    assert len(ledger) == 0
    assert skipped("shredded_key") == before + 1
    assert runner.stats.skipped == 1
    assert runner.stats.handled == 0
    assert "shredded_key" in caplog.text
    for value in customer.identifiers(System.crm).values():
        assert value not in caplog.text
    assert customer.subject_id not in caplog.text  # no key id either
    assert open_store(tmp_path / "systems", System.crm).rows(customer.identifiers(System.crm))[
        "contacts"
    ]


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda ids, other: {k: other[k] for k in ids}, "tampered_field"),  # another subject's
        (lambda ids, _other: {k: f"{v[:-4]}AAAA" for k, v in ids.items()}, "tampered_field"),
        (lambda ids, _other: {k: "pv1:not-a-ciphertext" for k in ids}, "malformed_field"),
    ],
)
async def test_a_task_that_does_not_authenticate_is_skipped_and_never_executed(
    tmp_path: Path,
    people: list[FakeCustomer],
    service: KeyService,
    monkeypatch: pytest.MonkeyPatch,
    spoil: Any,
    reason: str,
) -> None:
    ann, bob = people[1], people[2]
    keys = service.reader()
    sealed = encrypt_record(task(r.Erase, ann, System.crm), keys)
    bobs = encrypt_record(task(r.Erase, bob, System.crm), keys)
    other = {k: bobs.identifiers.get(k, v) for k, v in sealed.identifiers.items()}
    spoilt = sealed.model_copy(update={"identifiers": spoil(sealed.identifiers, other)})
    connector = Seen(tmp_path / "systems")
    before = skipped(reason)

    _, sent = await deliver(
        runner_for(connector, keys), Ledger(tmp_path / "l.db"), spoilt, monkeypatch
    )

    assert connector.tasks == []
    assert sent == []
    assert skipped(reason) == before + 1


# --- answers are sealed ----------------------------------------------------------------------


@pytest.mark.parametrize("scope", [MAIN_SCOPE, RETAINED])
async def test_an_export_location_goes_out_encrypted_under_the_tasks_scope(
    tmp_path: Path,
    people: list[FakeCustomer],
    service: KeyService,
    monkeypatch: pytest.MonkeyPatch,
    scope: str,
) -> None:
    customer = people[0]
    plain = task(r.Export, customer, System.orders)
    sealed = encrypt_record(plain, service.reader(), scope=scope)
    connector = SeenOrders(tmp_path / "systems")
    ledger = Ledger(tmp_path / "l.db")

    serde, _ = await deliver(runner_for(connector, service.reader()), ledger, sealed, monkeypatch)

    assert connector.tasks == [plain]
    (result,) = serde.encoded
    assert isinstance(result, r.TaskCompleted)
    assert result.export is not None
    location = result.export.location
    assert is_encrypted(location)
    key_id, _ = parse_field(location)
    assert split_key_id(key_id)[:2] == (customer.subject_id, scope)
    opened = decrypt_record(result, service.reader(), subject_id=customer.subject_id)
    assert opened.export is not None
    assert opened.export.location.endswith(f"/orders/R-{customer.number}.json")
    # The ledger keeps it encrypted: the system's copy forgets with the key.
    stored = ledger.get(plain.task_id)
    assert stored == result


async def test_after_a_partial_erasure_an_answer_is_sealed_under_the_tasks_own_key(
    tmp_path: Path, people: list[FakeCustomer], service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an erasure that keeps purchases, privops seals the tasks it still sends (an
    access request's export to crm) under the subject's storage scope, a purchases key
    crm may not have made, and the key service makes (410) nothing for the erased
    subject: the runner seals the answer under the task's own key, read by id (session
    23: it asked for that scope's current key, was refused, and the access request was
    never answered)."""
    customer = people[0]
    plain = task(r.Export, customer, System.crm)
    sealed = encrypt_record(plain, service.reader(), scope=RETAINED)
    service.erased.add(customer.subject_id)  # main shredded; the retained key kept
    connector = Seen(tmp_path / "systems")
    ledger = Ledger(tmp_path / "l.db")

    keys = AskingKeys(service)
    serde, _ = await deliver(runner_for(connector, keys), ledger, sealed, monkeypatch)

    assert connector.tasks == [plain]
    (result,) = serde.encoded
    assert isinstance(result, r.TaskCompleted), result
    assert result.export is not None
    key_id, _ = parse_field(result.export.location)
    assert [key_id] == sealed_key_ids(sealed)
    opened = decrypt_record(result, service.reader(), subject_id=customer.subject_id)
    assert opened.export is not None
    assert "/crm/" in opened.export.location


async def test_a_resend_under_a_new_key_is_not_answered_under_the_destroyed_one(
    tmp_path: Path, people: list[FakeCustomer], service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export answered under main, the answer lost; a partial erasure destroys main
    and privops re-sends the task under the subject's storage scope. The ledger's answer,
    under main, could never be opened again: executed again, and answered under the
    task's key (an independent review, session 23)."""
    customer = people[0]
    plain = task(r.Export, customer, System.crm)
    under_main = encrypt_record(plain, service.reader())
    connector = Seen(tmp_path / "systems")
    ledger = Ledger(tmp_path / "l.db")
    await deliver(runner_for(connector, service.reader()), ledger, under_main, monkeypatch)
    resent = encrypt_record(
        plain.model_copy(update={"attempt": 2}), service.reader(), scope=RETAINED
    )
    (main_id,) = sealed_key_ids(under_main)
    service.own.apply(main_id, None)  # the erasure: main tombstoned, the retained key kept
    service.topic.append((main_id, None))
    service.erased.add(customer.subject_id)

    serde, _ = await deliver(
        runner_for(connector, AskingKeys(service)), ledger, resent, monkeypatch
    )

    (again,) = serde.encoded
    assert isinstance(again, r.TaskCompleted), again
    assert again.export is not None
    key_id, _ = parse_field(again.export.location)
    assert [key_id] == sealed_key_ids(resent)
    assert decrypt_record(again, service.reader(), subject_id=customer.subject_id).export
    assert len(connector.tasks) == 2  # executed again: the kept answer could not be opened


class Misplaced(OrdersConnector):
    """Writes its exports where it likes (its own host's path), not under its root."""

    async def handle(self, task: r.Task) -> Answer:
        answer = await super().handle(task)
        assert answer.export is not None
        moved = answer.export.model_copy(update={"location": "file:///var/exports/x.json"})
        return Answer.completed(answer.records_affected, export=moved)


@pytest.mark.parametrize("said", [True, False])
async def test_an_export_the_worker_would_refuse_is_a_failure_before_it_is_kept(
    tmp_path: Path,
    people: list[FakeCustomer],
    service: KeyService,
    monkeypatch: pytest.MonkeyPatch,
    said: bool,
) -> None:
    """Kept as done, it was counted completed here, refused by the worker and replayed to
    every re-send. Checked against the deployment's data map only (PRIVOPS_DATAMAP said):
    the packaged one's roots are the example company's."""
    settings = Settings(datamap=Settings().datamap) if said else Settings()
    runner = ConnectorRunner(
        Misplaced(tmp_path / "systems"), settings, retry=FAST, clock=lambda: NOW,
        keys=service.reader(),
    )  # fmt: skip
    plain = task(r.Export, people[0], System.orders)
    ledger = Ledger(tmp_path / "l.db")

    serde, _ = await deliver(runner, ledger, plain, monkeypatch)

    (result,) = serde.encoded
    assert ledger.get(plain.task_id) == result
    if not said:
        assert isinstance(result, r.TaskCompleted)  # the worker checks it, as before
        return
    assert isinstance(result, r.TaskFailed)
    assert not result.retryable
    assert result.reason == (
        "connector error: bad answer (export_outside_root: the location is not below "
        "orders's export root)"
    )
    assert "/var/exports" not in result.model_dump_json()


class Unportable(OrdersConnector):
    """Ignores ``Export.portability``: copies everything (the credit file too), or says
    its copy is a PDF."""

    change: ClassVar[dict[str, Any]] = {}

    async def handle(self, task: r.Task) -> Answer:
        answer = await super().handle(task)
        assert answer.export is not None
        return Answer.completed(
            answer.records_affected, export=answer.export.model_copy(update=self.change)
        )


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            {"categories": [Category.contact, Category.credit]},
            "export_not_portable: the copy holds credit",
        ),
        ({"media_type": 'application/pdf; name="Ann Jones.pdf"'}, "export_not_machine_readable: "),
    ],
)
async def test_a_copy_the_worker_would_fail_as_unportable_is_a_failure_before_it_is_kept(
    tmp_path: Path,
    people: list[FakeCustomer],
    service: KeyService,
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, Any],
    said: str,
) -> None:
    """The connector's ledger keeps what the worker would do with its answer: a copy in no
    machine-readable format, or of more than the portability task asked, fails here too,
    and the failure never quotes the system's own words (a file name may name the
    subject)."""
    monkeypatch.setattr(Unportable, "change", change)
    runner = runner_for(Unportable(tmp_path / "systems"), service.reader())
    customer = next(c for c in people if c.credit is not None)
    ported = task(
        r.Export,
        customer,
        System.orders,
        categories=[Category.contact, Category.payment, Category.purchases],
        portability=True,
    )
    ledger = Ledger(tmp_path / "l.db")
    serde, _ = await deliver(runner, ledger, ported, monkeypatch)
    (result,) = serde.encoded
    assert ledger.get(ported.task_id) == result
    assert isinstance(result, r.TaskFailed)
    assert not result.retryable
    assert result.reason.startswith(f"connector error: bad answer ({said}")
    assert "Ann" not in result.reason
    access = task(r.Export, customer, System.orders)  # an access copy is not checked so
    serde, _ = await deliver(runner, Ledger(tmp_path / "a.db"), access, monkeypatch)
    assert isinstance(serde.encoded[-1], r.TaskCompleted)


async def test_a_plaintext_export_task_is_answered_under_the_subjects_main_key(
    tmp_path: Path, people: list[FakeCustomer], service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = people[0]
    serde, _ = await deliver(
        runner_for(SeenOrders(tmp_path / "systems"), service.reader()),
        Ledger(tmp_path / "l.db"),
        task(r.Export, customer, System.orders),
        monkeypatch,
    )
    (result,) = serde.encoded
    assert isinstance(result, r.TaskCompleted)
    assert result.export is not None
    assert sealed_scope(result, subject_id=customer.subject_id) == MAIN_SCOPE
    assert plaintext_fields(result) == []


async def test_a_resend_replays_the_sealed_answer_and_seals_one_kept_in_plaintext(
    tmp_path: Path, people: list[FakeCustomer], service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = people[0]
    plain = task(r.Export, customer, System.orders)
    connector = SeenOrders(tmp_path / "systems")
    runner = runner_for(connector, service.reader())
    ledger = Ledger(tmp_path / "l.db")
    # A runner from before encryption kept its answer in plaintext.
    legacy = r.TaskCompleted(
        task_id=plain.task_id,
        request_id=plain.request_id,
        system=System.orders,
        answered_at=NOW,
        records_affected=1,
        export=r.ExportReference(
            location="https://exports.example/x.json", record_count=1, checksum="sha256:0"
        ),
    )
    ledger.put(plain, "completed", legacy)

    serde, _ = await deliver(runner, ledger, plain.model_copy(update={"attempt": 2}), monkeypatch)

    assert connector.tasks == []  # answered from the ledger
    (result,) = serde.encoded
    assert isinstance(result, r.TaskCompleted)
    assert result.attempt == 2
    assert result.export is not None
    assert is_encrypted(result.export.location)
    opened = decrypt_record(result, service.reader(), subject_id=customer.subject_id)
    assert opened.export == legacy.export


# --- keys that cannot be had now: never lost, answered retryable ---------------------------------


async def test_an_unreachable_key_service_is_retried_then_answered_retryable(
    tmp_path: Path, people: list[FakeCustomer], service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = people[1]
    sealed = encrypt_record(task(r.Erase, customer, System.crm), service.reader())
    kek = KekFile(tmp_path / "kek.json", True, 1, {1: KEK}, {1: NOW})
    nowhere = WorkerKeySource("http://127.0.0.1:9", kek, retry_seconds=0)  # discard port
    connector = Seen(tmp_path / "systems")
    runner = runner_for(connector, nowhere)
    ledger = Ledger(tmp_path / "l.db")
    retries = metric_value("privops_connector_key_retries_total", system="crm")

    serde, sent = await deliver(runner, ledger, sealed, monkeypatch)
    nowhere.close()

    assert connector.tasks == []
    (result,) = serde.encoded
    assert isinstance(result, r.TaskFailed)
    assert result.retryable
    assert "RuntimeUnavailable" in result.reason
    assert len(sent) == 1
    assert len(ledger) == 0  # not kept: privops' re-send executes it
    assert metric_value("privops_connector_key_retries_total", system="crm") == retries + 2

    # The key service is back: the re-send is executed.
    runner._keys = service.reader()
    serde, _ = await deliver(runner, ledger, sealed.model_copy(update={"attempt": 2}), monkeypatch)
    assert isinstance(serde.encoded[0], r.TaskCompleted)
    assert len(connector.tasks) == 1


async def test_an_answer_that_cannot_be_sealed_is_not_sent_in_plaintext(
    tmp_path: Path, people: list[FakeCustomer], service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = people[0]
    service.erased.add(customer.subject_id)  # the key service now answers 410
    connector = SeenOrders(tmp_path / "systems")
    ledger = Ledger(tmp_path / "l.db")

    serde, _ = await deliver(
        runner_for(connector, service.reader()),
        ledger,
        task(r.Export, customer, System.orders),
        monkeypatch,
    )

    assert len(connector.tasks) == 1
    (result,) = serde.encoded
    assert isinstance(result, r.TaskFailed)
    assert result.retryable
    assert "SubjectErased" in result.reason
    assert "exports" not in result.model_dump_json()
    assert len(ledger) == 0


# --- the helpers the runner reads a record with --------------------------------------------------


def test_sealed_key_ids_check_before_any_lookup(service: KeyService) -> None:
    ann, bob = seed_customers(3)[1:3]
    keys = service.reader()
    rectify = task(r.Rectify, ann, System.crm, changes={"email": "a@b.example"})
    sealed = encrypt_record(rectify, keys)
    (key_id,) = sealed_key_ids(sealed)
    assert split_key_id(key_id)[:2] == (ann.subject_id, MAIN_SCOPE)
    assert sealed_key_ids(task(r.Erase, ann, System.crm)) == []
    moved = sealed.model_copy(update={"subject_id": bob.subject_id})
    with pytest.raises(TamperedField):
        sealed_key_ids(moved)
    broken = sealed.model_copy(update={"identifiers": {"email": "pv1:nothing"}})
    with pytest.raises(MalformedField):
        sealed_key_ids(broken)


# --- the simulated systems publish ciphertext ----------------------------------------------------


def test_the_simulated_day_is_published_encrypted_one_key_per_subject(
    service: KeyService,
) -> None:
    customers = seed_customers(5)
    events = business_day(customers, seed=3, date=NOW.date())
    keys = service.reader()

    sealed, erased = seal_events(events, keys)

    assert erased == set()
    assert [(s, type(e), e.event_id) for s, e in sealed] == [
        (s, type(e), e.event_id) for s, e in events
    ]
    emails = {c.email for c in customers}
    for (_, event), (_, original) in zip(sealed, events, strict=True):
        assert not emails & set(event.model_dump_json().split('"'))
        assert plaintext_fields(event) == []
        assert decrypt_record(event, keys) == original
    assert len(service.topic) == len(customers)  # one key-service call per new subject


def test_an_erased_subjects_events_are_left_out(service: KeyService) -> None:
    customers = seed_customers(3)
    gone = customers[1].subject_id
    service.erased.add(gone)  # the key service answers 410: produce nothing about them
    events = business_day(customers, seed=3, date=NOW.date())

    sealed, erased = seal_events(events, service.reader())

    assert erased == {gone}
    assert [e.event_id for _, e in sealed] == [
        e.event_id for _, e in events if e.subject_id != gone
    ]


def _no_keys(subject_id: str, scope: str) -> SubjectKey:
    raise AssertionError(f"no key may be asked for ({scope})")


def test_the_default_key_source_is_the_workers_key_service_with_the_kek_file(
    tmp_path: Path, people: list[FakeCustomer]
) -> None:
    home = tmp_path / "home"
    passwords = ensure_credentials(credentials_path(home), principals())
    settings = Settings(
        home=home, env="dev", web_port=7123, kafka_security_protocol="SASL_PLAINTEXT"
    )
    runner = ConnectorRunner(Seen(tmp_path / "systems"), settings)
    keys = runner.keys
    assert isinstance(keys, WorkerKeySource)
    assert keys.base_url == "http://127.0.0.1:7123"
    # asked as the system itself, with its Kafka password
    auth = keys._http.auth
    assert auth is not None
    sent = next(auth.auth_flow(httpx.Request("POST", keys.base_url)))
    crm = system_principal(System.crm)
    assert basic_credentials(sent.headers["Authorization"]) == Credentials(crm, passwords[crm])
    assert (tmp_path / "home" / "keys" / "kek.json").exists()  # a dev KEK, made here
    assert runner.keys is keys
    runner._close_keys()
    other = ConnectorRunner(Seen(tmp_path / "systems"), settings, worker_url="http://w:1/")
    assert isinstance(other.keys, WorkerKeySource)
    assert other.keys.base_url == "http://w:1"
    other._close_keys()
