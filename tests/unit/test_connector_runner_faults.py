"""The runner and the reference connectors against the connector findings of review,
session 44: a store locked by the deletion by age, a ledger row that cannot be read, a
stop in the middle of a fetch, PLAINTEXT Kafka outside dev, and answers to an Export
the worker records as failed.

Real runner, real Avro answers, real SQLite ledgers and stores; only Kafka and the
schema registry are stood in for (test_connector_runner_hardening's fakes).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from privops.adapters.settings import Settings
from privops.connectors import Answer, Connector, ConnectorRunner, TransientRetry
from privops.connectors.ledger import Ledger, UnreadableAnswer
from privops.connectors.metrics import metric_value
from privops.connectors.reference import CrmConnector, seed_customers, seed_stores
from privops.connectors.reference import store as store_mod
from privops.core import records as r
from privops.core.errors import ConfigError
from privops.core.vocab import Category, System
from tests.unit.test_connector_runner_hardening import (
    EMAIL,
    NOW,
    _Avro,
    _Consumer,
    _Crm,
    _Fetch,
    _Opened,
    _until,
    erase,
    recording_producer,
)
from tests.unit.test_connector_runner_hardening import (
    no_kafka as no_kafka,  # the fixture, used by name below
)

pytestmark = pytest.mark.usefixtures("holds_read")

FAST = TransientRetry(retries=1, first_delay=0.001)
NoKafka = Callable[[ConnectorRunner, _Consumer], _Opened]


# --- 1. a store locked by the deletion by age is "try again" --------------------------------


def _crm_erase(data_dir: Path, attempt: int = 1) -> r.Erase:
    """Customer 2's erasure at the reference CRM, its store seeded under ``data_dir``."""
    customers = seed_customers(4, anchor=date(2026, 3, 2))
    seed_stores(data_dir, customers)
    c = customers[1]
    return r.Erase(
        task_id="R-1:crm:erase",
        request_id="R-1",
        subject_id=c.subject_id,
        system=System.crm,
        issued_at=NOW,
        identifiers=c.identifiers(System.crm),
        attempt=attempt,
    )


