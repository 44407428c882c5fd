"""Small aiokafka helpers shared by the CLI, the connector SDK and the tests.

Not the worker's wiring (that is ``streams``): these are plain clients for tools that
publish commands, create topics or read a topic from the beginning.

Every client connects as a principal (DESIGN.md section 8): :func:`client_options` gives
the aiokafka keyword arguments for one, and every helper here takes them. A helper given
a bare bootstrap address instead connects as this process's own principal
(``PRIVOPS_KAFKA_PRINCIPAL``, else the worker's).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    IllegalSaslStateError,
    InvalidReplicationFactorError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    StaleMetadata,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from aiokafka.helpers import create_ssl_context

from privops.adapters import credentials
from privops.adapters.acls import WORKER
from privops.adapters.cluster import min_insync_for
from privops.adapters.settings import Settings, get_settings
from privops.core.errors import ConfigError, PrivopsError, RuntimeUnavailable
from privops.core.topics import TopicSpec

Client = str | Mapping[str, Any]
"""aiokafka keyword arguments from :func:`client_options`, or a bare bootstrap address."""

log = logging.getLogger(__name__)


def client_options(
    settings: Settings, principal: str | None = None, *, default: str = WORKER
) -> dict[str, Any]:
    """aiokafka keyword arguments to connect as ``principal`` (else PRIVOPS_KAFKA_PRINCIPAL,
    else ``default``): bootstrap servers, security protocol, SASL mechanism, user, password."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap}
    if settings.kafka_security_protocol == "PLAINTEXT":
        return options
    who = principal or settings.kafka_principal or default
    options |= sasl_options(settings, who, password_of(settings, who))
    if (tls := ssl_context(settings)) is not None:
        options["ssl_context"] = tls
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SASL_SSL (trusting ``kafka_ssl_cafile`` if set), else None."""
    if settings.kafka_security_protocol != "SASL_SSL":
        return None
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context: ssl.SSLContext = create_ssl_context(cafile=cafile)
    return context


def sasl_options(settings: Settings, username: str, password: str) -> dict[str, Any]:
    return {
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }


def password_of(settings: Settings, principal: str) -> str:
    """PRIVOPS_KAFKA_PASSWORD for PRIVOPS_KAFKA_PRINCIPAL; in dev, the local runtime's
    credentials file for any principal; nothing else, anywhere else."""
    if settings.kafka_password is not None and principal == settings.kafka_principal:
        return settings.kafka_password.get_secret_value()
    if settings.env != "dev":
        raise ConfigError(
            f"no password for Kafka principal {principal!r}: set PRIVOPS_KAFKA_PRINCIPAL="
            f"{principal} and PRIVOPS_KAFKA_PASSWORD (outside PRIVOPS_ENV=dev the local "
            "runtime's credentials are never used)"
        )
    path = settings.kafka_credentials_file
    if not path.exists():  # no local runtime was ever started under this home
        raise RuntimeUnavailable(
            f"no credentials to connect to the Kafka broker at {settings.kafka_bootstrap} as "
            f"{principal!r} ({path} does not exist): start the local runtime with "
            "`privops local up`, or set PRIVOPS_KAFKA_PRINCIPAL and PRIVOPS_KAFKA_PASSWORD"
        )
    return credentials.password(path, principal)


def resolve(client: Client, *, default: str = WORKER) -> dict[str, Any]:
    """Options for a client: as given, or at a bare address as this process's principal
    (PRIVOPS_KAFKA_PRINCIPAL, else ``default``)."""
    if isinstance(client, str):
        return client_options(get_settings(), default=default) | {"bootstrap_servers": client}
    return dict(client)


CONNECT_SECONDS = 15.0
"""How long a client's start (the connection and the cluster's metadata) may take with
one broker listed: a broker that accepts connections and never answers (a firewall, a
wrong port that is some other server's) held a command for aiokafka's 40 s request
timeout, whatever its ``--wait`` said (review, session 35). A broker that answers takes
well under a second."""
BOOTSTRAP_HOST_SECONDS = 40.0
"""aiokafka's default request timeout, which its bootstrap waits on each listed broker in
turn: with several listed, one that never answers must not make a start fail while
another would have answered (``started``)."""


async def started(client: AIOKafkaConsumer | AIOKafkaProducer, options: Client) -> None:
    """``client.start()`` within ``CONNECT_SECONDS``, plus a host's request timeout for
    each further broker listed (aiokafka tries them one after another, in an order of its
    own); else the client is stopped and the error says where it could not connect
    (``unreachable``)."""
    bootstrap = options if isinstance(options, str) else str(options.get("bootstrap_servers", ""))
    others = max(0, len([h for h in bootstrap.split(",") if h.strip()]) - 1)
    try:
        await asyncio.wait_for(client.start(), CONNECT_SECONDS + others * BOOTSTRAP_HOST_SECONDS)
    except (KafkaConnectionError, KafkaError, OSError, TimeoutError) as exc:
        await stop_client(client)
        if isinstance(exc, KafkaConnectionError) and await _credentials_refused(options):
            exc = SaslAuthenticationFailed()
        raise unreachable(options, exc) from exc


async def _credentials_refused(options: Client) -> bool:
    """Whether the first broker listed refuses the client's SASL credentials. aiokafka's
    bootstrap logs a refusal (logs the CLI keeps quiet) and raises only "unable to
    bootstrap", so a wrong password was reported as a broker to start (review, session
    43). One connection, as the client's; False when none is made for another reason."""
    if isinstance(options, str) or not options.get("sasl_plain_username"):
        return False
    host, _, port = str(options.get("bootstrap_servers", "")).split(",")[0].strip().rpartition(":")
    if not host or not port.isdigit():
        return False
    accepted = await sasl_accepted(
        host.strip("[]"), int(port), options, "privops-credentials-check", CONNECT_SECONDS
    )
    return accepted is False


