"""`privops subject forget-check`: every topic from offset 0 and every local store, read.

The matching rules are pure (``privops.core.forget_scan``); this module finds what there
is to read and reads it. Topics come from the cluster itself (the admin client's list,
not the catalogue), so an old app id's changelogs or a topic nobody remembered are read
too. Two passes: the key topic and the identity records first (which keys are live,
which values privops itself still holds), then everything with those known.
The worker's local stores are read by ``privops.tools.forget_stores``, after the cluster
but locked before it, so a running worker is found before an hour of reading.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError

from privops.adapters.kafka import stop_client, unreachable
from privops.adapters.serde import Serde
from privops.core import forget_scan as fs
from privops.core.errors import PrivopsError, RegistryError
from privops.core.topics import AUDIT, CONSENT_STATE, SUBJECT_KEYS, SUPPRESSION, catalogue
from privops.tools.forget_stores import (
    IDENTITIES_TABLE,
    KEPT_TABLES,
    Finding,
    Progress,
    Report,
    held_stores,
    scan_store,
    store_identities,
)

CHANGELOG_SUFFIX: Final = "-changelog"
IDLE_POLLS: Final = 5
POLL_MS: Final = 1000
_FRAMED: Final = b"\x00"
_NOT_ENTRIES: Final = frozenset({SUPPRESSION, SUBJECT_KEYS, AUDIT, CONSENT_STATE})


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: tuple[int, ...]
    compacted: bool
    ranges: tuple[tuple[int, int, int], ...] = ()
    """(partition, log start offset, end offset) when the scan started."""

    @property
    def identities(self) -> bool:
        return self.name.endswith(f"-{IDENTITIES_TABLE}{CHANGELOG_SUFFIX}")

    @property
    def holds_entries(self) -> bool:
        """A compacted table of privops' own whose keys may be subject ids."""
        kept = any(self.name.endswith(f"-{t}{CHANGELOG_SUFFIX}") for t in KEPT_TABLES)
        return self.compacted and not kept and self.name not in _NOT_ENTRIES


Handler = Callable[[int, int, bytes | None, bytes | None], None]


# --- the cluster -------------------------------------------------------------------------------


async def _topics(admin: AIOKafkaAdminClient, report: Report) -> list[Topic]:
    names = sorted(n for n in await admin.list_topics() if not n.startswith("__"))
    expected = {spec.name for spec in catalogue(1)} | {SUBJECT_KEYS}
    unseen = sorted(expected - set(names))
    if unseen:
        report.warnings.append(
            f"not on the cluster, or not visible to {report.principal}: {', '.join(unseen)}"
        )
    if SUBJECT_KEYS in unseen:
        report.warnings.append(
            f"no {SUBJECT_KEYS}: no key is live there, so no ciphertext counts as decryptable"
        )
    partitions: dict[str, tuple[int, ...]] = {}
    for described in await admin.describe_topics(names):
        if described["error_code"]:
            report.incomplete.append(
                f"{described['topic']}: not described (error code {described['error_code']})"
            )
            continue
        found = sorted(p["partition"] for p in described["partitions"])
        partitions[described["topic"]] = tuple(found)
    policies = await _cleanup_policies(admin, list(partitions), report)
    return [Topic(n, partitions[n], "compact" in policies.get(n, "")) for n in partitions]


async def _cleanup_policies(
    admin: AIOKafkaAdminClient, names: list[str], report: Report
) -> dict[str, str]:
    """Each topic's cleanup.policy; by name (changelogs and the catalogue's compacted
    topics) where the principal may not describe configs."""
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, n, {"cleanup.policy": None}) for n in names
    ]
    policies: dict[str, str] = {}
    try:
        for response in await admin.describe_configs(resources) if names else ():
            for code, _, _, name, entries in response.resources:
                if code == 0:
                    policies[name] = next((e[1] for e in entries if e[0] == "cleanup.policy"), "")
    except KafkaError as exc:
        report.warnings.append(
            f"topic configs not readable ({type(exc).__name__}): compaction judged by name"
        )
    compacted = {s.name for s in catalogue(1) if s.config.get("cleanup.policy") == "compact"}
    for name in names:
        if name not in policies:
            known = name.endswith(CHANGELOG_SUFFIX) or name in compacted | {SUBJECT_KEYS}
            policies[name] = "compact" if known else "delete"
    return policies


