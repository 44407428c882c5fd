"""The topic catalogue (DESIGN.md section 4): every topic privops reads or writes, once.

Co-partitioned topics (keyed by subject id: upstream events, tasks, consent state) share
one partition count so a subject's events, tasks and state land on the same partition
number, and one worker owns all of a subject's state. Everything about a request travels
under its subject's id too, so a request lives on its subject's partition; a subject's
data keys are keyed by key id but produced to the subject's partition. The two
global topics (the suppression list, keyed by identifier hash; the request-id ->
subject-id index) are read whole by every worker.

Every topic says how long Kafka keeps it (docs/topics.md has the table and the reasons).
privops' own state lives in its tables' compacted changelogs, so the topics it reads are
transport: kept long enough to ride out an outage, then gone, because most of them carry
personal data (identifiers in tasks, the access manifest in notifications, original
bytes in dead letters). Only the audit chain, which holds keyed hashes and no raw
personal data, is kept for years. Where the data map says something about it (how long
a system may take to answer, the shortest-lived category a topic can carry), the
retention is derived from it; ``catalogue()`` without a data map uses the values the
shipped data map gives (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from privops.core.vocab import Category, System

if TYPE_CHECKING:
    from privops.core.datamap import DataMap, SystemSpec

COMMANDS = "privacy.commands"
COMMAND_RESULTS = "privacy.command-results"
CONSENT_STATE = "privacy.consent-state"
AUDIT = "privacy.audit"
ALERTS = "privacy.alerts"
NOTIFICATIONS = "privacy.notifications"
DEADLETTER = "privacy.deadletter"
SUBJECT_DIRECTIVES = "privops.internal.subject-directives"
REQUEST_TICKS = "privops.internal.request-ticks"
# Global, not partitioned by subject: every worker reads all of it (streams.global_view).
SUPPRESSION = "privops.internal.suppression"
# Per-subject data keys (crypto-shredding, docs/crypto-shredding.md): keyed by key id, on
# the subject's partition (streams.keystore), so one worker owns a subject's keys too.
SUBJECT_KEYS = "privacy.subject-keys"
REQUEST_INDEX = "privops.internal.request-index"

SUBJECT_KEYS_KEY: Final = "key id (on its subject id's partition)"

DAY_MS: Final = 24 * 3600 * 1000

# Audit: accountability (Art. 5(2)) outlasts the requests it records: claims about a
# request can be brought for 6 years (Limitation Act 1980 s.5) from when they arise,
# which can be years after the request. It holds keyed hashes, never raw personal data.
AUDIT_RETENTION_YEARS: Final = 10
AUDIT_RETENTION: Final = timedelta(days=AUDIT_RETENTION_YEARS * 366)
# Commands: the DPO's signed instructions. The audit keeps who did what and why for ten
# years; the command itself (with its signature, and rectification values or free-text
# reasons, which can be personal data) is kept while its request can still run: the
# longest statutory period (one month plus a two-month extension, ~92 days) plus four
# weeks for clarification pauses and for disputes while the request is open.
COMMANDS_RETENTION: Final = timedelta(days=92 + 28)
# Command results: what the CLI waits a few seconds for; `privops request status` asks
# the worker, not this topic. A week covers a CLI run that lost its connection.
COMMAND_RESULTS_RETENTION: Final = timedelta(days=7)
# Tasks and their answers carry the identifiers each system knows the subject by. They
# are needed until answered: re-sent tasks are new records, so a record need outlive only
# a system's worst wait (twice the SLA plus every back-off, from the data map), and at
# least four weeks so a system that was down over a holiday finds its work.
TASKS_MIN_RETENTION: Final = timedelta(days=28)
TASKS_MARGIN: Final = 2
# Alerts feed people and Alertmanager, which keep their own history; the audit records
# each one. Four weeks covers an on-call rota's review.
ALERTS_RETENTION: Final = timedelta(days=28)
# Notifications carry the access manifest and recipients' identifiers: kept until the
# delivery service has surely sent them (the audit records that they were sent).
NOTIFICATIONS_RETENTION: Final = timedelta(days=28)
# Dead letters keep the original bytes: any system's event, so any category. Four weeks
# to triage and replay (the "DLQ growing" alert fires within minutes), and never longer
# than the data map keeps the shortest-lived category that can land there.
DEADLETTER_RETENTION: Final = timedelta(days=28)
# Upstream events: the business systems own them; privops creates them locally, and a
# production cluster sets them per the system team. Consent, identity and suppression
# are rebuilt from privops' changelogs, not by replaying these, so two weeks ride out a
# worker outage; never longer than the system's shortest-lived category.
EVENTS_RETENTION: Final = timedelta(days=14)
# Internal directives and ticks: consumed within seconds; ticks are rebuilt from the
# request table after a restart. A week covers a worker outage.
INTERNAL_RETENTION: Final = timedelta(days=7)
# Compacted topics keep the latest value per key forever; these bound how long a
# superseded value (an erased subject's old state) survives behind its tombstone, and
# how long the tombstone stays for a store that was offline to see it.
MAX_COMPACTION_LAG: Final = timedelta(days=7)
TOMBSTONE_RETENTION: Final = timedelta(days=7)


def events_topic(system: System | str) -> str:
    return f"{System(system).value}.events"


def task_results_topic(system: System | str) -> str:
    """One answer topic per system: only that system's principal may write it, so the
    topic (not a field in the answer) says which system answered (DESIGN.md section 4)."""
    return f"privacy.task-results.{System(system).value}"


def system_of_results_topic(topic: str) -> System | None:
    """The system whose answers `topic` carries, or None if it is no results topic."""
    prefix = "privacy.task-results."
    if not topic.startswith(prefix):
        return None
    try:
        return System(topic.removeprefix(prefix))
    except ValueError:
        return None


def tasks_topic(system: System | str) -> str:
    return f"privacy.tasks.{System(system).value}"


LEGAL_HOLDS_PREFIX: Final = "privacy.legal-holds."


def legal_holds_topic(system: System | str) -> str:
    """What legal holds keep at one system (``records.LegalHoldState``), compacted: only
    that system may read it, so it learns no hold on data it does not hold."""
    return f"{LEGAL_HOLDS_PREFIX}{System(system).value}"


PRESERVATION_KEY_PREFIX: Final = "search\x1f"
"""Starts the key of a ``SearchPreserved`` record on a legal-holds topic. The topic's
other keys are subject ids, which are printable (``fieldcrypt.check_subject_id``), and
U+001F is not: no subject's key can be taken for a request's, so a request's tombstone
can never release a subject's legal holds, nor theirs a request's preservation."""


def preservation_key(request_id: str) -> str:
    """The legal-holds key under which ``request_id``'s search is preserved."""
    return PRESERVATION_KEY_PREFIX + request_id