async def test_a_store_locked_by_the_deletion_by_age_is_answered_retryable_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite3's "database is locked" is no OSError: it was answered failed for good and
    replayed to every re-send, while purge_periodically held the store (review,
    session 44). Retryable now, not kept, and the re-send erases."""
    monkeypatch.setattr(store_mod, "LOCK_TIMEOUT_SECONDS", 0.05)
    task = _crm_erase(tmp_path)
    connector = CrmConnector(tmp_path)
    serde = _Avro({b"1": task, b"2": task.model_copy(update={"attempt": 2})})
    runner = ConnectorRunner(connector, Settings(), retry=FAST)
    runner.serde = serde
    ledger = Ledger(tmp_path / "l.db")
    fetch = _Fetch(runner, ledger)
    purge = sqlite3.connect(connector.store.path, isolation_level=None)
    purge.execute("BEGIN IMMEDIATE")  # as ReferenceStore.purge_expired holds it

    await fetch((b"1", 1))

    failed = serde.read(fetch.sent[-1][1])
    assert isinstance(failed, r.TaskFailed)
    assert failed.retryable
    assert ledger.get(task.task_id) is None

    purge.execute("ROLLBACK")
    purge.close()
    await fetch((b"2", 2))

    done = serde.read(fetch.sent[-1][1])
    assert isinstance(done, r.TaskCompleted)
    assert done.records_affected > 0
    assert fetch.committed == [2, 3]


async def test_a_store_that_fails_the_same_every_time_is_still_a_connector_error(
    tmp_path: Path,
) -> None:
    """Only a busy store is passing: a missing table would fail at every re-send, and
    is answered final, as any other exception is (a bug must not loop)."""
    task = _crm_erase(tmp_path)
    connector = CrmConnector(tmp_path)
    with sqlite3.connect(connector.store.path) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            db.execute(f"DROP TABLE {table}")
    runner = ConnectorRunner(connector, Settings(), retry=FAST)

    answer = await runner._execute(task)

    assert answer == Answer.failed("connector error: OperationalError", retryable=False)


# --- 2. a ledger row that cannot be read ---------------------------------------------------

UNREADABLE_ROWS = {
    "a record type this runner does not know": ("TaskDeferred", '{"task_id": "R-1:crm:erase"}'),
    "JSON cut short": ("TaskCompleted", '{"task_id": "R-1:crm:er'),
    "a model that no longer validates": ("TaskCompleted", f'{{"reason": "{EMAIL}"}}'),
}


@pytest.mark.parametrize("case", UNREADABLE_ROWS)
async def test_an_unreadable_ledger_row_is_executed_again_not_a_crash_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """``ledger.get`` raised out of ``_process_task`` and ended run(); the offset came
    back at every restart and the connector never ran again (review, session 44)."""
    caplog.set_level(logging.INFO)
    record_type, record = UNREADABLE_ROWS[case]
    task = erase("R-1:crm:erase")
    ledger = Ledger(tmp_path / "l.db")
    ledger._db.execute(
        "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (task.task_id, "R-1", "erase", "completed", record_type, record, 1, NOW.isoformat()),
    )
    with pytest.raises(UnreadableAnswer):
        ledger.get(task.task_id)
    connector = _Crm({task.task_id: lambda: Answer.completed(2)})
    serde = _Avro({b"t": task.model_copy(update={"attempt": 2})})
    runner = ConnectorRunner(connector, Settings(), retry=FAST)
    runner.serde = serde
    fetch = _Fetch(runner, ledger)
    before = metric_value("privops_connector_ledger_unreadable_total", system="crm")

    await fetch((b"t", 5))

    assert connector.calls == [task.task_id]
    assert fetch.committed == [6]
    (answer,) = (serde.read(value) for _, value in fetch.sent)
    assert isinstance(answer, r.TaskCompleted)
    assert isinstance(ledger.get(task.task_id), r.TaskCompleted)  # the new answer replaces it
    after = metric_value("privops_connector_ledger_unreadable_total", system="crm")
    assert after == before + 1
    said = [rec.getMessage() for rec in caplog.records if "cannot be read" in rec.getMessage()]
    assert len(said) == 1
    assert task.task_id in said[0]
    assert EMAIL not in caplog.text


def test_the_ledger_syncs_each_answer_to_disk(tmp_path: Path) -> None:
    """FULL, said: some SQLite builds make WAL's default NORMAL, under which a power cut
    loses the last kept answers and their re-sends are executed again."""
    ledger = Ledger(tmp_path / "l.db")
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    ledger.close()


# --- 3. stop is heard between the tasks of a fetch -----------------------------------------


async def test_stop_ends_the_fetch_after_the_task_in_hand(
    tmp_path: Path, no_kafka: NoKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once stop was set, the whole fetch (up to 50 tasks, each up to task_timeout) was
    still worked through, and a supervisor's stop timeout killed the process mid-task
    (review, session 44). The task in hand is answered and committed; the rest is left
    uncommitted, read again by the next run."""
    stop = asyncio.Event()
    tasks = [erase(f"R-{n}:crm:erase", f"CUST-000{n}") for n in (1, 2, 3)]

    def first() -> Answer:
        stop.set()  # SIGTERM while the first task runs
        return Answer.completed(1)

    script: dict[str, Callable[[], object]] = {
        t.task_id: lambda: Answer.completed(1) for t in tasks
    }
    script[tasks[0].task_id] = first
    connector = _Crm(script)
    runner = ConnectorRunner(connector, Settings(), ledger=tmp_path / "l.db", retry=FAST)
    runner.serde = _Avro({str(n).encode(): t for n, t in enumerate(tasks)})
    tp = TopicPartition("privacy.tasks.crm", 0)
    fetched = [SimpleNamespace(value=str(n).encode(), offset=10 + n) for n in range(3)]
    consumer = _Consumer([{tp: fetched}])
    no_kafka(runner, consumer)
    sent = recording_producer(monkeypatch)

    await asyncio.wait_for(runner.run(stop), timeout=5.0)

    assert connector.calls == [tasks[0].task_id]
    assert len(sent) == 1
    assert consumer.committed == [{tp: 11}]


# --- 4. no PLAINTEXT Kafka outside dev -----------------------------------------------------

PROD: dict[str, Any] = {"env": "prod", "kafka_security_protocol": "PLAINTEXT"}