async def _with_ranges(
    consumer: AIOKafkaConsumer, topics: list[Topic], report: Report
) -> list[Topic]:
    """Every topic with its partitions' offset ranges, asked for all at once (an empty
    topic then costs nothing); topic by topic if one of them is refused."""
    try:
        return await _ranges(consumer, topics)
    except KafkaError:
        pass
    out = []
    for topic in topics:
        try:
            out += await _ranges(consumer, [topic])
        except KafkaError as exc:
            report.incomplete.append(
                f"{topic.name}: not readable as {report.principal} ({type(exc).__name__})"
            )
    return out


async def _ranges(consumer: AIOKafkaConsumer, topics: list[Topic]) -> list[Topic]:
    tps = [TopicPartition(t.name, p) for t in topics for p in t.partitions]
    consumer.assign(tps)  # one metadata request for all, not one per unknown topic
    begin = await consumer.beginning_offsets(tps) if tps else {}
    end = await consumer.end_offsets(tps) if tps else {}
    return [
        replace(
            t,
            ranges=tuple(
                (p, begin[TopicPartition(t.name, p)], end[TopicPartition(t.name, p)])
                for p in t.partitions
            ),
        )
        for t in topics
    ]


async def _read(
    consumer: AIOKafkaConsumer, topic: Topic, handle: Handler, progress: Progress, label: str
) -> str | None:
    """Every record of ``topic`` in its ranges, in offset order per partition; why it
    stopped short, if it did."""
    begin = {TopicPartition(topic.name, p): b for p, b, _ in topic.ranges}
    end = {TopicPartition(topic.name, p): e for p, _, e in topic.ranges}
    todo = {tp for tp in begin if end[tp] > begin[tp]}
    total = sum(end[tp] - begin[tp] for tp in begin)
    progress(label, 0, total)
    if not todo:
        return None
    consumer.assign(sorted(todo))
    for tp in todo:
        consumer.seek(tp, begin[tp])
    position = dict(begin)
    idle = 0
    while todo and idle < IDLE_POLLS:
        batch = await consumer.getmany(*todo, timeout_ms=POLL_MS)
        idle = 0 if batch else idle + 1
        for tp, messages in batch.items():
            for msg in messages:
                handle(msg.partition, msg.offset, msg.key, msg.value)
            position[tp] = await consumer.position(tp)
            if position[tp] >= end[tp]:
                todo.discard(tp)
        progress(label, sum(min(position[tp], end[tp]) - begin[tp] for tp in begin), total)
    progress(label, total, total)
    if todo:
        short = ", ".join(f"[{tp.partition}] at {position[tp]} of {end[tp]}" for tp in todo)
        return f"{topic.name}: stopped short ({short})"
    return None


async def _read_or_note(
    consumer: AIOKafkaConsumer,
    topic: Topic,
    handle: Handler,
    progress: Progress,
    report: Report,
    label: str,
) -> None:
    try:
        problem = await _read(consumer, topic, handle, progress, label)
    except KafkaError as exc:
        problem = f"{topic.name}: not readable as {report.principal} ({type(exc).__name__})"
    if problem:
        report.incomplete.append(problem)


@dataclass
class _Known:
    """What the first pass learns: live keys and the subject's identity records."""

    keys: fs.Latest = field(default_factory=fs.Latest)
    identity: dict[tuple[str, int], bytes | None] = field(default_factory=dict)


@dataclass
class _IdentityRecords:
    """The latest identity record of the subject per changelog partition."""

    topic: str
    subject: bytes
    latest: dict[tuple[str, int], bytes | None]

    def handle(self, partition: int, _offset: int, key: bytes | None, value: bytes | None) -> None:
        if key == self.subject:
            self.latest[(self.topic, partition)] = value


async def _first_pass(
    consumer: AIOKafkaConsumer,
    topics: list[Topic],
    subject: bytes,
    progress: Progress,
    report: Report,
) -> _Known:
    known = _Known()
    for topic in topics:
        if topic.name == SUBJECT_KEYS:
            await _read_or_note(consumer, topic, known.keys.apply, progress, report, topic.name)
        elif topic.identities:
            records = _IdentityRecords(topic.name, subject, known.identity)
            label = f"{topic.name} (identity records)"
            await _read_or_note(consumer, topic, records.handle, progress, report, label)
    return known


