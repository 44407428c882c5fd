"""The runner: Kafka in, the connector called, the answer out, then the offset committed.

It connects as the system's principal ``system-<system>``, consumes
``privacy.tasks.<system>`` in the consumer group ``privops-connector-<system>`` (any other
group of its is named under that one: the broker lets it use no other), decodes the Avro
task, calls the connector, answers on ``privacy.task-results.<system>`` (keyed by subject
id) and only then commits, so a crash re-delivers rather than loses a task.

- A final answer is kept in the ledger by task id; a re-sent task (same task id, any
  attempt) is answered again from the ledger without calling the connector a second time.
  Read in one fetch with its own re-send, a task is skipped for the re-send, which says
  what privops decides now (a legal hold placed since keeps categories the first erased).
- ``TransientError`` means "try again": the runner retries in-process (:class:`TransientRetry`),
  then answers ``TaskFailed(retryable=True)``, which is not kept, so privops' re-send executes
  the task again. Any other exception answers ``TaskFailed(retryable=False)`` naming the
  exception type only (messages may hold personal data). So does an answer that cannot
  be sent as returned (no ``Answer``, a category outside the vocabulary, a count Avro
  cannot hold): it is checked to encode before the ledger keeps it.
- Undecodable task bytes are logged (offset only) and skipped with a metric; the privops
  worker owns the dead-letter topic. A registry that does not answer is waited for, until
  ``stop`` is set: the fetch is then left uncommitted, to be read again.
- Keys (docs/crypto-shredding.md): a task's personal fields (``identifiers{}``,
  ``previous_identifiers{}[]``, a Rectify's ``changes{}``) arrive encrypted under the
  subject's key; the runner opens them through its ``KeySource`` before the connector
  sees the task, and encrypts the personal fields of the answer (an export's location)
  under the same key. A task under a key an erasure destroyed (a stale re-send), or
  whose ciphertext does not authenticate, is skipped with a metric and committed, never
  executed; a key that cannot be had now (the key service unreachable or busy) is
  retried like a ``TransientError``, then answered ``TaskFailed(retryable=True)``, so
  privops re-sends the task. Why a key cannot be had (the status the key service
  answered, the principal it refused, a certificate not trusted) is logged once per
  cause, never in the answer.
- Legal holds (``privops.connectors.holds``): beside the tasks, the runner reads
  ``privacy.legal-holds.<system>`` whole, in no group, opens each record's identifiers
  with the same key source and tells the connector (``hold`` / ``release``).
  :attr:`ConnectorRunner.holds_ready` is set once it has read what the topic held at
  start: the system's deletion by age must wait for it. It is cleared while a record
  cannot be applied and once the run ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
)

from privops.adapters.acls import connector_group, system_principal
from privops.adapters.datamap_file import load_datamap
from privops.adapters.kafka import client_options, producer, stop_client, unreachable
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings
from privops.adapters.web_tls import certificate_refused
from privops.connectors.base import NO_ANSWER, Answer, Connector, TransientError
from privops.connectors.encryption import (
    KeySource,
    SameKey,
    WorkerKeySource,
    decrypt_record,
    encrypt_record,
    plaintext_fields,
    scope_of,
    sealed_key_ids,
    worker_keys,
)
from privops.connectors.holds import HoldReader, stopped
from privops.connectors.ledger import Ledger, UnreadableAnswer, ledger_path, outcome_of
from privops.connectors.metrics import (
    DUPLICATES,
    KEY_RETRIES,
    KEY_SKIP_REASONS,
    LEDGER_UNREADABLE,
    SKIPPED,
    TASK_SECONDS,
    TASKS,
    TRANSIENT_RETRIES,
)
from privops.core.datamap import DataMap
from privops.core.errors import (
    ConfigError,
    DecodeError,
    PrivopsError,
    RegistryError,
    RegistryUnreachable,
)
from privops.core.exports import description_problem, export_problem, portable_copy_problem
from privops.core.fieldcrypt import MAIN_SCOPE
from privops.core.records import (
    Erase,
    Export,
    Record,
    Task,
    TaskCompleted,
    TaskResult,
    TaskRetained,
)
from privops.core.topics import task_results_topic, tasks_topic
from privops.core.vocab import System, TaskAction, TaskOutcome

log = logging.getLogger(__name__)

SKIP_REASONS: tuple[str, ...] = (
    "undecodable",
    "unknown_schema",
    "not_a_task",
    "wrong_system",
    "superseded",
    *KEY_SKIP_REASONS,
)

AnswerHook = Callable[[Task, TaskResult | None, bool], None]
Send = Callable[[str, bytes], Awaitable[None]]
T = TypeVar("T")
R = TypeVar("R", bound=Record)

ANSWER_KINDS: frozenset[str] = frozenset({*TaskOutcome, NO_ANSWER})
TASK_TIMEOUT_SECONDS: Final = 240.0
"""How long one task's execution (every in-process retry included) may take: under
aiokafka's max.poll.interval (300 s), past which a task alone loses the partition."""
HOLDS_WAIT_SECONDS: Final = 20.0
"""How long erasures wait for the legal holds to be read before they are answered
retryable: one budget per time the holds are not read (at a start they are read within
seconds), not one per erasure."""
REGISTRY_RETRY_SECONDS: Final = 1.0
REGISTRY_RETRY_MAX_SECONDS: Final = 30.0
PERMANENT_OS_ERRORS: Final = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ssl.SSLCertVerificationError,
)
"""OSErrors a handler lets out that asking again does not mend: a connector error."""
MAX_ANSWER_BYTES: Final = 512 * 1024
"""Half the producer's default request limit (1 MiB): an answer carries a reason (cut to
500 characters), categories and an export's reference, never the data itself."""
# How ``encryption`` words the key service's answers: only the status is read from them;
# the rest (the worker's reason, a subject or key id) never reaches the log.
_REFUSED = re.compile(r"refused this caller \((\d{3})\b")
_ANSWERED = re.compile(r" answered (\d{3})$")