async def test_plaintext_kafka_outside_dev_is_refused_before_anything_opens(
    tmp_path: Path, no_kafka: NoKafka
) -> None:
    """The worker refused it (streams.startup); a connector ran on it unsaid, where any
    client may read the system's tasks and answer for it (review, session 44)."""
    runner = ConnectorRunner(_Crm({}), Settings(**PROD), ledger=tmp_path / "l.db")
    consumer = _Consumer([])
    opened = no_kafka(runner, consumer)

    with pytest.raises(ConfigError, match="PRIVOPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        await asyncio.wait_for(runner.run(asyncio.Event()), timeout=5.0)

    assert not consumer.started
    assert opened.closed == []  # refused before the key source or the ledger


@pytest.mark.parametrize(
    "said",
    [
        {**PROD, "kafka_plaintext": "allow"},  # a private network, said so
        {"env": "dev", "kafka_security_protocol": "PLAINTEXT"},
        {"env": "prod", "kafka_security_protocol": "SASL_SSL"},
    ],
)
async def test_plaintext_kafka_runs_in_dev_or_where_allowed(
    tmp_path: Path, no_kafka: NoKafka, said: dict[str, Any]
) -> None:
    runner = ConnectorRunner(_Crm({}), Settings(**said), ledger=tmp_path / "l.db")
    consumer = _Consumer([])
    no_kafka(runner, consumer)
    stop = asyncio.Event()

    running = asyncio.create_task(runner.run(stop))
    await asyncio.wait_for(_until(lambda: consumer.started), timeout=5.0)
    stop.set()
    await asyncio.wait_for(running, timeout=5.0)


# --- 5. an answer to an Export the worker records as failed --------------------------------


class _Exports(Connector):
    """Answers each Export with what its script returns."""

    system = System.crm

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls = 0

    async def export(self, task: r.Export) -> Answer:
        self.calls += 1
        return self.answer


def export(*, portability: bool, attempt: int = 1) -> r.Export:
    return r.Export(
        task_id="R-9:crm:export",
        request_id="R-9",
        subject_id="CUST-0001",
        system=System.crm,
        issued_at=NOW,
        identifiers={"email": EMAIL},
        categories=[Category.contact] if portability else [],
        portability=portability,
        attempt=attempt,
    )


KEPT = Answer.retained("kept by law", [Category.contact])
EXPORT_ANSWERS = {
    "completed, no copy": (False, Answer.completed(3), "completed without an export"),
    "retained to a portability request": (
        True,
        KEPT,
        "retained to a portability export: no copy made",
    ),
}


@pytest.mark.parametrize("case", EXPORT_ANSWERS)
async def test_an_export_answer_the_worker_fails_is_a_bad_answer_here_too(
    tmp_path: Path, case: str
) -> None:
    """The runner counted these done and replayed them to every re-send, while the worker
    recorded the task failed (privops.core.fanout._record_answer): local metrics and the
    request disagreed (review, session 44)."""
    portability, returned, why = EXPORT_ANSWERS[case]
    connector = _Exports(returned)
    task = export(portability=portability)
    serde = _Avro({b"1": task, b"2": export(portability=portability, attempt=2)})
    runner = ConnectorRunner(connector, Settings(), retry=FAST)
    runner.serde = serde
    ledger = Ledger(tmp_path / "l.db")
    fetch = _Fetch(runner, ledger)

    await fetch((b"1", 1))
    await fetch((b"2", 2))  # privops' re-send: the kept failure, not a second execution

    reason = f"connector error: bad answer ({why})"
    answers = [serde.read(value) for _, value in fetch.sent]
    assert [(type(a).__name__, getattr(a, "reason", None)) for a in answers] == [
        ("TaskFailed", reason),
        ("TaskFailed", reason),
    ]
    assert all(not getattr(a, "retryable", True) for a in answers)
    assert connector.calls == 1
    assert runner.stats.by_outcome == {"failed": 2}


async def test_retained_to_an_access_export_is_still_an_answer(tmp_path: Path) -> None:
    """Only portability makes no copy by keeping: an access request's system may keep
    (the worker records it retained)."""
    serde = _Avro({b"1": export(portability=False)})
    runner = ConnectorRunner(_Exports(KEPT), Settings(), retry=FAST)
    runner.serde = serde
    fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))

    await fetch((b"1", 1))

    (answer,) = (serde.read(value) for _, value in fetch.sent)
    assert isinstance(answer, r.TaskRetained)


@pytest.mark.parametrize("case", EXPORT_ANSWERS)
async def test_such_an_answer_kept_by_an_earlier_runner_is_replaced_when_replayed(
    tmp_path: Path, case: str
) -> None:
    """Kept in the ledger before the check above, it was replayed as done to every
    re-send (review of session 44's fix): replaced by the bad answer's failure, which
    is kept instead, and the connector is not called again."""
    portability, returned, why = EXPORT_ANSWERS[case]
    task = export(portability=portability)
    ledger = Ledger(tmp_path / "l.db")
    kept = returned.result(task, NOW)
    assert kept is not None
    ledger.put(task, returned.label, kept)  # as a 0.43 runner kept it
    connector = _Exports(returned)
    serde = _Avro({b"2": export(portability=portability, attempt=2)})
    runner = ConnectorRunner(connector, Settings(), retry=FAST)
    runner.serde = serde
    fetch = _Fetch(runner, ledger)

    await fetch((b"2", 2))

    (answer,) = (serde.read(value) for _, value in fetch.sent)
    assert isinstance(answer, r.TaskFailed)
    assert answer.reason == f"connector error: bad answer ({why})"
    assert connector.calls == 0
    again = ledger.get(task.task_id)
    assert isinstance(again, r.TaskFailed)