async def sasl_accepted(
    host: str, port: int, options: Mapping[str, Any], client_id: str, seconds: float
) -> bool | None:
    """Whether the broker at ``host:port`` accepts the SASL credentials of ``options``
    (``client_options``' keys): True, False when it refuses them, None when it does not
    answer within ``seconds``. One connection, closed at once."""
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host,
                port,
                client_id=client_id,
                request_timeout_ms=int(seconds * 1000),
                ssl_context=options.get("ssl_context"),
                security_protocol=options.get("security_protocol", "SASL_PLAINTEXT"),
                sasl_mechanism=options.get("sasl_mechanism", "SCRAM-SHA-512"),
                sasl_plain_username=options["sasl_plain_username"],
                sasl_plain_password=options.get("sasl_plain_password"),
            ),
            seconds,
        )
    except (SaslAuthenticationFailed, AuthenticationFailedError, IllegalSaslStateError):
        return False
    except (TimeoutError, KafkaError, OSError):
        return None
    conn.close()
    return True


def not_sent(
    client: Client,
    topic: str,
    exc: KafkaError,
    already: Iterable[str] = (),
    sending: str | None = None,
) -> PrivopsError:
    """The error to report when a record could not be sent to ``topic``: a principal the
    topic's ACLs do not let write is configuration to fix (exit 2); a topic that does
    not exist, or a broker gone mid-send, is one to start or create (exit 3). Before, it
    was a traceback and exit 1, which a script reads as "refused" (review, session 43).
    A request that timed out may have been written all the same (``sending``: the id of
    what was being sent, which the message names to check); ``already``: the ids of
    what went before it, sent, which a retry must not send again."""
    error = _not_sent(client, topic, exc, sending)
    if sent := ", ".join(already):
        error = type(error)(f"{error}; sent before it, not to send again: {sent}")
    return error


