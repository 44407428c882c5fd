"""The runner against what goes wrong around a connector: a bad value returned, a key
service that refuses the system, a connector that cannot start, a registry that is down
when asked to stop; and docs/connectors.md's example, run as written.

Answers are real Avro, with the serde the runner sends with (only the registry is stood
in for): "too large for Avro" is found only by encoding.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError
from pydantic import SecretStr

import privops.connectors.runner as runner_mod
from privops.adapters import web_tls
from privops.adapters.datamap_file import load_datamap
from privops.adapters.serde import Serde, unframe
from privops.adapters.settings import Settings
from privops.connectors import Answer, Connector, ConnectorRunner, TransientRetry
from privops.connectors.encryption import encrypt_record
from privops.connectors.ledger import Ledger
from privops.connectors.runner import key_trouble
from privops.core import records as r
from privops.core.admission import MAX_ANSWER_REASON_CHARS
from privops.core.erasure import SubjectFacts, plan_erasure
from privops.core.errors import (
    PrivopsError,
    RegistryError,
    RegistryUnreachable,
    RuntimeUnavailable,
)
from privops.core.exports import export_problem
from privops.core.holds import LegalHold
from privops.core.subject_keys import SubjectErased
from privops.core.vocab import Category, System
from tests.unit.test_connector_sealing import KeyService

pytestmark = pytest.mark.usefixtures("holds_read")

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FAST = TransientRetry(retries=1, first_delay=0.001)
PHONE = "+44 7700 900123"
EMAIL = "theo.patel@example.com"
PASSWORD = "s3cret-crm-password"


def erase(task_id: str, subject_id: str = "CUST-0001", attempt: int = 1, **extra: Any) -> r.Erase:
    return r.Erase(
        task_id=task_id,
        request_id=task_id.split(":")[0],
        subject_id=subject_id,
        system=System.crm,
        issued_at=NOW,
        identifiers={"email": EMAIL},
        attempt=attempt,
        **extra,
    )


class _Avro(Serde):
    """The runner's serde with the registry stood in for: real Avro, a fixed id per
    schema. ``decode_async`` hands over the fetched records by their bytes."""

    def __init__(self, fetched: dict[bytes, r.Record]) -> None:
        super().__init__("http://registry.invalid", Settings().schema_dir)
        self.fetched = fetched
        self.names = sorted(self.codec.latest)

    def schema_id(self, fullname: str) -> int:
        return self.names.index(fullname) + 1

    async def decode_async(self, data: bytes | None) -> r.Record:
        assert data is not None
        return self.fetched[data]

    def read(self, payload: bytes) -> r.Record:
        """An answer as privops reads it back."""
        schema_id, body = unframe(payload)
        return self.codec.decode(self.codec.schema_text(self.names[schema_id - 1]), body)


class _Crm(Connector):
    """Returns, per task id, whatever its script makes: a buggy connector's values too."""

    system = System.crm

    def __init__(self, script: dict[str, Callable[[], object]]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def erase(self, task: r.Erase) -> Answer:
        self.calls.append(task.task_id)
        return cast(Answer, self.script[task.task_id]())


class _Fetch:
    """What the runner's loop hands ``_handle`` for one partition, and what came out."""

    def __init__(self, runner: ConnectorRunner, ledger: Ledger) -> None:
        self.runner = runner
        self.ledger = ledger
        self.sent: list[tuple[str, bytes]] = []
        self.committed: list[int] = []

    async def send(self, key: str, value: bytes) -> None:
        self.sent.append((key, value))

    async def commit(self, offset: int) -> None:
        self.committed.append(offset)

    async def __call__(self, *fetched: tuple[bytes, int]) -> None:
        messages = [SimpleNamespace(value=value, offset=offset) for value, offset in fetched]
        await self.runner._handle(messages, self.ledger, self.send, self.commit)


# --- a bad value returned ---------------------------------------------------------------------

BAD_ANSWERS: dict[str, tuple[Callable[[], object], str]] = {
    "a forgotten return": (lambda: None, "NoneType, not an Answer"),
    "a category outside the vocabulary": (
        lambda: Answer.retained("kept by law", ["not_a_category"]),  # type: ignore[list-item]
        "ValidationError",
    ),
    "no count": (
        lambda: Answer.completed(records_affected=None),  # type: ignore[arg-type]
        "ValidationError",
    ),
    "a count too large for Avro's long": (
        lambda: Answer.completed(records_affected=2**63),
        "OverflowError",
    ),
    "a kind of its own": (lambda: Answer("finished"), "unknown kind"),  # type: ignore[arg-type]
    # Past what the broker takes: sent, it was refused, and kept, refused at every restart.
    "an answer too large to send": (
        lambda: Answer.retained("kept", [Category.contact] * 600_000),
        "AnswerTooLarge",
    ),
}


async def test_a_reason_is_cut_to_what_privops_keeps(tmp_path: Path) -> None:
    """A connector's reason (a stack trace, a dump) made an answer the broker refused;
    privops keeps 500 characters of one (privops.core.admission) (connector review)."""
    connector = _Crm({"R-1:crm:erase": lambda: Answer.failed("x" * 2_000_000, retryable=False)})
    serde = _Avro({b"t": erase("R-1:crm:erase")})
    runner = ConnectorRunner(connector, Settings(), retry=FAST)
    runner.serde = serde
    fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))

    await fetch((b"t", 1))

    (answer,) = (serde.read(value) for _, value in fetch.sent)
    assert isinstance(answer, r.TaskFailed)
    assert answer.reason == "x" * MAX_ANSWER_REASON_CHARS


