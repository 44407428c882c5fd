"""The connector SDK: what a business system implements to take privops' tasks and answer.

A team writes one small :class:`Connector` subclass (erase / restrict / lift_restriction /
rectify / export for an identifier set) and runs it with :class:`ConnectorRunner`, which
does the Kafka plumbing: it consumes ``privacy.tasks.<system>`` in the consumer group
``privops-connector-<system>``, decodes the Avro task, calls the connector, answers on
``privacy.task-results`` (keyed by request id) and only then commits the offset.

Contract (docs/connectors.md):
- At-least-once in, exactly-once in effect: a final answer is kept in a small SQLite
  ledger by task id, and a re-sent task (same task id, any attempt) is answered again from
  the ledger without calling the connector a second time.
- ``TransientError`` means "try again": the runner retries in-process with backoff, then
  answers ``TaskFailed(retryable=True)``, which is not kept in the ledger, so privops'
  re-send executes the task again. Any other exception is a bug or a permanent refusal:
  ``TaskFailed(retryable=False)`` naming the exception type only (messages may hold PII).
- Undecodable task bytes are logged (offset only) and skipped with a metric; the privops
  worker owns the dead-letter topic.

Metrics live on this module's own :data:`REGISTRY` (never the worker's), labels bounded
to the vocabulary: ``privops_connector_tasks_total{system,action,outcome}``,
``privops_connector_task_seconds{system,action}``,
``privops_connector_duplicates_total{system}``,
``privops_connector_skipped_total{system,reason}``,
``privops_connector_transient_retries_total{system,action}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Final, Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from privops.adapters.kafka import producer, unreachable
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings
from privops.core.errors import DecodeError, PrivopsError, RegistryError
from privops.core.records import (
    Erase,
    Export,
    ExportReference,
    LiftRestriction,
    NotFound,
    Rectify,
    Restrict,
    Task,
    TaskCompleted,
    TaskFailed,
    TaskResult,
    TaskRetained,
)
from privops.core.topics import TASK_RESULTS, tasks_topic
from privops.core.vocab import Category, System, TaskAction, TaskOutcome

log = logging.getLogger(__name__)

NO_ANSWER: Final = "no_answer"
SKIP_REASONS: tuple[str, ...] = ("undecodable", "unknown_schema", "not_a_task", "wrong_system")

# --------------------------------------------------------------------------------- metrics

REGISTRY = CollectorRegistry()
TASKS = Counter(
    "privops_connector_tasks_total",
    "Tasks a connector handled, by outcome (duplicates included, answered from the ledger).",
    ["system", "action", "outcome"],
    registry=REGISTRY,
)
TASK_SECONDS = Histogram(
    "privops_connector_task_seconds",
    "Time a connector spent executing one task delivery, in-process retries included.",
    ["system", "action"],
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DUPLICATES = Counter(
    "privops_connector_duplicates_total",
    "Re-sent or redelivered tasks answered from the ledger without executing again.",
    ["system"],
    registry=REGISTRY,
)
SKIPPED = Counter(
    "privops_connector_skipped_total",
    "Messages on a task topic that were not a usable task for this connector.",
    ["system", "reason"],
    registry=REGISTRY,
)
TRANSIENT_RETRIES = Counter(
    "privops_connector_transient_retries_total",
    "In-process retries after a connector raised TransientError.",
    ["system", "action"],
    registry=REGISTRY,
)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Serve the connector metrics (``/metrics``) on a background thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)


# ------------------------------------------------------------------------- the contract


class TransientError(PrivopsError):
    """Raised by a connector when the task may succeed if tried again (system busy, lock)."""


@dataclass(frozen=True)
class Outcome:
    """A connector's answer to one task; turned into the result record by the runner.

    ``reason`` travels to privops and its audit: never put names, emails or phones in it.
    """

    kind: TaskOutcome | Literal["no_answer"]
    records_affected: int = 0
    export: ExportReference | None = None
    reason: str = ""
    categories: tuple[Category, ...] = ()
    retryable: bool = True

    @classmethod
    def completed(cls, records_affected: int = 0, export: ExportReference | None = None) -> Outcome:
        """Done: everything asked was done (``export`` for an Export task)."""
        return cls(TaskOutcome.completed, records_affected=records_affected, export=export)

    @classmethod
    def retained(cls, reason: str, categories: Sequence[Category]) -> Outcome:
        """Done, but some data was kept on purpose (e.g. invoices for 6 years), and why."""
        return cls(TaskOutcome.retained, reason=reason, categories=tuple(categories))

    @classmethod
    def not_found(cls) -> Outcome:
        """The identifiers match nothing in this system."""
        return cls(TaskOutcome.not_found)

    @classmethod
    def failed(cls, reason: str, retryable: bool = True) -> Outcome:
        """Could not do it. ``retryable=True`` invites privops to re-send the task later."""
        return cls(TaskOutcome.failed, reason=reason, retryable=retryable)

    @classmethod
    def no_answer(cls) -> Outcome:
        """Send nothing (work continues elsewhere, or a test's silent system).

        privops re-sends after the system's SLA and escalates after its retries.
        """
        return cls(NO_ANSWER)

    @property
    def final(self) -> bool:
        """Whether a re-send must get this same answer (kept in the ledger)."""
        if self.kind == NO_ANSWER:
            return False
        return not (self.kind == TaskOutcome.failed and self.retryable)

    @property
    def label(self) -> str:
        return str(self.kind)

    def result(self, task: Task, answered_at: datetime) -> TaskResult | None:
        common = {
            "task_id": task.task_id,
            "request_id": task.request_id,
            "system": task.system,
            "answered_at": answered_at,
            "attempt": task.attempt,
        }
        match self.kind:
            case TaskOutcome.completed:
                return TaskCompleted(
                    **common, records_affected=self.records_affected, export=self.export
                )
            case TaskOutcome.retained:
                return TaskRetained(**common, reason=self.reason, categories=list(self.categories))
            case TaskOutcome.not_found:
                return NotFound(**common)
            case TaskOutcome.failed:
                return TaskFailed(**common, reason=self.reason, retryable=self.retryable)
        return None


class Connector:
    """Subclass, set ``system`` and implement the actions your system supports.

    Every method gets the decoded task (``task.identifiers`` is what this system knows the
    subject by; ``task.categories`` what to act on; ``task.keep`` what to keep and why)
    and returns an :class:`Outcome`. Methods must be idempotent in effect: a crash between
    doing the work and recording the answer re-runs the task once.
    An action you do not implement answers ``TaskFailed(retryable=False)``.
    """

    system: ClassVar[System]

    async def erase(self, task: Erase) -> Outcome:
        return _unsupported(task)

    async def restrict(self, task: Restrict) -> Outcome:
        return _unsupported(task)

    async def lift_restriction(self, task: LiftRestriction) -> Outcome:
        return _unsupported(task)

    async def rectify(self, task: Rectify) -> Outcome:
        return _unsupported(task)

    async def export(self, task: Export) -> Outcome:
        return _unsupported(task)

    async def start(self) -> None:
        """Open connections; called once before the first task."""

    async def close(self) -> None:
        """Release resources; called once when the runner stops."""

    async def handle(self, task: Task) -> Outcome:
        """Dispatch by record type (the runner calls this)."""
        if isinstance(task, Erase):
            return await self.erase(task)
        if isinstance(task, Restrict):
            return await self.restrict(task)
        if isinstance(task, LiftRestriction):
            return await self.lift_restriction(task)
        if isinstance(task, Rectify):
            return await self.rectify(task)
        if isinstance(task, Export):
            return await self.export(task)
        return _unsupported(task)


def _unsupported(task: Task) -> Outcome:
    return Outcome.failed(f"{task.action} is not supported by this connector", retryable=False)


@dataclass(frozen=True)
class RetryPolicy:
    """In-process retries after TransientError: ``retries`` more tries, delays doubling."""

    retries: int = 3
    first_delay: float = 0.2
    multiplier: float = 2.0

    def delays(self) -> list[float]:
        return [self.first_delay * self.multiplier**i for i in range(self.retries)]


# ------------------------------------------------------------------------------ ledger


class Ledger:
    """Final answers by task id (SQLite). Quick local calls, made inline on the loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers ("
            " task_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, action TEXT NOT NULL,"
            " outcome TEXT NOT NULL, record_type TEXT NOT NULL, record TEXT NOT NULL,"
            " first_attempt INTEGER NOT NULL, answered_at TEXT NOT NULL)"
        )

    def get(self, task_id: str) -> TaskResult | None:
        row = self._db.execute(
            "SELECT record_type, record FROM answers WHERE task_id = ?", (task_id,)
        ).fetchone()
        if row is None:
            return None
        model = _RESULT_TYPES[row[0]]
        return model.model_validate(json.loads(row[1]))

    def put(self, task: Task, outcome: str, result: TaskResult) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task.task_id,
                task.request_id,
                str(task.action),
                outcome,
                type(result).__name__,
                result.model_dump_json(),
                task.attempt,
                result.answered_at.isoformat(),
            ),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()