def _not_sent(client: Client, topic: str, exc: KafkaError, sending: str | None) -> PrivopsError:
    options = {"bootstrap_servers": client} if isinstance(client, str) else client
    bootstrap = options["bootstrap_servers"]
    user = options.get("sasl_plain_username")
    if isinstance(exc, TopicAuthorizationFailedError):
        who = f"principal {user!r}" if user else "this client"
        return ConfigError(
            f"the Kafka broker at {bootstrap} does not let {who} write {topic}: "
            "check PRIVOPS_KAFKA_PRINCIPAL (the DPO's CLI runs as dpo)"
        )
    if isinstance(exc, UnknownTopicOrPartitionError):
        return RuntimeUnavailable(
            f"{topic} was not found on the Kafka broker at {bootstrap} in time: create the "
            "topics (`privops topics create`, or start a worker, which creates them)"
        )
    if isinstance(exc, RequestTimedOutError | KafkaTimeoutError):
        which = sending or "ID"
        return RuntimeUnavailable(
            f"the Kafka broker at {bootstrap} did not confirm the record to {topic} in time: "
            f"it may have been written all the same (`privops request status {which}` says)"
        )
    return RuntimeUnavailable(
        f"could not send to {topic} on the Kafka broker at {bootstrap} "
        f"({type(exc).__name__}); is it running? (`privops local status`)"
    )


def unreachable(client: Client, exc: BaseException) -> PrivopsError:
    """The error to report when a client could not connect, naming where and as whom: a
    refusal of its credentials is configuration to fix (exit 2), which no retry cures."""
    options = {"bootstrap_servers": client} if isinstance(client, str) else client
    bootstrap = options["bootstrap_servers"]
    user = options.get("sasl_plain_username")
    if user and isinstance(exc, SaslAuthenticationFailed | AuthenticationFailedError):
        return ConfigError(
            f"the Kafka broker at {bootstrap} refused the credentials of principal {user!r}: "
            "check PRIVOPS_KAFKA_PRINCIPAL and PRIVOPS_KAFKA_PASSWORD (`privops local "
            "credentials` prints the local runtime's)"
        )
    return RuntimeUnavailable(
        f"Kafka broker at {bootstrap} is unreachable ({type(exc).__name__}); "
        "start it with `privops local up` or set PRIVOPS_KAFKA_BOOTSTRAP"
    )


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: object


@dataclass(frozen=True)
class TopicOutcome:
    name: str
    created: bool
    partitions: int
    note: str = ""
    # The catalogue's configs an existing topic has otherwise (name -> (its value, ""
    # for the broker's default; the catalogue's)): ``config_drift``.
    drift: dict[str, tuple[str, str]] = field(default_factory=dict)