def preserved_request(key: str) -> str | None:
    """The request id a legal-holds key preserves the search of; None for a subject's."""
    if key.startswith(PRESERVATION_KEY_PREFIX):
        return key.removeprefix(PRESERVATION_KEY_PREFIX) or None
    return None


def ingest_inputs() -> list[str]:
    """What the ingest agent reads as its consumer group: every system's events and the
    requests' directives (all keyed by subject id)."""
    return [events_topic(s) for s in System] + [SUBJECT_DIRECTIVES]


def workflow_inputs() -> list[str]:
    """What the workflow agent reads as its consumer group: commands, every system's
    answers and the requests' ticks (all keyed by subject id)."""
    return [COMMANDS, *(task_results_topic(s) for s in System), REQUEST_TICKS]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def compacted() -> dict[str, str]:
    """Config of a compacted topic: the latest value per key, tombstones honoured in time."""
    return {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": "0",
        "max.compaction.lag.ms": str(_ms(MAX_COMPACTION_LAG)),
        "delete.retention.ms": str(_ms(TOMBSTONE_RETENTION)),
    }


def bounded(retention: timedelta) -> dict[str, str]:
    """Config of a topic whose records are deleted after `retention`.

    Kafka deletes whole segments, and never the active one: daily segments make a record
    go within a day of its retention instead of up to a week (the default segment.ms).
    """
    ms = _ms(retention)
    return {"cleanup.policy": "delete", "retention.ms": str(ms), "segment.ms": str(min(ms, DAY_MS))}