async def test_contact_details_in_a_reason_are_replaced(tmp_path: Path) -> None:
    """An error quoting the row it failed on: the reason is shown to the DPO and kept
    with the request (review, session 35)."""
    why = "update failed for ann.smith@example.com (+44 7700 900123): locked"
    connector = _Crm({"R-1:crm:erase": lambda: Answer.failed(why, retryable=False)})
    serde = _Avro({b"t": erase("R-1:crm:erase")})
    runner = ConnectorRunner(connector, Settings(), retry=FAST)
    runner.serde = serde
    fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))

    await fetch((b"t", 1))

    (answer,) = (serde.read(value) for _, value in fetch.sent)
    assert isinstance(answer, r.TaskFailed)
    assert answer.reason == "update failed for [email] ([phone]): locked"


@pytest.mark.parametrize("case", BAD_ANSWERS)
async def test_a_bad_answer_is_one_final_failure_and_the_fetch_goes_on(
    tmp_path: Path, case: str
) -> None:
    """Raised out of ``_handle``, a bad value left the offset uncommitted: every restart
    executed the task again (an erasure, again) and never answered it."""
    returned, why = BAD_ANSWERS[case]
    connector = _Crm({"R-1:crm:erase": returned, "R-2:crm:erase": lambda: Answer.completed(2)})
    bad, good = erase("R-1:crm:erase"), erase("R-2:crm:erase", "CUST-0002")
    serde = _Avro({b"bad": bad, b"good": good, b"again": bad.model_copy(update={"attempt": 2})})
    runner = ConnectorRunner(connector, Settings(), retry=FAST)
    runner.serde = serde
    ledger = Ledger(tmp_path / "l.db")
    fetch = _Fetch(runner, ledger)

    await fetch((b"bad", 7), (b"good", 8))

    assert fetch.committed == [8, 9]
    failed, completed = (serde.read(value) for _, value in fetch.sent)
    reason = f"connector error: bad answer ({why})"
    assert isinstance(failed, r.TaskFailed)
    assert (failed.task_id, failed.retryable, failed.reason) == ("R-1:crm:erase", False, reason)
    assert isinstance(completed, r.TaskCompleted)
    assert runner.stats.by_outcome == {"failed": 1, "completed": 1}
    kept = ledger.get("R-1:crm:erase")
    assert isinstance(kept, r.TaskFailed)
    assert kept.reason == reason

    await fetch((b"again", 9))  # privops' re-send: the kept failure, not a second execution

    assert connector.calls == ["R-1:crm:erase", "R-2:crm:erase"]
    assert fetch.committed == [8, 9, 10]
    replayed = serde.read(fetch.sent[-1][1])
    assert isinstance(replayed, r.TaskFailed)
    assert (replayed.attempt, replayed.reason) == (2, reason)