async def _described_cluster(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
    options = resolve(client)
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    try:
        await admin.start()
        described = await admin.describe_cluster()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        raise unreachable(options, exc) from exc
    finally:
        await admin.close()
    return options, described


async def broker_count(client: Client) -> int:
    """How many brokers the cluster has now."""
    _, described = await _described_cluster(client)
    return len(described.get("brokers") or ())


async def cluster_id(client: Client) -> str:
    """The broker cluster's id: local table state belongs to one cluster's changelogs."""
    options, described = await _described_cluster(client)
    found = str(described.get("cluster_id") or "")
    if not found:  # every command is signed for it (privops.core.signing)
        raise PrivopsError(
            f"the broker at {options.get('bootstrap_servers')} reported no cluster id"
        )
    return found


def producer_options(bootstrap: str) -> dict[str, Any]:
    """What every privops producer needs: a record counts as sent once every in-sync
    replica has it (acks=all; with min.insync.replicas=2 a broker can die without losing
    it), and the broker drops a retried batch it already wrote (idempotence)."""
    return {"bootstrap_servers": bootstrap, "acks": "all", "enable_idempotence": True}


MIN_REPLICATED_BROKERS: Final = 2


def one_copy_problem(brokers: int) -> str | None:
    """What is wrong with the default of one copy per topic on a production cluster of
    ``brokers`` answering: from two on (three, one of them down), privacy.audit (ten
    years) and the subjects' keys would live on one broker's disk (ops review, session
    33). The worker asks only when PRIVOPS_ENV=prod and PRIVOPS_REPLICATION_FACTOR is not
    set: said, one copy stands."""
    if brokers < MIN_REPLICATED_BROKERS:
        return None
    return (
        f"the Kafka cluster has {brokers} brokers and PRIVOPS_REPLICATION_FACTOR is not "
        "set: every privops topic (the audit trail, the subjects' keys) would have one "
        "copy; set it to the copies the cluster keeps (3 gives min.insync.replicas 2), or "
        "to 1 on purpose"
    )


def replication_config(replication_factor: int) -> dict[str, str]:
    """Topic config that goes with a replication factor (nothing to add for one copy)."""
    min_insync = min_insync_for(replication_factor)
    return {"min.insync.replicas": str(min_insync)} if min_insync > 1 else {}


async def create_topics(
    client: Client, specs: Iterable[TopicSpec], *, replication_factor: int = 1
) -> list[TopicOutcome]:
    """Create missing topics with ``replication_factor`` copies (settings.replication_factor);
    report existing ones, and a partition-count or replication mismatch."""
    options = resolve(client)
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    try:
        await admin.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        raise unreachable(options, exc) from exc
    try:
        specs = list(specs)
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            extra = replication_config(replication_factor)
            response = await admin.create_topics(
                [
                    NewTopic(
                        s.name,
                        s.partitions,
                        replication_factor,
                        topic_configs={**extra, **s.config},
                    )
                    for s in missing
                ]
            )
            _raise_creation_errors(response.topic_errors, replication_factor)
        described = await _described(admin, [s.name for s in specs], bool(missing))
        drift = await config_drift(admin, [s for s in specs if s not in missing])
        return [
            _outcome(spec, described, spec in missing, replication_factor, drift.get(spec.name))
            for spec in specs
        ]
    finally:
        await admin.close()


UNREAD: Final = ("(unread)", "")
"""``config_drift``'s mark of a topic whose configs this principal could not describe."""


async def config_drift(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec]
) -> dict[str, dict[str, tuple[str, str]]]:
    """Each existing topic whose configs are not the catalogue's: topic -> {config: (its
    value, the catalogue's)}. Kafka keeps a topic's configs as created, and a topic made
    by hand or by an earlier release kept them unsaid: a keys topic without the
    compaction lags kept a shredded key readable behind its tombstone, one with
    ``cleanup.policy=delete`` would lose every key (review, session 44). A topic whose
    configs this principal may not describe is marked (``UNREAD`` under each config),
    so it is said rather than passed over."""
    wanted = [s for s in specs if s.config]
    if not wanted:
        return {}
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, s.name, dict.fromkeys(s.config)) for s in wanted
    ]
    try:
        responses = await admin.describe_configs(resources)
    except KafkaError:
        responses = []
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for code, _, _, name, entries in response.resources:
            if code == 0:
                found[name] = {e[0]: e[1] or "" for e in entries}
    drift = {}
    for spec in wanted:
        if spec.name not in found:
            drift[spec.name] = dict.fromkeys(spec.config, UNREAD)
            continue
        have = found[spec.name]
        off = {k: (have.get(k, ""), v) for k, v in spec.config.items() if have.get(k, "") != v}
        if off:
            drift[spec.name] = off
    return drift


async def _described(
    admin: AIOKafkaAdminClient, names: list[str], just_created: bool, attempts: int = 40
) -> list[Any]:
    """Topic metadata; after a creation, the broker asked may not know the new topics for
    a moment (another node of a cluster was the controller), so wait for them."""
    described: list[Any] = []
    for _ in range(attempts if just_created else 1):
        described = await admin.describe_topics(names)
        if all(d["partitions"] and d["error_code"] == 0 for d in described):
            break
        await asyncio.sleep(0.25)
    return described


def _raise_creation_errors(topic_errors: list[Any], replication_factor: int) -> None:
    """A topic the broker refused is an error here, not a "0 partitions" note later."""
    for name, code, *message in topic_errors:
        if code in (0, TopicAlreadyExistsError.errno):  # created, or by someone else meanwhile
            continue
        detail = message[0] if message and message[0] else f"error code {code}"
        if code == InvalidReplicationFactorError.errno:
            raise ConfigError(
                f"cannot create {name} with {replication_factor} replicas ({detail}); "
                "set PRIVOPS_REPLICATION_FACTOR to at most the number of brokers"
            )
        if code in (TopicAuthorizationFailedError.errno, ClusterAuthorizationFailedError.errno):
            raise PrivopsError(
                f"not allowed to create {name}: only the worker's principal creates topics"
            )
        raise RuntimeUnavailable(f"the broker refused to create {name}: {detail}")