def catalogue(partitions: int, datamap: DataMap | None = None) -> list[TopicSpec]:
    """Every topic with its partitions and config. Same count for co-partitioned topics.

    ``datamap`` derives the retentions the data map decides; without it, those of the
    shipped data map.
    """
    events = {s: _events_retention(datamap, s) for s in System}
    tasks = {s: _tasks_retention(datamap, s) for s in System}
    audit = {"cleanup.policy": "delete", "retention.ms": str(_ms(AUDIT_RETENTION))}
    specs = [
        TopicSpec(events_topic(s), "subject id", partitions, bounded(events[s])) for s in System
    ]
    specs += [
        TopicSpec(tasks_topic(s), "subject id", partitions, bounded(tasks[s])) for s in System
    ]
    # The holds each system must honour: the latest state per subject, kept until the
    # last hold on it is released (a tombstone), never by age.
    specs += [
        TopicSpec(
            legal_holds_topic(s),
            "subject id, or a search's preservation key",
            partitions,
            compacted(),
        )
        for s in System
    ]
    # Each system's answers are kept as long as the tasks they answer.
    specs += [
        TopicSpec(task_results_topic(s), "subject id", partitions, bounded(tasks[s]))
        for s in System
    ]
    specs += [
        TopicSpec(COMMANDS, "subject id", partitions, bounded(COMMANDS_RETENTION)),
        TopicSpec(COMMAND_RESULTS, "subject id", partitions, bounded(COMMAND_RESULTS_RETENTION)),
        TopicSpec(CONSENT_STATE, "subject id", partitions, compacted()),
        TopicSpec(AUDIT, "chain key (request id or subject ref)", partitions, audit),
        TopicSpec(ALERTS, "subject id", partitions, bounded(ALERTS_RETENTION)),
        TopicSpec(NOTIFICATIONS, "subject id", partitions, bounded(NOTIFICATIONS_RETENTION)),
        TopicSpec(DEADLETTER, "original key", partitions, bounded(_deadletter_retention(datamap))),
        TopicSpec(SUBJECT_DIRECTIVES, "subject id", partitions, bounded(INTERNAL_RETENTION)),
        TopicSpec(REQUEST_TICKS, "subject id", partitions, bounded(INTERNAL_RETENTION)),
        # Who was erased must outlive every rebuild (a new app id, a replay of the
        # upstream topics): compacted, so the latest value per key is kept forever
        # (keyed hashes only, no personal data).
        TopicSpec(SUPPRESSION, "suppression key (keyed hash)", partitions, compacted()),
        TopicSpec(REQUEST_INDEX, "request id", partitions, compacted()),
        # The only copy of each subject's data keys (wrapped): kept until erasure writes
        # the key id's tombstone, never by age. Keyed by key id so a second key for a
        # subject adds a record instead of replacing one that data was written under;
        # produced to the subject's partition, so it is co-partitioned all the same.
        TopicSpec(SUBJECT_KEYS, SUBJECT_KEYS_KEY, partitions, compacted()),
    ]
    return specs


def _ms(period: timedelta) -> int:
    return int(period.total_seconds() * 1000)


def _events_retention(datamap: DataMap | None, system: System) -> timedelta:
    if datamap is None or system not in datamap.systems:
        return EVENTS_RETENTION
    return _capped(EVENTS_RETENTION, datamap, datamap.systems[system].categories)


def _deadletter_retention(datamap: DataMap | None) -> timedelta:
    if datamap is None:
        return DEADLETTER_RETENTION
    return _capped(DEADLETTER_RETENTION, datamap, datamap.categories)


def _capped(period: timedelta, datamap: DataMap, categories: Iterable[Category]) -> timedelta:
    """`period`, or less if one of `categories` is normally kept for less by the data map.

    A condition (an investigation hold, an open account) extends a category's period in
    the business system; the copy in transit is held to the period itself.
    """
    periods = [
        timedelta(days=rule.period_days or 365 * (rule.period_years or 0))
        for rule in (datamap.retention.get(c) for c in categories)
        if rule is not None and rule.has_period
    ]
    return min([period, *periods])


def _tasks_retention(datamap: DataMap | None, system: System) -> timedelta:
    if datamap is None or system not in datamap.systems:
        return TASKS_MIN_RETENTION
    return max(TASKS_MIN_RETENTION, TASKS_MARGIN * _longest_wait(datamap.systems[system]))


def _longest_wait(spec: SystemSpec) -> timedelta:
    """From the first send to the first re-send after escalation (privops.core.retries)."""
    attempts = spec.retry.max_attempts
    backoffs = sum(spec.retry.delay_after(n) for n in range(1, attempts + 1))
    return timedelta(seconds=spec.sla_seconds + backoffs)