class KeysUnavailable(PrivopsError):
    """The subject's key could not be had, in-process retries included (the key service
    unreachable or busy, the KEK unable to unwrap it, the subject erased while an answer
    waited to be encrypted). Not the task's fault: answered ``TaskFailed(retryable=True)``."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"the subject's key is unavailable ({kind})")
        self.kind = kind


class _Moved(Exception):
    """A commit refused because the group rebalanced: the partition is another
    instance's now (several instances share the group, docs/connectors.md)."""

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.partition = partition


class _Stopping(Exception):
    """``stop`` was set while a fetch waited for the schema registry (or for the legal
    holds), or between two of its tasks: the rest of the fetch is left uncommitted (read
    again by the next run) rather than skipped."""


@dataclass(frozen=True)
class _Reply:
    """One delivery's answer as it goes out: the record (None: nothing is sent), its Avro
    bytes, encoded before the ledger keeps it, and its outcome label."""

    result: TaskResult | None
    payload: bytes | None
    outcome: str


class AnswerTooLarge(ValueError):
    """An answer that encodes past MAX_ANSWER_BYTES (answered as a bad answer instead)."""


class _Unsendable(Exception):
    """A connector's return that is no answer the runner can send, saying what it is by
    a type's name, never a value."""


def _checked(returned: object) -> Answer:
    if not isinstance(returned, Answer):
        raise _Unsendable(f"{type(returned).__name__}, not an Answer")
    if returned.kind not in ANSWER_KINDS:
        raise _Unsendable("unknown kind")
    return returned


@dataclass(frozen=True)
class TransientRetry:
    """How one delivery is retried in-process after ``TransientError``.

    Not the data map's ``RetryPolicy``: that one is privops re-sending a task whose answer
    did not come within the system's SLA (a new delivery, a higher attempt). This one
    lives inside a single delivery, in seconds, before the runner gives up and answers
    ``TaskFailed(retryable=True)``, which hands over to privops' re-send.
    ``retries`` more tries after the first, delays doubling from ``first_delay``.
    """

    retries: int = 3
    first_delay: float = 0.2
    multiplier: float = 2.0

    def delays(self) -> list[float]:
        return [self.first_delay * self.multiplier**i for i in range(self.retries)]


@dataclass
class RunnerStats:
    handled: int = 0
    duplicates: int = 0
    skipped: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)

    def answered(self, outcome: str, *, duplicate: bool) -> None:
        self.handled += 1
        self.duplicates += duplicate
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1


def group_of(system: System, group_id: str | None) -> str:
    """The consumer group for a run: the system's own, or ``group_id`` placed under it."""
    own = connector_group(system)
    if group_id is None or group_id == own or group_id.startswith(f"{own}-"):
        return group_id or own
    return f"{own}-{group_id}"


def check_kafka_security(settings: Settings) -> None:
    """No PLAINTEXT Kafka outside PRIVOPS_ENV=dev unless PRIVOPS_KAFKA_PLAINTEXT=allow, the
    worker's rule (``streams.startup.check_kafka_security``): on it no principal is
    proven, so no ACL holds, and any client on the network may read the system's tasks
    and answer for it. A ConfigError before anything is opened; a connector ran on it
    unsaid (review, session 44)."""
    if (
        settings.kafka_security_protocol == "PLAINTEXT"
        and settings.env != "dev"
        and settings.kafka_plaintext != "allow"
    ):
        raise ConfigError(
            f"PRIVOPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT outside PRIVOPS_ENV=dev "
            f"(PRIVOPS_ENV={settings.env}): Kafka proves no principal, so no ACL keeps "
            "this system to its own topics; use SASL_SSL (or SASL_PLAINTEXT where the "
            "network encrypts it), or set PRIVOPS_KAFKA_PLAINTEXT=allow where nothing "
            "else can reach the network"
        )


def _no_copy(task: Task, result: TaskResult | None) -> str | None:
    """Why ``result`` is no answer to an export ``task`` whatever its values say, or
    None: ``completed`` without an export, or ``retained`` to a portability export (no
    copy made). Read from the result's shape only, so a sealed one kept in the ledger is
    judged as it stands (``_replay``)."""
    if not isinstance(task, Export):
        return None
    if isinstance(result, TaskCompleted) and result.export is None:
        return "completed without an export"
    if isinstance(result, TaskRetained) and task.portability:
        return "retained to a portability export: no copy made"
    return None