@pytest.mark.parametrize(
    "returned",
    [
        lambda: Answer.completed(records_affected=PHONE),  # type: ignore[arg-type]
        lambda: Answer.retained("kept", [EMAIL]),  # type: ignore[list-item]
    ],
)
async def test_a_bad_answer_tells_nobody_the_value_it_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, returned: Callable[[], object]
) -> None:
    """pydantic's error quotes the value it refused: the subject's phone, their email."""
    caplog.set_level(logging.DEBUG)
    serde = _Avro({b"t": erase("R-1:crm:erase")})
    runner = ConnectorRunner(_Crm({"R-1:crm:erase": returned}), Settings(), retry=FAST)
    runner.serde = serde
    fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))

    await fetch((b"t", 1))

    (answer,) = (serde.read(value) for _, value in fetch.sent)
    assert isinstance(answer, r.TaskFailed)
    assert answer.reason == "connector error: bad answer (ValidationError)"
    told = caplog.text + answer.model_dump_json()
    assert PHONE not in told
    assert EMAIL not in told
    assert all(record.exc_info is None for record in caplog.records)


async def test_an_unencodable_answer_an_older_runner_kept_is_replaced_not_replayed(
    tmp_path: Path,
) -> None:
    """An answer kept before the runner checked it encodes failed at every re-send, the
    connector fixed or not: it is replaced, once, by the bad answer's failure."""
    task = erase("R-1:crm:erase")
    ledger = Ledger(tmp_path / "l.db")
    done = Answer.completed(records_affected=2**63).result(task, NOW)
    assert done is not None
    ledger.put(task, "completed", done)
    connector = _Crm({"R-1:crm:erase": lambda: Answer.completed(1)})
    serde = _Avro(
        {b"2": erase("R-1:crm:erase", attempt=2), b"3": erase("R-1:crm:erase", attempt=3)}
    )
    runner = ConnectorRunner(connector, Settings(), retry=FAST)
    runner.serde = serde
    fetch = _Fetch(runner, ledger)

    await fetch((b"2", 1))
    await fetch((b"3", 2))

    assert connector.calls == []  # it was done once: a person looks, nothing runs again
    assert fetch.committed == [2, 3]
    answers = [serde.read(value) for _, value in fetch.sent]
    assert all(isinstance(a, r.TaskFailed) for a in answers)
    assert [cast(r.TaskFailed, a).attempt for a in answers] == [2, 3]
    kept = ledger.get("R-1:crm:erase")
    assert isinstance(kept, r.TaskFailed)
    assert kept.reason == "connector error: bad answer (OverflowError)"


# --- run(): what it opened is closed; stop is heard ---------------------------------------


class _Consumer:
    """Stands in for AIOKafkaConsumer: serves ``batches``, then nothing."""

    def __init__(self, batches: list[dict[TopicPartition, list[SimpleNamespace]]]) -> None:
        self.batches = batches
        self.started = self.stopped = False
        self.committed: list[dict[TopicPartition, int]] = []

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return set()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)


class _Opened:
    """What a run opened and whether it was closed."""

    def __init__(self) -> None:
        self.closed: list[str] = []


