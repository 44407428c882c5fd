"""The runner's decisions without Kafka: in-process retries, the ledger, answering once."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from privops.adapters.settings import Settings
from privops.connectors import Answer, Connector, ConnectorRunner, TransientError, TransientRetry
from privops.connectors.ledger import Ledger, outcome_of
from privops.connectors.metrics import metric_value
from privops.core import records as r
from privops.core.vocab import Category, System, TaskOutcome

pytestmark = pytest.mark.usefixtures("holds_read")

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FAST = TransientRetry(retries=3, first_delay=0.001)
EXHAUSTED = "transient error, retries exhausted"


def erase(attempt: int = 1, system: System = System.crm) -> r.Erase:
    return r.Erase(
        task_id="T-1",
        request_id="R-1",
        subject_id="CUST-0001",
        system=system,
        issued_at=NOW,
        identifiers={"email": "theo.patel@example.com"},
        attempt=attempt,
    )


class _Scripted(Connector):
    """Answers (or raises) from a script, one entry per call; records each call's attempt."""

    system = System.crm

    def __init__(self, *script: Answer | Exception) -> None:
        self.script = list(script)
        self.attempts: list[int] = []

    async def erase(self, task: r.Erase) -> Answer:
        self.attempts.append(task.attempt)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step


class _Serde:
    """Stands in for the Avro serde: the runner's decisions do not depend on the bytes."""

    def __init__(self, record: r.Record) -> None:
        self.record = record
        self.decoded: list[bytes | None] = []
        self.encoded: list[r.Record] = []

    async def decode_async(self, data: bytes | None) -> r.Record:
        self.decoded.append(data)
        return self.record

    def encode(self, record: r.Record) -> bytes:
        self.encoded.append(record)
        return b"x"


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        (TransientRetry(), [0.2, 0.4, 0.8]),
        (TransientRetry(retries=0), []),
        (TransientRetry(retries=2, first_delay=1.0, multiplier=3.0), [1.0, 3.0]),
    ],
)
def test_transient_retry_delays(policy: TransientRetry, delays: list[float]) -> None:
    assert policy.delays() == pytest.approx(delays)


@pytest.mark.parametrize(
    ("script", "calls", "expected"),
    [
        ([TransientError("db locked")], 4, Answer.failed(EXHAUSTED)),
        ([TransientError("db locked"), Answer.completed(2)], 2, Answer.completed(2)),
        # A dependency down, as the database driver says it: passing, not final.
        ([ConnectionRefusedError(111, "refused")] * 4, 4, Answer.failed(EXHAUSTED)),
        ([TimeoutError(), Answer.completed(1)], 2, Answer.completed(1)),
        # Not passing: asked again, it fails the same (connector review, session 33).
        (
            [FileNotFoundError(2, "no such file")],
            1,
            Answer.failed("connector error: FileNotFoundError", retryable=False),
        ),
        (
            [KeyError("theo.patel@example.com")],
            1,
            Answer.failed("connector error: KeyError", retryable=False),
        ),
    ],
)
async def test_execute_retries_transient_errors_only(
    script: list[Answer | Exception], calls: int, expected: Answer
) -> None:
    connector = _Scripted(*script)
    runner = ConnectorRunner(connector, Settings(), retry=FAST)
    answer = await runner._execute(erase())
    assert len(connector.attempts) == calls
    assert answer == expected
    assert "@" not in answer.reason  # only the exception type, never its message


class _Hanging(Connector):
    """An erase that never returns (a database call with no timeout of its own)."""

    system = System.crm

    def __init__(self) -> None:
        self.cancelled = False

    async def erase(self, task: r.Erase) -> Answer:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return Answer.completed()


async def test_a_call_that_hangs_is_cancelled_and_answered_retryable() -> None:
    """It held every task behind it, unanswered and uncommitted, with nothing to show
    it (connector review, session 33). Retryable: privops sends it again later."""
    connector = _Hanging()
    runner = ConnectorRunner(connector, Settings(), retry=FAST, task_timeout=0.05)
    answer = await asyncio.wait_for(runner._execute(erase()), timeout=5)
    assert answer == Answer.failed("timed out after 0.05 s", retryable=True)
    assert connector.cancelled
    assert ConnectorRunner(connector, Settings()).task_timeout == 240  # the default