_RESULT_TYPES: dict[str, type[TaskResult]] = {
    t.__name__: t for t in (TaskCompleted, TaskFailed, TaskRetained, NotFound)
}

_OUTCOME_OF: dict[type[TaskResult], TaskOutcome] = {
    TaskCompleted: TaskOutcome.completed,
    TaskFailed: TaskOutcome.failed,
    TaskRetained: TaskOutcome.retained,
    NotFound: TaskOutcome.not_found,
}


def ledger_path(settings: Settings, system: System) -> Path:
    return settings.home / "connectors" / f"{system}-ledger.db"


# ------------------------------------------------------------------------------ runner

AnswerHook = Callable[[Task, TaskResult | None, bool], None]


@dataclass
class RunnerStats:
    handled: int = 0
    duplicates: int = 0
    skipped: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


class ConnectorRunner:
    """Consume a system's task topic, call the connector, answer, then commit.

    One task at a time (per-subject order is kept, handlers need no locking).
    ``start_from="latest"`` makes a brand-new consumer group skip older tasks (tests);
    :attr:`ready` is set once partitions are assigned and positioned.
    ``on_answer(task, result, duplicate)`` is called after each answer (result is None
    for ``Outcome.no_answer()``), e.g. to print progress.
    """

    def __init__(
        self,
        connector: Connector,
        settings: Settings,
        *,
        group_id: str | None = None,
        ledger: Path | None = None,
        retry: RetryPolicy | None = None,
        start_from: Literal["earliest", "latest"] = "earliest",
        on_answer: AnswerHook | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.connector = connector
        self.system = System(connector.system)
        self.settings = settings
        self.topic = tasks_topic(self.system)
        self.group_id = group_id or f"privops-connector-{self.system}"
        self.ledger_path = ledger or ledger_path(settings, self.system)
        self.retry = retry or RetryPolicy()
        self.start_from = start_from
        self.on_answer = on_answer
        self.clock = clock or (lambda: datetime.now(UTC))
        self.serde = Serde(settings.registry_url, settings.schema_dir)
        self.ready = asyncio.Event()
        self.stats = RunnerStats()
        for action in TaskAction:
            TASK_SECONDS.labels(self.system, action)
            for outcome in (*TaskOutcome, NO_ANSWER):
                TASKS.labels(self.system, action, outcome)
        DUPLICATES.labels(self.system)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        await asyncio.to_thread(self.serde.register_all)
        ledger = Ledger(self.ledger_path)
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.start_from,
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            await consumer.stop()
            ledger.close()
            raise unreachable(self.settings.kafka_bootstrap, exc) from exc
        await self.connector.start()
        log.info("connector %s consuming %s as %s", self.system, self.topic, self.group_id)
        try:
            async with producer(self.settings.kafka_bootstrap) as prod:

                async def send(key: str, value: bytes) -> None:
                    await prod.send_and_wait(TASK_RESULTS, key=key.encode(), value=value)

                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=300, max_records=50)
                    if not self.ready.is_set():
                        await self._mark_ready(consumer)
                    for tp, messages in batch.items():
                        for msg in messages:
                            await self._process(msg.value, msg.offset, ledger, send)
                            await consumer.commit({tp: msg.offset + 1})
        finally:
            await self.connector.close()
            await consumer.stop()
            ledger.close()

    async def _mark_ready(self, consumer: AIOKafkaConsumer) -> None:
        assigned: set[TopicPartition] = consumer.assignment()
        if not assigned:
            return
        for tp in assigned:
            await consumer.position(tp)
        self.ready.set()

    async def _process(
        self,
        value: bytes | None,
        offset: int,
        ledger: Ledger,
        send: Callable[[str, bytes], Awaitable[None]],
    ) -> None:
        task = await self._decode(value, offset)
        if task is None:
            return
        action = str(task.action)
        stored = ledger.get(task.task_id)
        if stored is not None:
            result: TaskResult | None = stored.model_copy(
                update={"attempt": task.attempt, "answered_at": self.clock()}
            )
            outcome = str(_OUTCOME_OF[type(stored)])
            duplicate = True
            DUPLICATES.labels(self.system).inc()
            self.stats.duplicates += 1
            log.info("task %s (%s) already answered: re-sending %s", task.task_id, action, outcome)
        else:
            duplicate = False
            started = time.monotonic()
            answer = await self._execute(task)
            TASK_SECONDS.labels(self.system, action).observe(time.monotonic() - started)
            outcome = answer.label
            result = answer.result(task, self.clock())
            if result is not None and answer.final:
                ledger.put(task, outcome, result)
            log.info("task %s (%s) attempt %d: %s", task.task_id, action, task.attempt, outcome)
        if result is not None:
            await send(task.request_id, self.serde.encode(result))
        TASKS.labels(self.system, action, outcome).inc()
        self.stats.handled += 1
        self.stats.by_outcome[outcome] = self.stats.by_outcome.get(outcome, 0) + 1
        if self.on_answer is not None:
            self.on_answer(task, result, duplicate)

    async def _decode(self, value: bytes | None, offset: int) -> Task | None:
        while True:
            try:
                record = await self.serde.decode_async(value)
                break
            except DecodeError as exc:
                self._skip(offset, exc.reason)
                return None
            except RegistryError:
                log.warning("schema registry unavailable decoding offset %d; retrying", offset)
                await asyncio.sleep(1.0)
        if not isinstance(record, Task):
            self._skip(offset, "not_a_task")
            return None
        if record.system != self.system:
            self._skip(offset, "wrong_system")
            return None
        return record

    def _skip(self, offset: int, reason: str) -> None:
        label = reason if reason in SKIP_REASONS else "undecodable"
        SKIPPED.labels(self.system, label).inc()
        self.stats.skipped += 1
        log.warning("%s: skipped offset %d (%s)", self.topic, offset, label)

    async def _execute(self, task: Task) -> Outcome:
        delays = self.retry.delays()
        for tries in range(len(delays) + 1):
            try:
                return await self.connector.handle(task)
            except TransientError:
                if tries == len(delays):
                    return Outcome.failed("transient error, retries exhausted", retryable=True)
                TRANSIENT_RETRIES.labels(self.system, str(task.action)).inc()
                await asyncio.sleep(delays[tries])
            except Exception as exc:
                # The type only: exception messages can carry the subject's data.
                log.error("task %s (%s) raised %s", task.task_id, task.action, type(exc).__name__)
                return Outcome.failed(f"connector error: {type(exc).__name__}", retryable=False)
        raise AssertionError("unreachable")


def metric_value(name: str, **labels: str) -> float:
    """A sample of the connector registry (0 when absent): for tests and progress output."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


__all__ = [
    "REGISTRY",
    "Connector",
    "ConnectorRunner",
    "Ledger",
    "Outcome",
    "RetryPolicy",
    "TransientError",
    "ledger_path",
    "metric_value",
    "serve_metrics",
]