@dataclass
class _TopicScan:
    """One topic's findings as its records go by: hits, and the subject's latest entry."""

    matcher: fs.Matcher
    report: Report
    entries: fs.Latest
    found: list[tuple[int, int, bytes | None, list[fs.Hit]]] = field(default_factory=list)

    def handle(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.report.records += 1
        hits, shredded = self.matcher.record(key, value)
        self.report.shredded += shredded
        self.entries.apply(partition, offset, key, value)
        if hits:
            self.found.append((partition, offset, value, hits))


async def _second_pass(
    consumer: AIOKafkaConsumer,
    topics: list[Topic],
    matcher: fs.Matcher,
    serde: Serde | None,
    progress: Progress,
    report: Report,
) -> None:
    placer = _Placer(serde, report)
    for topic in topics:
        scan = _TopicScan(matcher, report, fs.Latest(only=matcher.subject_id.encode()))
        await _read_or_note(consumer, topic, scan.handle, progress, report, topic.name)
        report.topics += 1
        for p, o, value, hits in scan.found:
            for hit in await placer.placed(value, hits):
                where = f"{hit.part} {hit.at}"
                report.findings.append(Finding(topic.name, p, o, hit.kind, hit.what, where))
        if topic.holds_entries:
            for _, p, o in scan.entries.live():
                what = "latest value is no tombstone"
                report.findings.append(Finding(topic.name, p, o, fs.Kind.LIVE_ENTRY, what, "key"))


@dataclass
class _Placer:
    """Field paths for hits in Avro values, while the registry answers: without it the
    byte offset stands, and one warning says why (not a timeout per finding)."""

    serde: Serde | None
    report: Report

    async def placed(self, value: bytes | None, hits: list[fs.Hit]) -> list[fs.Hit]:
        framed = value is not None and value.startswith(_FRAMED) and len(value) > 5
        if self.serde is None or value is None or not framed:
            return hits
        try:
            record = await self.serde.decode_async(value)
        except RegistryError as exc:
            self.serde = None
            self.report.warnings.append(f"fields not named (schema registry: {exc})")
            return hits
        except PrivopsError:  # not a record privops trusts: the byte offset stands
            return hits
        in_value = [h for h in hits if h.part == "value"]
        document = record.model_dump(mode="json")
        return [h for h in hits if h.part != "value"] + fs.placed(in_value, document)


# --- the whole scan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    subject_id: str
    needles: list[fs.Needle]
    """The DPO's values (``forget_scan.needles``): checked before anything is read."""
    data_dir: Path | None
    """None: stores not scanned (the reason is in ``skipped``)."""
    skipped: str | None = None


async def forget_check(
    options: dict[str, Any], request: Request, serde: Serde | None, progress: Progress
) -> Report:
    """The whole scan: stores locked first (so a running worker is found before an hour
    of reading), then the two passes over the cluster and the stores."""
    report = Report(request.subject_id, str(options.get("sasl_plain_username", "(no SASL)")))
    if request.skipped:
        report.warnings.append(request.skipped)
    given = request.needles
    with ExitStack() as stack:
        stores: list[Path] = []
        if request.data_dir is not None:
            stores = stack.enter_context(held_stores(request.data_dir))
        subject = request.subject_id.encode()
        admin = AIOKafkaAdminClient(**options, request_timeout_ms=15000)
        consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
        try:
            await admin.start()
            await consumer.start()
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            await admin.close()
            await stop_client(consumer)
            raise unreachable(options, exc) from exc
        try:
            topics = await _with_ranges(consumer, await _topics(admin, report), report)
            known = await _first_pass(consumer, topics, subject, progress, report)
            identities = [v for v in known.identity.values() if v is not None]
            identities += store_identities(stores, subject, report)
            extra = [pair for raw in identities for pair in fs.identity_values(raw)]
            matcher = fs.Matcher(
                request.subject_id, tuple(given + _own(extra, given)), known.keys.live_keys()
            )
            for key, p, o in known.keys.live():
                key_id = key.decode(errors="replace")
                if fs.key_subject(key_id) == request.subject_id:
                    report.findings.append(
                        Finding(
                            SUBJECT_KEYS,
                            p,
                            o,
                            fs.Kind.LIVE_KEY,
                            f"key {key_id} (no tombstone: decryptable by anyone holding the KEK)",
                            "key",
                        )
                    )
            await _second_pass(consumer, topics, matcher, serde, progress, report)
        finally:
            await stop_client(consumer)
            await admin.close()
        for store in stores:
            name = str(store.relative_to(request.data_dir)) if request.data_dir else str(store)
            scan_store(store, name, matcher, report, progress)
    return report


def _own(extra: list[tuple[str, str]], given: list[fs.Needle]) -> list[fs.Needle]:
    """Needles for values privops' identity records hold, unless the DPO named them."""
    out: list[fs.Needle] = []
    for label, value in extra:
        try:
            made = fs.needle(value, label)
        except ValueError:
            continue
        if all((made.kind, made.canonical) != (g.kind, g.canonical) for g in given + out):
            out.append(made)
    return out