class _Stubborn(Connector):
    """Swallows the cancellation and carries on: the runner must not call it again."""

    system = System.crm

    def __init__(self) -> None:
        self.calls = 0

    async def erase(self, task: r.Erase) -> Answer:
        self.calls += 1
        if self.calls > 1:  # called again: hangs (the test's own wait_for ends it)
            await asyncio.sleep(3600)
        # A driver that turns cancellation into its own error (or into nothing).
        with suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        raise ConnectionError("gave up")


async def test_a_connector_that_swallows_the_cancellation_is_not_called_again() -> None:
    connector = _Stubborn()
    runner = ConnectorRunner(connector, Settings(), retry=FAST, task_timeout=0.05)
    answer = await asyncio.wait_for(runner._execute(erase()), timeout=5)
    assert answer == Answer.failed("timed out after 0.05 s", retryable=True)
    assert connector.calls == 1


class _SlowlyFailing(Connector):
    """Each try takes a while and fails transiently: the retries add up."""

    system = System.crm

    def __init__(self) -> None:
        self.tries = 0

    async def erase(self, task: r.Erase) -> Answer:
        self.tries += 1
        await asyncio.sleep(0.03)
        raise TransientError("busy")


async def test_the_timeout_bounds_the_task_not_each_try() -> None:
    """Per try, four tries of 240 s each took 16 minutes (review, session 33)."""
    connector = _SlowlyFailing()
    slow = TransientRetry(retries=10, first_delay=0.001, multiplier=1.0)
    runner = ConnectorRunner(connector, Settings(), retry=slow, task_timeout=0.1)
    answer = await asyncio.wait_for(runner._execute(erase()), timeout=5)
    assert answer == Answer.failed("timed out after 0.1 s", retryable=True)
    assert connector.tries < 11


def test_ledger_round_trip(tmp_path: Path) -> None:
    task = erase()
    ledger = Ledger(tmp_path / "l.db")
    result = Answer.retained("why", [Category.contact]).result(task, NOW)
    assert result is not None
    ledger.put(task, "retained", result)
    ledger.close()
    again = Ledger(tmp_path / "l.db")
    assert again.get("T-1") == result
    assert again.get("T-2") is None
    assert len(again) == 1


@pytest.mark.parametrize(
    ("model", "outcome"),
    [
        (r.TaskCompleted, TaskOutcome.completed),
        (r.TaskRetained, TaskOutcome.retained),
        (r.NotFound, TaskOutcome.not_found),
        (r.TaskFailed, TaskOutcome.failed),
    ],
)
def test_outcome_of_a_stored_result(model: type[r.TaskResult], outcome: TaskOutcome) -> None:
    fields: dict[str, Any] = {"reason": "r"} if model in (r.TaskFailed, r.TaskRetained) else {}
    result = model(task_id="T", request_id="R", system=System.crm, answered_at=NOW, **fields)
    assert outcome_of(result) is outcome


async def _deliver(
    runner: ConnectorRunner, ledger: Ledger, serde: _Serde, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, bytes]]:
    sent: list[tuple[str, bytes]] = []

    async def send(key: str, value: bytes) -> None:
        sent.append((key, value))

    monkeypatch.setattr(runner, "serde", serde)
    await deliver_one(runner, ledger, send)
    return sent


async def deliver_one(runner: ConnectorRunner, ledger: Ledger, send: Any) -> None:
    """One fetched task (bytes the test's serde decodes), as the runner's loop hands it."""

    async def commit(_offset: int) -> None:
        return None

    await runner._handle([SimpleNamespace(value=b"task", offset=7)], ledger, send, commit)