@pytest.fixture
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> Callable[[ConnectorRunner, _Consumer], _Opened]:
    """``run()`` over a stand-in consumer, producer, ledger and key source."""

    def install(runner: ConnectorRunner, consumer: _Consumer) -> _Opened:
        opened = _Opened()

        class _Ledger(Ledger):
            def close(self) -> None:
                opened.closed.append("ledger")
                super().close()

        class _Keys:
            def close(self) -> None:
                opened.closed.append("keys")

        @asynccontextmanager
        async def producer(_client: dict[str, Any]) -> AsyncIterator[Any]:
            yield SimpleNamespace()

        monkeypatch.setattr(runner_mod, "AIOKafkaConsumer", lambda *_a, **_k: consumer)
        monkeypatch.setattr(runner_mod, "client_options", lambda *_a: {})
        monkeypatch.setattr(runner_mod, "producer", producer)
        monkeypatch.setattr(runner_mod, "Ledger", _Ledger)
        monkeypatch.setattr(runner_mod, "worker_keys", lambda *_a, **_k: _Keys())
        monkeypatch.setattr(runner.serde, "register_all", lambda: 0)
        return opened

    return install


class _CannotStart(Connector):
    system = System.crm
    closed = False

    async def start(self) -> None:
        raise ConnectionError("crm database down")

    async def close(self) -> None:
        self.closed = True


async def test_a_connector_that_cannot_start_leaves_nothing_open(
    tmp_path: Path, no_kafka: Callable[[ConnectorRunner, _Consumer], _Opened]
) -> None:
    """The consumer it had started kept the system's partitions from the group."""
    connector = _CannotStart()
    runner = ConnectorRunner(connector, Settings(), ledger=tmp_path / "l.db")
    consumer = _Consumer([])
    opened = no_kafka(runner, consumer)

    with pytest.raises(ConnectionError):
        await runner.run()

    assert consumer.started
    assert consumer.stopped
    assert sorted(opened.closed) == ["keys", "ledger"]
    assert not connector.closed  # close follows only a start that returned


class _RegistryDown(Serde):
    def __init__(self) -> None:
        super().__init__("http://registry.invalid", Settings().schema_dir)
        self.asked = asyncio.Event()

    async def decode_async(self, data: bytes | None) -> r.Record:
        self.asked.set()
        raise RegistryError("schema registry unreachable")


async def test_stop_is_heard_while_the_schema_registry_is_down(
    tmp_path: Path, no_kafka: Callable[[ConnectorRunner, _Consumer], _Opened]
) -> None:
    """The decode retried every second for ever, ``stop`` unheard; stopped now, the
    fetch stays uncommitted, to be read again."""
    runner = ConnectorRunner(_Crm({}), Settings(), ledger=tmp_path / "l.db")
    serde = _RegistryDown()
    runner.serde = serde
    tp = TopicPartition("privacy.tasks.crm", 0)
    consumer = _Consumer([{tp: [SimpleNamespace(value=b"t", offset=4)]}])
    no_kafka(runner, consumer)
    stop = asyncio.Event()

    running = asyncio.create_task(runner.run(stop))
    await asyncio.wait_for(serde.asked.wait(), timeout=2.0)
    stop.set()
    await asyncio.wait_for(running, timeout=2.0)

    assert consumer.committed == []
    assert consumer.stopped


async def test_a_registry_down_at_start_is_waited_for_not_fatal(
    tmp_path: Path,
    no_kafka: Callable[[ConnectorRunner, _Consumer], _Opened],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """run() raised RegistryError at once: a connector started before the registry, or
    during its restart, stayed down (connector review, session 33). It asks again with
    backoff, then runs; ``stop`` meanwhile ends it with nothing started."""
    monkeypatch.setattr(runner_mod, "REGISTRY_RETRY_SECONDS", 0.01)
    runner = ConnectorRunner(_Crm({}), Settings(), ledger=tmp_path / "l.db")
    consumer = _Consumer([])
    no_kafka(runner, consumer)
    away = RegistryUnreachable("schema registry unreachable")
    answers: list[BaseException | int] = [away, away, 0]

    def register_all() -> int:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(runner.serde, "register_all", register_all)
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(stop))
    await asyncio.wait_for(_until(lambda: consumer.started), timeout=2.0)
    assert answers == []  # asked three times, then went on
    stop.set()
    await asyncio.wait_for(running, timeout=2.0)

    never = ConnectorRunner(_Crm({}), Settings(), ledger=tmp_path / "m.db")
    idle = _Consumer([])
    no_kafka(never, idle)
    tries: list[int] = []

    def down() -> int:
        tries.append(1)
        raise RegistryUnreachable("schema registry unreachable")

    monkeypatch.setattr(never.serde, "register_all", down)
    stop = asyncio.Event()
    running = asyncio.create_task(never.run(stop))
    await asyncio.wait_for(_until(lambda: len(tries) >= 2), timeout=2.0)
    stop.set()
    await asyncio.wait_for(running, timeout=2.0)
    assert not idle.started

    # A refusal (credentials, an unregistered schema) is raised: asking again won't mend it.
    refused = ConnectorRunner(_Crm({}), Settings(), ledger=tmp_path / "n.db")
    no_kafka(refused, _Consumer([]))

    def refusing() -> int:
        raise RegistryError("looking up X: the registry refused this user (401)")

    monkeypatch.setattr(refused.serde, "register_all", refusing)
    with pytest.raises(RegistryError, match="refused"):
        await asyncio.wait_for(refused.run(asyncio.Event()), timeout=2.0)


