"""The topic catalogue (DESIGN.md section 4): every topic privops reads or writes, once.

Co-partitioned topics (keyed by subject id: upstream events, tasks, consent state) share
one partition count so a subject's events, tasks and state land on the same partition
number. Request-keyed topics share another. Both come from settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from privops.core.vocab import System

COMMANDS = "privacy.commands"
COMMAND_RESULTS = "privacy.command-results"
TASK_RESULTS = "privacy.task-results"
CONSENT_STATE = "privacy.consent-state"
AUDIT = "privacy.audit"
ALERTS = "privacy.alerts"
NOTIFICATIONS = "privacy.notifications"
DEADLETTER = "privacy.deadletter"
SUBJECT_DIRECTIVES = "privops.internal.subject-directives"
REQUEST_TICKS = "privops.internal.request-ticks"

TEN_YEARS_MS = 10 * 366 * 24 * 3600 * 1000
ONE_YEAR_MS = 366 * 24 * 3600 * 1000


def events_topic(system: System | str) -> str:
    return f"{System(system).value}.events"


def tasks_topic(system: System | str) -> str:
    return f"privacy.tasks.{System(system).value}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def catalogue(partitions: int) -> list[TopicSpec]:
    """Every topic with its partitions and config. Same count for co-partitioned topics."""
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    specs = [TopicSpec(events_topic(s), "subject id", partitions) for s in System]
    specs += [TopicSpec(tasks_topic(s), "subject id", partitions) for s in System]
    specs += [
        TopicSpec(COMMANDS, "request id", partitions),
        TopicSpec(COMMAND_RESULTS, "request id", partitions),
        TopicSpec(TASK_RESULTS, "request id", partitions),
        TopicSpec(CONSENT_STATE, "subject id", partitions, compacted),
        TopicSpec(
            AUDIT,
            "chain key (request id or subject ref)",
            partitions,
            {"retention.ms": str(TEN_YEARS_MS), "cleanup.policy": "delete"},
        ),
        TopicSpec(ALERTS, "request id", partitions),
        TopicSpec(NOTIFICATIONS, "request id", partitions),
        TopicSpec(DEADLETTER, "original key", partitions, {"retention.ms": str(ONE_YEAR_MS)}),
        TopicSpec(SUBJECT_DIRECTIVES, "subject id", partitions),
        TopicSpec(REQUEST_TICKS, "request id", partitions),
    ]
    return specs