@pytest.mark.parametrize(
    ("first", "executions", "duplicates"),
    [
        (Answer.completed(3), 1, 1),  # final: the re-send is answered from the ledger
        (Answer.failed("no", retryable=False), 1, 1),
        (Answer.failed("busy"), 2, 0),  # retryable: the re-send executes again
        (Answer.no_answer(), 2, 0),
    ],
)
async def test_a_resent_task_is_executed_again_only_without_a_final_answer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    first: Answer,
    executions: int,
    duplicates: int,
) -> None:
    connector = _Scripted(first)
    runner = ConnectorRunner(connector, Settings(), retry=FAST, clock=lambda: NOW)
    ledger = Ledger(tmp_path / "l.db")
    answered: list[tuple[r.Task, r.TaskResult | None, bool]] = []
    runner.on_answer = lambda *a: answered.append(a)

    for attempt in (1, 2):
        serde = _Serde(erase(attempt))
        sent = await _deliver(runner, ledger, serde, monkeypatch)
        assert len(sent) == (first.kind != "no_answer")
        # Every answer, a replayed one too, echoes the attempt it answers.
        assert all(isinstance(x, r.TaskResult) and x.attempt == attempt for x in serde.encoded)

    assert len(connector.attempts) == executions
    assert runner.stats.handled == 2
    assert runner.stats.duplicates == duplicates
    assert runner.stats.by_outcome == {first.label: 2}
    assert [dup for _, _, dup in answered] == [False, bool(duplicates)]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (erase(system=System.orders), "wrong_system"),
        (r.NotFound(task_id="T", request_id="R", system=System.crm, answered_at=NOW), "not_a_task"),
    ],
)
async def test_records_that_are_not_this_systems_tasks_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record: r.Record, reason: str
) -> None:
    connector = _Scripted(Answer.completed())
    runner = ConnectorRunner(connector, Settings())
    skipped = {"name": "privops_connector_skipped_total", "system": "crm", "reason": reason}
    before = metric_value(**skipped)
    sent = await _deliver(runner, Ledger(tmp_path / "l.db"), _Serde(record), monkeypatch)
    assert metric_value(**skipped) == before + 1
    assert sent == []
    assert connector.attempts == []
    assert runner.stats.skipped == 1
    assert runner.stats.handled == 0


class _Fetched:
    """Decodes each message's bytes to its own record (a fetch of several tasks)."""

    def __init__(self, records: dict[bytes, r.Record]) -> None:
        self.records = records
        self.encoded: list[r.Record] = []

    async def decode_async(self, data: bytes | None) -> r.Record:
        assert data is not None
        return self.records[data]

    def encode(self, record: r.Record) -> bytes:
        self.encoded.append(record)
        return b"answer"


async def test_a_later_attempt_in_the_same_fetch_replaces_the_earlier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system catching up on its backlog reads both attempts of a task at once. The
    re-send carries privops' decision now (a legal hold placed since moved interactions
    from erase to keep: privops.core.retries); executing the first attempt, in order,
    erased what the hold keeps, and the re-send was answered from the ledger."""
    first = erase(1).model_copy(update={"categories": [Category.contact, Category.interactions]})
    held = r.Retention(category=Category.interactions, ground="legal hold H-9", until=None)
    second = erase(2).model_copy(update={"categories": [Category.contact], "keep": [held]})
    other = erase(1).model_copy(update={"task_id": "T-2"})
    fetched = _Fetched({b"1": first, b"2": second, b"3": other})
    seen: list[r.Erase] = []

    class _Recording(_Scripted):
        async def erase(self, task: r.Erase) -> Answer:
            seen.append(task)
            return await super().erase(task)

    runner = ConnectorRunner(_Recording(Answer.completed()), Settings(), retry=FAST)
    monkeypatch.setattr(runner, "serde", fetched)
    committed: list[int] = []
    sent: list[tuple[str, bytes]] = []

    async def send(key: str, value: bytes) -> None:
        sent.append((key, value))

    async def commit(offset: int) -> None:
        committed.append(offset)

    messages = [SimpleNamespace(value=str(n).encode(), offset=n) for n in (1, 2, 3)]
    await runner._handle(messages, Ledger(tmp_path / "l.db"), send, commit)
    assert [(t.task_id, t.attempt, t.categories) for t in seen] == [
        ("T-1", 2, [Category.contact]),
        ("T-2", 1, []),
    ]
    assert committed == [2, 3, 4]
    assert runner.stats.skipped == 1
    assert len(sent) == 2