# --- why a key cannot be had -------------------------------------------------------------


@asynccontextmanager
async def _serving(
    answer: bytes, context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A one-line HTTP server on loopback answering every request with ``answer``."""
    asked: list[bytes] = []

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1], asked


def _http(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


def _own_keys_runner(tmp_path: Path, url: str) -> ConnectorRunner:
    """A runner building its own key source, as a deployment's does, asking as system-crm."""
    settings = Settings(
        home=tmp_path / "home",
        env="dev",
        kek_file=tmp_path / "kek.json",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_principal="system-crm",
        kafka_password=SecretStr(PASSWORD),
    )
    return ConnectorRunner(_Crm({}), settings, retry=FAST, worker_url=url)


async def _two_sealed_tasks(runner: ConnectorRunner, tmp_path: Path) -> list[r.Record]:
    """Two subjects' tasks, sealed under their keys, in one fetch; the answers sent."""
    service = KeyService()
    tasks = [erase(f"R-{n}:crm:erase", f"CUST-000{n}") for n in (1, 2)]
    sealed: dict[bytes, r.Record] = {
        str(n).encode(): encrypt_record(t, service.reader()) for n, t in enumerate(tasks)
    }
    serde = _Avro(sealed)
    runner.serde = serde
    fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))
    await fetch((b"0", 1), (b"1", 2))
    assert fetch.committed == [2, 3]
    return [serde.read(value) for _, value in fetch.sent]


def _runner_said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [rec.getMessage() for rec in caplog.records if rec.name == runner_mod.__name__]


async def test_a_refused_principal_is_logged_once_with_its_status_never_a_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, every task logged "key unavailable (PrivopsError)" and nothing said that
    the key service refused system-crm's password."""
    caplog.set_level(logging.INFO)
    refused = _http(
        "401 Unauthorized", b'{"error": "unauthenticated", "reason": "the broker refused"}'
    )
    async with _serving(refused) as (port, asked):
        runner = _own_keys_runner(tmp_path, f"http://127.0.0.1:{port}")
        answers = await _two_sealed_tasks(runner, tmp_path)
        runner._close_keys()

    assert len(asked) == 4  # two tasks, a try and a retry each: all refused
    assert [(type(a).__name__, getattr(a, "retryable", None)) for a in answers] == [
        ("TaskFailed", True),
        ("TaskFailed", True),
    ]
    assert {getattr(a, "reason", None) for a in answers} == {
        "the subject's key is unavailable (PrivopsError)"
    }
    said = _runner_said(caplog)
    causes = [line for line in said if line.startswith("keys unavailable")]
    assert len(causes) == 1
    assert "refused principal system-crm (401)" in causes[0]
    told = " ".join(said) + " ".join(a.model_dump_json() for a in answers)
    for secret in (PASSWORD, "CUST-0001", "CUST-0002", EMAIL, "pv1:"):
        assert secret not in told