class ConnectorRunner:
    """Consume a system's task topic, call the connector, answer, then commit.

    One task at a time (per-subject order is kept, task actions need no locking
    between them); the legal holds are read beside them, so ``hold``/``release``/
    ``holding`` may run while a task action does.
    ``start_from="latest"`` makes a brand-new consumer group skip older tasks (tests);
    ``group_id`` names another group than the system's own (a second run, a test): it is
    placed under ``privops-connector-<system>``, the only groups the system may use.
    :attr:`ready` is set once partitions are assigned and positioned;
    :attr:`holds_ready` once the legal holds on the system are read and applied (the
    system's deletion by age waits for it; cleared while a hold record cannot be).
    ``on_answer(task, result, duplicate)`` is called after each answer (result is None
    for ``Answer.no_answer()``), e.g. to print progress; ``task`` as the connector saw it.
    ``keys`` opens the tasks' personal fields and encrypts the answers'; by default
    privops' key service at ``worker_url`` (default: the worker settings name), with the
    KEK in ``settings.kek_file`` (``encryption.worker_keys``), made when :meth:`run` starts.
    ``task_timeout``: seconds one task's execution (its in-process retries included) may
    take before it is cancelled and answered retryable (None: no limit).
    """

    def __init__(
        self,
        connector: Connector,
        settings: Settings,
        *,
        group_id: str | None = None,
        ledger: Path | None = None,
        retry: TransientRetry | None = None,
        start_from: Literal["earliest", "latest"] = "earliest",
        on_answer: AnswerHook | None = None,
        clock: Callable[[], datetime] | None = None,
        keys: KeySource | None = None,
        worker_url: str | None = None,
        task_timeout: float | None = TASK_TIMEOUT_SECONDS,
        datamap: DataMap | None = None,
    ) -> None:
        self.connector = connector
        # An export is checked where the worker will check it, before it is kept: one
        # the worker refuses was kept in the ledger as done, counted completed here, and
        # replayed to every re-send (connector review, session 33). Only against the
        # deployment's data map (``datamap``, or PRIVOPS_DATAMAP said): the packaged one's
        # roots are the example company's, and would refuse every real export.
        explicit = "datamap" in settings.model_fields_set
        self.datamap = datamap or (load_datamap(settings.datamap) if explicit else None)
        self.task_timeout = task_timeout
        self.system = System(connector.system)
        self.settings = settings
        self.topic = tasks_topic(self.system)
        self.group_id = group_of(self.system, group_id)
        self.ledger_path = ledger or ledger_path(settings, self.system)
        self.retry = retry or TransientRetry()
        self.start_from = start_from
        self.on_answer = on_answer
        self.clock = clock or (lambda: datetime.now(UTC))
        self.serde = Serde.for_settings(settings)
        self.ready = asyncio.Event()
        self.stats = RunnerStats()
        for action in TaskAction:
            TASK_SECONDS.labels(self.system, action)
            for outcome in (*TaskOutcome, NO_ANSWER):
                TASKS.labels(self.system, action, outcome)
        DUPLICATES.labels(self.system)
        LEDGER_UNREADABLE.labels(self.system)
        KEY_RETRIES.labels(self.system)
        for reason in KEY_SKIP_REASONS:
            SKIPPED.labels(self.system, reason)
        self._keys = keys
        self._own_keys: WorkerKeySource | None = None
        self.worker_url = worker_url
        self._key_troubles: set[str] = set()
        self.holds = HoldReader(connector, self._decode_record, self._open_record)
        self.holds_ready = self.holds.ready
        self._stop: asyncio.Event | None = None
        """The current run's stop event (set by ``_handle``): waits inside a task hear it."""
        self._holds_wait_until: float | None = None
        """When erasures stop waiting for the holds to be read (``_wait_for_holds``)."""

    @property
    def keys(self) -> KeySource:
        """The key source given, or the worker's key service (made once, on first use)."""
        if self._keys is None:
            self._own_keys = worker_keys(
                self.settings,
                self.worker_url,
                principal=system_principal(self.system),
                say=log.info,
            )
            self._keys = self._own_keys
        return self._keys

    @property
    def key_principal(self) -> str:
        """Whom the runner's own key source asks as (``worker_keys``' rule)."""
        return self.settings.kafka_principal or system_principal(self.system)

    def _close_keys(self) -> None:
        if self._own_keys is not None:
            self._own_keys.close()
            self._keys = self._own_keys = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or the task is cancelled).

        Whatever was opened is closed however the run ends, a connector whose ``start``
        raises included (its database down at boot): a consumer left running would hold
        its partitions from the group until the process exits. ``close`` is called only
        after a ``start`` that returned. ``ConfigError`` at once on PLAINTEXT Kafka outside
        dev (``check_kafka_security``)."""
        stop = stop or asyncio.Event()
        # Before the registry is waited for: a refusal is said at once, not after it.
        check_kafka_security(self.settings)
        if not await self._schemas_registered(stop):
            return
        async with AsyncExitStack() as opened:
            _ = self.keys  # a KEK this environment refuses stops the run before any task
            opened.callback(self._close_keys)
            ledger = Ledger(self.ledger_path)
            opened.callback(ledger.close)
            client = client_options(self.settings, system_principal(self.system))
            consumer = AIOKafkaConsumer(
                self.topic,
                **client,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset=self.start_from,
                isolation_level="read_committed",
            )
            opened.push_async_callback(stop_client, consumer)
            try:
                await consumer.start()
            except (KafkaConnectionError, KafkaError, OSError) as exc:
                raise unreachable(client, exc) from exc
            await self.connector.start()
            opened.push_async_callback(self.connector.close)
            log.info("connector %s consuming %s as %s", self.system, self.topic, self.group_id)
            await self._consume_with_holds(consumer, client, ledger, stop)

    async def _schemas_registered(self, stop: asyncio.Event) -> bool:
        """The bundled schemas registered, asked again with backoff while the registry
        cannot be reached or fails (down, restarting, not reachable yet); False if
        ``stop`` came first. A refusal (credentials, an unregistered schema) is raised.
        A connector started before the registry ended at once, and one whose registry
        blinked at its restart stayed down unless something restarted it (connector
        review, session 33)."""
        delay = REGISTRY_RETRY_SECONDS
        while True:
            try:
                await asyncio.to_thread(self.serde.register_all)
                return True
            except RegistryUnreachable as exc:  # a refusal is raised: asking again won't mend it
                log.warning("%s; asking again in %.0f s", exc, delay)
            if await stopped(stop, delay):
                return False
            delay = min(delay * 2, REGISTRY_RETRY_MAX_SECONDS)

    async def _consume_with_holds(
        self,
        consumer: AIOKafkaConsumer,
        client: dict[str, Any],
        ledger: Ledger,
        stop: asyncio.Event,
    ) -> None:
        """The tasks, and beside them the legal holds, until ``stop``; an error of either
        stops both and is raised (a hold reader that died would leave the holds stale,
        and ``holds_ready`` is cleared as it ends). Stopped, the task in hand is finished
        and the rest of its fetch left uncommitted (``_handle``). An error cancels the
        other side at once, a task in the middle of its connector call included: its
        offset is not committed, so the next run has it delivered again, answered from
        the ledger if its answer was kept, done again (idempotent actions) if not."""
        holds = asyncio.create_task(self.holds.follow(client, stop), name=f"holds-{self.system}")
        tasks = asyncio.create_task(self._consume(consumer, client, ledger, stop))
        try:
            await asyncio.wait({holds, tasks}, return_when=asyncio.FIRST_COMPLETED)
            if holds.done() and not holds.cancelled() and holds.exception() is None:
                await asyncio.wait({tasks})  # ``stop`` was set: the tasks see it too
        finally:
            for job in (tasks, holds):
                job.cancel()
            await asyncio.gather(tasks, holds, return_exceptions=True)
        for job in (tasks, holds):
            if not job.cancelled() and (error := job.exception()) is not None:
                raise error

    async def _consume(
        self,
        consumer: AIOKafkaConsumer,
        client: dict[str, Any],
        ledger: Ledger,
        stop: asyncio.Event,
    ) -> None:
        async with producer(client) as prod:

            async def send(key: str, value: bytes) -> None:
                await prod.send_and_wait(
                    task_results_topic(self.system), key=key.encode(), value=value
                )

            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=300, max_records=50)
                if not self.ready.is_set():
                    await self._mark_ready(consumer)
                for tp, messages in batch.items():

                    async def commit(offset: int, tp: TopicPartition = tp) -> None:
                        try:
                            await consumer.commit({tp: offset})
                        except (CommitFailedError, IllegalStateError) as exc:
                            raise _Moved(tp.partition) from exc

                    try:
                        await self._handle(messages, ledger, send, commit, stop)
                    except _Stopping:
                        return
                    except _Moved as moved:
                        # The rest of this fetch is the new owner's now: it reads on from
                        # the last commit (the task just answered is answered again
                        # there, from the ledger when the instances share it).
                        log.info(
                            "partition %d went to another instance mid-fetch; "
                            "the rest of the fetch is left to it",
                            moved.partition,
                        )

    async def _mark_ready(self, consumer: AIOKafkaConsumer) -> None:
        assigned: set[TopicPartition] = consumer.assignment()
        if not assigned:
            return
        for tp in assigned:
            await consumer.position(tp)
        self.ready.set()

    async def _handle(
        self,
        messages: list[Any],
        ledger: Ledger,
        send: Send,
        commit: Callable[[int], Awaitable[None]],
        stop: asyncio.Event | None = None,
    ) -> None:
        """One fetch of one partition: each task done (or replayed) in order, but one a
        later attempt in the same fetch replaces (``_superseded``); each offset committed
        once its task is answered. ``_Stopping`` when ``stop`` is set while the fetch
        waits for the schema registry, or between two of its tasks: the rest is left
        uncommitted, read again at the next start. Worked through to its end, a fetch
        (up to 50 tasks, each up to ``task_timeout``) outlasted a supervisor's stop
        timeout, and the process was killed mid-task (review, session 44)."""
        self._stop = stop
        decoded = [(m, await self._decode(m.value, m.offset, stop)) for m in messages]
        later = await self._superseded(decoded)
        for msg, task in decoded:
            if stop is not None and stop.is_set():
                raise _Stopping
            if task is not None and msg.offset in later:
                self._skip(msg.offset, "superseded", task)
            elif task is not None:
                await self._process_task(task, msg.offset, ledger, send)
            await commit(msg.offset + 1)

    async def _superseded(self, decoded: list[tuple[Any, Task | None]]) -> set[int]:
        """Offsets of tasks a later attempt of the same task id in the same fetch replaces
        (one whose fields open: nothing unauthentic replaces a task). A re-send carries
        what privops decides now: a legal hold placed since the first attempt moved its
        categories from erase to keep (privops.core.retries). A system catching up on its
        backlog, reading both, executes only the re-send; attempts read apart are
        executed in order, as before (the later one from the ledger)."""
        last: dict[str, tuple[int, Task]] = {}
        for msg, task in decoded:
            if task is not None:
                seen = last.get(task.task_id)
                if seen is None or task.attempt > seen[1].attempt:
                    last[task.task_id] = (msg.offset, task)
        out: set[int] = set()
        for msg, task in decoded:
            if task is None or last[task.task_id][0] == msg.offset:
                continue
            try:
                await self._open(last[task.task_id][1])
            except (DecodeError, KeysUnavailable):
                continue  # not authentic, or cannot tell now: the earlier one goes as it came
            out.add(msg.offset)
        return out

    async def _process_task(self, task: Task, offset: int, ledger: Ledger, send: Send) -> None:
        """Do (or replay) one task and answer it keyed by its subject's id, so the answer
        reaches the partition, and the worker, that owns the request."""
        try:
            opened, reply, duplicate = await self._respond(task, ledger)
        except DecodeError as exc:  # under a destroyed key, or not authentic: never executed
            self._skip(offset, exc.reason, task)
            return
        if reply.payload is not None:
            await send(task.subject_id, reply.payload)
        TASKS.labels(self.system, str(task.action), reply.outcome).inc()
        self.stats.answered(reply.outcome, duplicate=duplicate)
        if self.on_answer is not None:
            self.on_answer(opened, reply.result, duplicate)

    async def _respond(self, task: Task, ledger: Ledger) -> tuple[Task, _Reply, bool]:
        """(the task as the connector sees it, the answer to send, whether it came from
        the ledger). ``DecodeError`` when the task's fields do not open."""
        stored = self._kept(task, ledger)
        opened = task
        try:
            opened, sealed_with = await self._open(task)
            if stored is None:
                reply = await self._answer(opened, sealed_with, ledger)
            else:
                reply = await self._replay(opened, sealed_with, stored, ledger)
        except KeysUnavailable as exc:
            log.warning(
                "task %s (%s) attempt %d: %s; answered retryable",
                task.task_id,
                task.action,
                task.attempt,
                exc,
            )
            answer = Answer.failed(str(exc), retryable=True)
            result = answer.result(task, self.clock())
            return opened, _Reply(result, self._encode(result), answer.label), False
        return opened, reply, stored is not None

    def _kept(self, task: Task, ledger: Ledger) -> TaskResult | None:
        """The ledger's answer to ``task``, or None; None too for a row that cannot be
        read (a record type or a model this runner does not know, JSON cut short), which
        is logged by task id and counted: the task is executed again (its action is
        idempotent, the contract says) and its new answer replaces the row. Raised, it
        ended ``run()`` with the offset uncommitted, and every restart read it again:
        the connector never ran again (review, session 44)."""
        try:
            return ledger.get(task.task_id)
        except UnreadableAnswer as exc:
            LEDGER_UNREADABLE.labels(self.system).inc()
            log.error(
                "task %s (%s): its kept answer cannot be read (%s); executed again if it opens",
                task.task_id,
                task.action,
                exc.kind,
            )
            return None

    async def _open(self, task: Task) -> tuple[Task, str | None]:
        """The task with its personal fields in plaintext, and the id of the key they were
        encrypted under (None for a task in plaintext, from an older worker)."""
        key_ids = sealed_key_ids(task)  # malformed, or another subject's: before any lookup
        if not key_ids:
            return task, None
        keys = self.keys
        opened = await self._with_keys(
            _about(task), lambda: decrypt_record(task, keys, legacy_plaintext=True)
        )
        # privops seals a task's fields under one key (its storage key of the moment);
        # were there two, the answer goes under the first.
        return opened, key_ids[0]

    async def _seal(
        self, task: Task, sealed_with: str | None, result: TaskResult | None
    ) -> TaskResult | None:
        """``result`` with its personal fields (an export's location) encrypted under the
        very key the task was sealed under (``main`` for a task in plaintext); as it is
        when it has none to encrypt (no key asked). That key is read, never asked for:
        after an erasure privops seals its tasks under the subject's storage scope (a
        retained category's key, perhaps not the system's own), and the key service
        makes no key for an erased subject (session 23: an access request after a
        partial erasure was never answered)."""
        if result is None or not plaintext_fields(result):
            return result
        keys: KeySource = self.keys if sealed_with is None else SameKey(self.keys, sealed_with)
        scope = MAIN_SCOPE if sealed_with is None else scope_of([sealed_with])
        return await self._with_keys(
            _about(task),
            lambda: encrypt_record(result, keys, subject_id=task.subject_id, scope=scope),
        )

    async def _decode_record(self, value: bytes | None) -> Record:
        """A record with the serde the tasks are read with (tests replace it)."""
        return await self.serde.decode_async(value)

    async def _open_record(self, record: R, about: str) -> R:
        """``record`` (a legal hold state) with its personal fields in plaintext, opened
        with the key source the tasks are: as it is when none is sealed. ``DecodeError``
        when they never will open, ``KeysUnavailable`` when the key cannot be had now."""
        if not sealed_key_ids(record):
            return record
        keys = self.keys
        return await self._with_keys(
            about, lambda: decrypt_record(record, keys, legacy_plaintext=True)
        )

    async def _with_keys(self, about: str, call: Callable[[], T]) -> T:
        """``call`` (blocking: it may ask the key service) off the loop, retried as a
        ``TransientError`` is when the key cannot be had; ``KeysUnavailable`` after the
        last try. ``DecodeError`` (a destroyed key, a ciphertext that does not
        authenticate) is the record's own and is raised at once. ``about`` names the
        record in the log (a task's id and action), never a value."""
        for delay in (*self.retry.delays(), None):
            try:
                done = await asyncio.to_thread(call)
            except DecodeError:
                raise
            # Whatever a key source raises (unreachable, 503, an erased subject, a KEK
            # that does not unwrap) must not lose the task: it is answered retryable.
            # Its message is never logged (it names key ids): key_trouble says why.
            except Exception as exc:
                self._key_trouble(exc)
                if delay is None:
                    raise KeysUnavailable(type(exc).__name__) from exc
                KEY_RETRIES.labels(self.system).inc()
                log.info("%s: key unavailable (%s); retrying", about, type(exc).__name__)
                await asyncio.sleep(delay)
            else:
                self._key_troubles.clear()  # fixed: the next trouble is news again
                return done
        raise AssertionError("unreachable: the last delay is None")

    def _key_trouble(self, exc: Exception) -> None:
        """Log why a key cannot be had once per cause, not per task and try: a refused
        password or an untrusted certificate stops every task alike, and is told once."""
        principal = None if self._own_keys is None else self.key_principal
        cause = key_trouble(exc, principal)
        if cause not in self._key_troubles:
            self._key_troubles.add(cause)
            log.warning("keys unavailable: %s; tasks needing one are answered retryable", cause)

    async def _replay(
        self, task: Task, sealed_with: str | None, stored: TaskResult, ledger: Ledger
    ) -> _Reply:
        """The ledger's answer again, as an answer to this delivery (encrypted if it was
        kept in plaintext, by a runner from before encryption).

        Sealed under another key than this delivery's task (an erasure since destroyed
        the first, and privops re-sends under the subject's storage scope): opened and
        sealed again under the task's; one whose key is gone is executed again, or every
        re-send would answer what privops can no longer open. One that does not encode
        (kept by a runner that did not check) is replaced by the bad answer's failure,
        or it would be replayed, and fail, at every re-send."""
        outcome = str(outcome_of(stored))
        DUPLICATES.labels(self.system).inc()
        log.info("task %s (%s) already answered: re-sending %s", task.task_id, task.action, outcome)
        result = stored.model_copy(update={"attempt": task.attempt, "answered_at": self.clock()})
        subject = task.subject_id
        if sealed_with is not None and sealed_key_ids(result, subject_id=subject) not in (
            [],
            [sealed_with],
        ):
            keys = self.keys
            try:
                result = await self._with_keys(
                    _about(task), lambda: decrypt_record(result, keys, subject_id=subject)
                )
            except DecodeError:
                log.info("task %s: its kept answer's key is gone; executing it again", task.task_id)
                return await self._answer(task, sealed_with, ledger)
        if (missing := _no_copy(task, result)) is not None:
            # Kept by a runner before 0.44, which counted it done: the worker fails it,
            # so it is replaced by the bad answer's failure (review, session 44).
            failed, failure = self._bad_answer(task, missing)
            ledger.put(task, failed.label, failure)
            return _Reply(failure, self._encode(failure), failed.label)
        sealed = await self._seal(task, sealed_with, result)
        try:
            return _Reply(sealed, self._encode(sealed), outcome)
        except RegistryError:
            raise
        except Exception as exc:  # noqa: BLE001  (the value is the ledger's, not the task's)
            failed, failure = self._bad_answer(task, type(exc).__name__)
            ledger.put(task, failed.label, failure)
            return _Reply(failure, self._encode(failure), failed.label)

    async def _answer(self, task: Task, sealed_with: str | None, ledger: Ledger) -> _Reply:
        """Execute the task; encrypt the answer and encode it, keep it first if it is
        final (then publish, then commit). Kept encrypted: the ledger forgets with the
        key; kept only once it encodes: a kept answer is replayed to every re-send."""
        started = time.monotonic()
        returned: object = await self._held_back(task) or await self._execute(task)
        TASK_SECONDS.labels(self.system, str(task.action)).observe(time.monotonic() - started)
        answer, reply = await self._ready(task, sealed_with, returned)
        if reply.result is not None and answer.final:
            ledger.put(task, answer.label, reply.result)
        log.info(
            "task %s (%s) attempt %d: %s", task.task_id, task.action, task.attempt, answer.label
        )
        return reply

    async def _held_back(self, task: Task) -> Answer | None:
        """A retryable failure instead of executing an erasure that a legal hold read
        here keeps part of (``HoldReader.blocks``: privops re-sends it with the held
        categories kept), or one that comes while the holds are not read (at start, or
        not confirmed lately) and stay unread through ``_wait_for_holds``: what an erasure
        deletes does not come back. Waited for, not answered at once, since each
        retryable answer spends one of privops' attempts. None when it may go ahead."""
        if not isinstance(task, Erase):
            return None
        if self.holds.ready.is_set():
            self._holds_wait_until = None  # read: the next time they are not, a new budget
        else:
            await self._wait_for_holds()
        if not self.holds.ready.is_set():
            why = "the legal holds at this system are not read yet"
        elif blocked := self.holds.blocks(task):
            why = (
                f"a legal hold keeps {', '.join(sorted(blocked))} here; "
                "privops re-sends this task keeping it"
            )
        else:
            return None
        log.warning("task %s (erase) attempt %d: not executed: %s", task.task_id, task.attempt, why)
        return Answer.failed(why, retryable=True)

    async def _wait_for_holds(self) -> None:
        """Wait for the legal holds to be read: one budget of HOLDS_WAIT_SECONDS for the
        whole time they are not (the erasures after it are answered at once, or a fetch
        of them would wait its length over and lose the partition), and never past
        ``stop`` (``_Stopping``: the fetch stays uncommitted, read again at the next
        start). Per erasure, a stop waited a minute for each one left in the fetch."""
        now = time.monotonic()
        if self._holds_wait_until is None:
            self._holds_wait_until = now + HOLDS_WAIT_SECONDS
        left = self._holds_wait_until - now
        events = [self.holds.ready] + ([self._stop] if self._stop is not None else [])
        if left > 0:
            waits = [asyncio.ensure_future(e.wait()) for e in events]
            try:
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        if self.holds.ready.is_set():
            self._holds_wait_until = None  # read: the next time they are not, a new budget
        elif self._stop is not None and self._stop.is_set():
            raise _Stopping

    async def _ready(
        self, task: Task, sealed_with: str | None, returned: object
    ) -> tuple[Answer, _Reply]:
        """What the connector returned, as it goes out: its record, sealed and encoded.
        One that cannot be (no ``Answer``: a forgotten ``return``; a category outside the
        vocabulary; a count that is no int, or too large for Avro's long) is answered as
        ``_bad_answer`` says: raised, it would leave the offset uncommitted, the task
        executed again at every restart and never answered."""
        try:
            answer = _checked(returned)
            result = answer.result(task, self.clock())
            if (problem := self._export_refused(task, result)) is not None:
                answer, result = self._bad_answer(task, problem)
        except _Unsendable as exc:
            answer, result = self._bad_answer(task, str(exc))
        # The contract's boundary again: whatever the connector's values make pydantic
        # raise becomes the answer.
        except Exception as exc:  # noqa: BLE001
            answer, result = self._bad_answer(task, type(exc).__name__)
        sealed = await self._seal(task, sealed_with, result)
        try:
            return answer, _Reply(sealed, self._encode(sealed), answer.label)
        except RegistryError:
            raise  # the registry's trouble, not the answer's
        except Exception as exc:  # noqa: BLE001  (fastavro's errors, e.g. OverflowError)
            answer, failure = self._bad_answer(task, type(exc).__name__)
            return answer, _Reply(failure, self._encode(failure), answer.label)

    def _export_refused(self, task: Task, result: TaskResult | None) -> str | None:
        """Why the worker would refuse ``result``'s export, or None; never the location
        (privops.core.exports): below the system's ``export_root`` and naming the request
        (checked against the deployment's data map only), and for a portability task in a
        machine-readable format, of the task's categories only. An Export answered
        ``completed`` with no export, or a portability Export answered ``retained`` (no
        copy made), is no answer to it either: the worker records both failed, while
        the runner counted them done and replayed them to every re-send (review,
        session 44)."""
        if (missing := _no_copy(task, result)) is not None:
            return missing
        if not isinstance(result, TaskCompleted) or not result.export:
            return None
        if problem := description_problem(result.export):
            return f"export_not_described: {problem}"
        if self.datamap is not None and (
            problem := export_problem(self.datamap, self.system, result.export, task.request_id)
        ):
            return f"export_outside_root: {problem}"
        if isinstance(task, Export) and task.portability:
            return portable_copy_problem(task.categories, result.export)
        return None

    def _bad_answer(self, task: Task, why: str) -> tuple[Answer, TaskResult]:
        """A final failure saying ``why`` by a type's name only: a pydantic error quotes
        the value it refused, which can be the subject's phone number."""
        log.error(
            "task %s (%s): the connector's answer cannot be sent (%s); answered failed",
            task.task_id,
            task.action,
            why,
        )
        answer = Answer.failed(f"connector error: bad answer ({why})", retryable=False)
        result = answer.result(task, self.clock())
        assert result is not None  # a failure always has its record
        return answer, result

    def _encode(self, result: TaskResult | None) -> bytes | None:
        """The Avro bytes ``send`` publishes; with the serde that sends them, so what
        encodes here is what goes out. ``AnswerTooLarge`` past MAX_ANSWER_BYTES: the
        broker would refuse it, and kept in the ledger it was replayed, and refused, at
        every restart (connector review, session 33)."""
        if result is None:
            return None
        encoded = self.serde.encode(result)
        if len(encoded) > MAX_ANSWER_BYTES:
            raise AnswerTooLarge(f"{len(encoded)} bytes")
        return encoded

    async def _decode(
        self, value: bytes | None, offset: int, stop: asyncio.Event | None = None
    ) -> Task | None:
        while True:
            try:
                record = await self.serde.decode_async(value)
                break
            except DecodeError as exc:
                self._skip(offset, exc.reason)
                return None
            except RegistryError:
                log.warning("schema registry unavailable decoding offset %d; retrying", offset)
                if await stopped(stop, 1.0):
                    raise _Stopping from None
        if not isinstance(record, Task):
            self._skip(offset, "not_a_task")
            return None
        if record.system != self.system:
            self._skip(offset, "wrong_system")
            return None
        return record

    def _skip(self, offset: int, reason: str, task: Task | None = None) -> None:
        label = reason if reason in SKIP_REASONS else "undecodable"
        SKIPPED.labels(self.system, label).inc()
        self.stats.skipped += 1
        what = "" if task is None else f" task {task.task_id} ({task.action})"
        log.warning("%s: skipped offset %d%s (%s)", self.topic, offset, what, label)

    async def _execute(self, task: Task) -> Answer:
        """The connector's answer, its in-process retries included, within
        ``task_timeout``: a task that runs past it is cancelled and answered retryable,
        whatever the connector made of the cancellation. One that hung held every task
        behind it, unanswered and uncommitted, with nothing to show it (connector review,
        session 33). A handler running in a thread of its own is not stopped by it."""
        limit = asyncio.timeout(self.task_timeout)
        try:
            async with limit:
                answer = await self._tries(task, limit.expired)
        except TimeoutError:
            if not limit.expired():
                raise
        if limit.expired():
            log.error(
                "task %s (%s) took over %g s: cancelled, answered retryable",
                task.task_id,
                task.action,
                self.task_timeout,
            )
            return Answer.failed(f"timed out after {self.task_timeout:g} s", retryable=True)
        return answer

    def _connector_error(self, task: Task, exc: BaseException) -> Answer:
        log.error("task %s (%s) raised %s", task.task_id, task.action, type(exc).__name__)
        return Answer.failed(f"connector error: {type(exc).__name__}", retryable=False)

    async def _tries(self, task: Task, expired: Callable[[], bool]) -> Answer:
        """The connector's answer, a transient error tried again after each delay of
        ``self.retry``; no try after ``expired`` (a connector that swallowed the
        timeout's cancellation would otherwise be called again, uncancelled)."""
        for delay in (*self.retry.delays(), None):
            try:
                return await self.connector.handle(task)
            # A dependency that cannot be reached now (a refused connection, a timeout, no
            # route, a DNS failure) is as passing as a TransientError: answered final, it
            # was replayed from the ledger to every re-send once the database was back
            # (connector review, session 33). An OSError that asking again cannot mend
            # (a missing file, a permission, an untrusted certificate) is not.
            except (TransientError, OSError) as exc:
                if isinstance(exc, PERMANENT_OS_ERRORS):
                    return self._connector_error(task, exc)
                if delay is None or expired():
                    return Answer.failed("transient error, retries exhausted", retryable=True)
                TRANSIENT_RETRIES.labels(self.system, str(task.action)).inc()
                await asyncio.sleep(delay)
            # The contract's boundary: whatever a connector raises (a bug, a refusal) must
            # become an answer, or the task would stall uncommitted. The type only is kept:
            # exception messages can carry the subject's data.
            except Exception as exc:  # noqa: BLE001
                return self._connector_error(task, exc)
        raise AssertionError("unreachable: the last delay is None")


def key_trouble(exc: BaseException, principal: str | None = None) -> str:
    """Why a key could not be had, fit for the log: a certificate not trusted, the status
    the key service answered (with ``principal``, whom it refused), else the error's type
    and its cause's; never a message, which can name a subject or a key id."""
    if untrusted := certificate_refused(exc):
        return (
            f"the key service's certificate is not trusted ({untrusted}): "
            "is PRIVOPS_WEB_CA the CA that signed it?"
        )
    if isinstance(exc, PrivopsError) and (refused := _REFUSED.search(str(exc))):
        who = "this caller" if principal is None else f"principal {principal}"
        return (
            f"the key service refused {who} ({refused[1]}): check the principal "
            "and its password (PRIVOPS_KAFKA_PRINCIPAL, PRIVOPS_KAFKA_PASSWORD)"
        )
    kind = type(exc).__name__
    if isinstance(exc, PrivopsError) and (status := _ANSWERED.search(str(exc))):
        return f"the key service answered {status[1]} ({kind})"
    cause = exc.__cause__
    return kind if cause is None else f"{kind} ({type(cause).__name__})"


def _about(task: Task) -> str:
    """A task as the log names it: its id and action (no subject, no value)."""
    return f"task {task.task_id} ({task.action})"