def _outcome(
    spec: TopicSpec,
    described: list[Any],
    created: bool,
    replication_factor: int,
    drift: dict[str, tuple[str, str]] | None = None,
) -> TopicOutcome:
    partitions: list[Any] = next(
        (d["partitions"] for d in described if d["topic"] == spec.name), []
    )
    notes = []
    if len(partitions) != spec.partitions:
        notes.append(f"has {len(partitions)} partitions, catalogue says {spec.partitions}")
    replicas = {len(p["replicas"]) for p in partitions}
    if replicas and replicas != {replication_factor}:
        copies = "/".join(map(str, sorted(replicas)))
        notes.append(f"has {copies} replicas, settings say {replication_factor}")
    if drift and UNREAD in drift.values():
        notes.append("configs not readable (the principal lacks DescribeConfigs?)")
    elif drift:
        said = ", ".join(
            f"{k}={have or '(default)'} (catalogue: {want})" for k, (have, want) in drift.items()
        )
        notes.append(f"has {said}")
    return TopicOutcome(spec.name, created, len(partitions), "; ".join(notes), drift or {})


@asynccontextmanager
async def producer(client: Client, **kwargs: object) -> AsyncIterator[AIOKafkaProducer]:
    options = resolve(client)
    prod = AIOKafkaProducer(
        **{**options, **producer_options(options["bootstrap_servers"]), **kwargs}
    )
    await started(prod, options)
    try:
        yield prod
    finally:
        await prod.stop()


READ_IDLE_POLLS = 4
"""Empty fetches in a row after which ``read_all`` gives up on a partition short of its
end. Before, the first empty fetch ended the read, and what was read so far was taken
for the whole topic: `audit verify` said OK, and `audit anchor` anchored a prefix, on a
slow broker or a leader moving (review, session 25)."""


@dataclass(frozen=True, slots=True)
class Span:
    """What a scan read of one partition: from its log start offset (records before it
    are gone, by retention or deletion) up to its end offset when the scan began."""

    partition: int
    start: int
    end: int


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """``client.stop()``, without the CancelledError aiokafka raises when a fetch it was
    retrying (its broker gone) is cancelled as the consumer stops (aio-libs/aiokafka#647:
    ``Fetcher.close`` awaits the tasks it cancels, and the first cancelled one ends the
    stop there); a cancellation of the caller itself still propagates. What that stop
    left undone is finished (``_finish_stopping``), so a follower that restarts after a
    broker outage does not leave a client reconnecting behind. Seen in CI: the
    three-broker kill test's consumer, stopped after its broker was SIGKILLed and
    restarted, raised it out of its cleanup."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        await _finish_stopping(client)


async def _finish_stopping(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Cancel the fetches a broken-off stop left pending and close the client's
    connections: aiokafka 0.14's internals (``_fetcher._pending_tasks``, ``_client``;
    a producer's ``client``), which tests/unit/test_kafka_stop.py pins. One at a time,
    each cancelled fetch's own CancelledError absorbed as the stop's was."""
    fetcher = getattr(client, "_fetcher", None)
    for pending in list(getattr(fetcher, "_pending_tasks", ())):
        pending.cancel()
        await _absorbing_its_cancel(pending)
    inner = getattr(client, "_client", None) or getattr(client, "client", None)
    if inner is not None:
        await _absorbing_its_cancel(inner.close())


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Ask the broker for the cluster's metadata now: a consumer without a subscription
    knows only the topics there when it started, and aiokafka 0.14 has no public call
    for this (``_client.force_metadata_update``, pinned by tests/unit/test_kafka_stop.py).
    The one place privops reaches into it."""
    await consumer._client.force_metadata_update()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of ``topic``, from the consumer's metadata, asked again once when
    it has none (a topic created after the consumer started); empty when the broker
    shows none (no such topic, or this principal may not describe it)."""
    found = consumer.partitions_for_topic(topic)
    if not found:
        await refresh_metadata(consumer)
        found = consumer.partitions_for_topic(topic)
    return set(found or ())