async def test_an_untrusted_certificate_is_logged_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose CA this host was not given (PRIVOPS_WEB_CA unset or wrong)."""
    caplog.set_level(logging.INFO)
    made = web_tls.development_certificates(tmp_path / "tls", ["127.0.0.1"])
    served = Settings(home=tmp_path, web_tls_cert=made.cert, web_tls_key=made.key)
    context = web_tls.server_context(served)
    async with _serving(_http("200 OK", b"{}"), context) as (port, _):
        runner = _own_keys_runner(tmp_path, f"https://127.0.0.1:{port}")
        answers = await _two_sealed_tasks(runner, tmp_path)
        runner._close_keys()

    assert {getattr(a, "reason", None) for a in answers} == {
        "the subject's key is unavailable (RuntimeUnavailable)"
    }
    causes = [line for line in _runner_said(caplog) if line.startswith("keys unavailable")]
    assert len(causes) == 1
    assert "certificate is not trusted" in causes[0]
    assert "PRIVOPS_WEB_CA" in causes[0]


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    """``exc`` as ``raise exc from cause`` leaves it."""
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "principal", "told"),
    [
        (
            PrivopsError(
                "privops' key service at https://w:6066 refused this caller (403: principal "
                "'system-crm' may not ask subject_keys); it takes a Kafka principal"
            ),
            None,
            "the key service refused this caller (403): check the principal and its password",
        ),
        (
            PrivopsError("privops' key service at https://w:6066 answered 500"),
            "system-crm",
            "the key service answered 500 (PrivopsError)",
        ),
        (SubjectErased("the subject was erased (CUST-0001)"), "system-crm", "SubjectErased"),
        (
            _caused(
                RuntimeUnavailable("privops' key service at https://w:6066 is unreachable"),
                httpx.ConnectError("[Errno 111] Connection refused"),
            ),
            "system-crm",
            "RuntimeUnavailable (ConnectError)",
        ),
        (
            PrivopsError("the key service answered 'CUST-0001:main:1' for 'CUST-0001'"),
            "system-crm",
            "PrivopsError",
        ),
    ],
)
def test_the_cause_of_missing_keys_says_what_and_whom_never_a_subject(
    exc: BaseException, principal: str | None, told: str
) -> None:
    said = key_trouble(exc, principal)
    assert said.startswith(told)
    assert "CUST-0001" not in said


# --- docs/connectors.md's example, run as written --------------------------------------------


class _CrmDb:
    """What the example calls as ``mycrm.db``; records each call."""

    class Locked(Exception):
        pass

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def find(
        self, identifiers: dict[str, str], previous: dict[str, list[str]]
    ) -> SimpleNamespace:
        self.calls.append(("find", dict(identifiers)))
        return SimpleNamespace(row_count=3)

    async def delete(self, contact: object, categories: set[Category]) -> None:
        self.calls.append(("delete", categories))

    async def export_json(
        self, identifiers: dict[str, str], name: str
    ) -> tuple[int, str, list[Category]]:
        self.calls.append(("export", name))
        return 4, "ab" * 32, [Category.contact, Category.interactions]


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, _CrmDb]:
    """The example's module (its first python block), and the db it calls."""
    text = (Path(__file__).parents[2] / "docs" / "connectors.md").read_text(encoding="utf-8")
    found = re.search(r"## A complete connector\n\n```python\n(.*?)```", text, re.DOTALL)
    assert found is not None
    db = _CrmDb()
    package = ModuleType("mycrm")
    package.__dict__["db"] = db
    monkeypatch.setitem(sys.modules, "mycrm", package)
    namespace: dict[str, Any] = {"__name__": "crm_connector"}
    exec(compile(found[1], "docs/connectors.md", "exec"), namespace)
    return namespace["CrmConnector"](), db