async def _absorbing_its_cancel(awaitable: Any) -> None:
    """Await ``awaitable``; a CancelledError it raises of its own is absorbed, one of the
    caller's (its task being cancelled) is not."""
    try:
        await awaitable
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception:  # a fetch or a close that failed: the client was being dropped
        log.debug("stopping a Kafka client: %s", awaitable, exc_info=True)


async def scan(
    client: Client,
    topic: str,
    visit: Callable[[Consumed], None],
    *,
    decode: Callable[[bytes | None], object] | None = None,
    idle_ms: int = 1500,
    required: bool = False,
) -> list[Span]:
    """Hand every record on ``topic``, from its start up to its end when the scan began,
    to ``visit``: one partition after another, each in log order (no group). Only one
    partition is fetched at a time, so a topic of any size is read in the memory of one
    fetch. RuntimeUnavailable when the broker stops serving a partition short of its end,
    and, if ``required``, when it shows no partition of ``topic``: the metadata leaves out
    a topic the principal may not describe, so "nothing read" would pass for "nothing
    there" (a check that finds nothing wrong in what it could not read).
    """
    options = resolve(client)
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, auto_offset_reset="earliest")
    await started(consumer, options)
    try:
        partitions = await partitions_of(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps and required:
            user = options.get("sasl_plain_username")
            raise RuntimeUnavailable(
                f"{topic} is not on the Kafka cluster at {options['bootstrap_servers']}"
                + (f", or principal {user!r} may not read it" if user else "")
                + ": check PRIVOPS_KAFKA_BOOTSTRAP and PRIVOPS_KAFKA_PRINCIPAL"
            )
        if not tps:
            return []
        end = await _end_offsets(consumer, tps)
        start = dict(await consumer.beginning_offsets(tps))
        for tp in tps:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            await _read_partition(consumer, tp, end[tp], visit, decode, idle_ms)
        return [Span(tp.partition, start[tp], end[tp]) for tp in tps]
    finally:
        await stop_client(consumer)


async def _read_partition(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    end: int,
    visit: Callable[[Consumed], None],
    decode: Callable[[bytes | None], object] | None,
    idle_ms: int,
) -> None:
    idle = 0
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=idle_ms)
        for messages in batch.values():
            for msg in messages:
                if msg.offset >= end:
                    continue  # written after the scan began
                value = decode(msg.value) if decode else msg.value
                visit(Consumed(msg.partition, msg.offset, msg.timestamp, msg.key, value))
        idle = 0 if batch else idle + 1
        if idle >= READ_IDLE_POLLS:
            at = await consumer.position(tp)
            raise RuntimeUnavailable(
                f"{tp.topic} partition {tp.partition}: the broker served offsets up to "
                f"{at} of {end} and then nothing for "
                f"{READ_IDLE_POLLS * idle_ms / 1000:.0f} s; retry"
            )


async def read_all(
    client: Client,
    topic: str,
    *,
    decode: Callable[[bytes | None], object] | None = None,
    idle_ms: int = 1500,
) -> list[Consumed]:
    """Every record on ``topic`` from the beginning up to its current end (no group), as
    one list: for topics that fit in memory (`scan` for those that may not).
    RuntimeUnavailable when the broker stops serving a partition short of its end."""
    out: list[Consumed] = []
    await scan(client, topic, out.append, decode=decode, idle_ms=idle_ms)
    return out


async def _end_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], attempts: int = 20
) -> dict[TopicPartition, int]:
    """End offsets, waiting out the moment after topic creation when leaders are unknown."""
    for attempt in range(attempts):
        try:
            return dict(await consumer.end_offsets(tps))
        except StaleMetadata:
            if attempt == attempts - 1:
                raise
            await refresh_metadata(consumer)
            await asyncio.sleep(0.25)
    raise AssertionError("unreachable")