async def test_the_examples_export_is_where_the_worker_accepts_it(
    example: tuple[Any, _CrmDb],
) -> None:
    """It reported its own host's path: the worker refused it (export_outside_root)."""
    connector, _ = example
    task = r.Export(
        task_id="R-7:crm:export",
        request_id="R-7",
        subject_id="CUST-0001",
        system=System.crm,
        issued_at=NOW,
        identifiers={"email": EMAIL},
    )
    answer = await connector.export(task)
    assert answer.export is not None
    assert export_problem(load_datamap(), System.crm, answer.export, "R-7") is None
    # It says what its copy holds: the access letter lists those categories (0.38).
    assert answer.export.categories == [Category.contact, Category.interactions]


async def test_the_example_deletes_nothing_under_a_hold_on_everything(
    example: tuple[Any, _CrmDb],
) -> None:
    """privops' plan for a hold on all the CRM holds: nothing to erase, all kept. The
    example handed ``set()`` to its db's delete, which "empty means all" reads as all."""
    connector, db = example
    held = tuple(load_datamap().systems[System.crm].categories)
    hold = LegalHold(
        hold_id="H-1", subject_id="CUST-0001", categories=held, reason="claim", placed_at=NOW
    )
    plan = plan_erasure("CUST-0001", load_datamap(), None, [hold], SubjectFacts(), NOW)
    (crm,) = [i for i in plan.instructions if i.system is System.crm]
    keep = [r.Retention(category=k.category, ground=k.ground) for k in crm.keep]
    assert crm.erase == ()

    answer = await connector.erase(erase("R-1:crm:erase", categories=[], keep=keep))

    assert [name for name, _ in db.calls] == ["find"]
    assert answer.kind == "retained"
    assert set(answer.categories) == set(held)

    await connector.erase(erase("R-2:crm:erase", categories=[Category.contact]))
    assert db.calls[-1] == ("delete", {Category.contact})


class _Rebalanced(_Consumer):
    """Its first commit is refused: the group rebalanced while the fetch was handled (a
    second instance joined)."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not self.committed:
            self.committed.append({})
            raise CommitFailedError("the group has already rebalanced")
        await super().commit(offsets)


async def test_a_commit_refused_by_a_rebalance_leaves_the_fetch_to_the_new_owner(
    tmp_path: Path,
    no_kafka: Callable[[ConnectorRunner, _Consumer], _Opened],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/connectors.md says to run several instances in one group. A commit refused
    by the rebalance killed run(); now the rest of that fetch is left to the partition's
    new owner (not executed here as well), and the instance goes on with the next."""
    first, second, third = (erase(f"R-{n}:crm:erase") for n in (1, 2, 3))
    connector = _Crm({t.task_id: (lambda: Answer.completed(1)) for t in (first, second, third)})
    runner = ConnectorRunner(connector, Settings(), ledger=tmp_path / "l.db")
    runner.serde = _Avro({b"1": first, b"2": second, b"3": third})
    tp = TopicPartition("privacy.tasks.crm", 0)
    fetches = [
        {tp: [SimpleNamespace(value=b"1", offset=1), SimpleNamespace(value=b"2", offset=2)]},
        {tp: [SimpleNamespace(value=b"3", offset=3)]},
    ]
    consumer = _Rebalanced(fetches)
    no_kafka(runner, consumer)
    sent = recording_producer(monkeypatch)
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(stop))
    await asyncio.wait_for(_until(lambda: len(connector.calls) >= 2), timeout=10.0)
    stop.set()
    await asyncio.wait_for(running, timeout=10.0)

    assert connector.calls == [first.task_id, third.task_id]
    assert consumer.committed[1:] == [{tp: 4}]
    assert len(sent) == 2


async def _until(done: Callable[[], bool]) -> None:
    while not done():  # noqa: ASYNC110  (what is awaited is the runner's progress, no event)
        await asyncio.sleep(0.01)


def recording_producer(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The answers a run sends, as the producer would publish them."""
    sent: list[bytes] = []

    @asynccontextmanager
    async def producer(_client: dict[str, Any]) -> AsyncIterator[Any]:
        async def send_and_wait(_topic: str, key: bytes, value: bytes) -> None:
            sent.append(value)

        yield SimpleNamespace(send_and_wait=send_and_wait)

    monkeypatch.setattr(runner_mod, "producer", producer)
    return sent
