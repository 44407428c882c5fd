"""Before the worker starts: every topic it will touch exists, with its partitions.

Faust creates table changelog topics itself at start-up, but its producer only knows the
topics in the metadata it fetched when it connected; a changelog created a moment later
reads as "0 partitions" and the first table write fails (PartitionsMismatch). Creating
them first, with the catalogue, avoids that race on a fresh deployment.
"""

from __future__ import annotations

import asyncio
import logging

from privops.adapters.datamap_file import load_datamap
from privops.adapters.kafka import (
    UNREAD,
    TopicOutcome,
    broker_count,
    create_topics,
    one_copy_problem,
)
from privops.core.errors import ConfigError
from privops.core.topics import SUBJECT_KEYS, TopicSpec, catalogue, compacted
from streams.app import app, settings

log = logging.getLogger(__name__)


def changelog_specs() -> list[TopicSpec]:
    return [
        TopicSpec(
            f"{settings.app_id}-{name}-changelog",
            "table key",
            settings.topic_partitions,
            compacted(),
        )
        for name in app.tables
    ]


def ensure_topics() -> list[TopicOutcome]:
    """Create what is missing; ``ConfigError`` (the worker does not start) for a topic
    with another partition count than the catalogue's (``partition_problems``), or a
    production cluster of two brokers or more given no replication factor. A topic
    with another replica count than the setting's is logged."""
    app.discover()  # tables are declared by the agent modules
    if settings.env == "prod" and "replication_factor" not in settings.model_fields_set:
        problem = one_copy_problem(asyncio.run(broker_count(settings.kafka_bootstrap)))
        if problem:
            raise ConfigError(problem)
    datamap = load_datamap(settings.datamap)
    specs = catalogue(settings.topic_partitions, datamap) + changelog_specs()
    outcomes = asyncio.run(
        create_topics(
            settings.kafka_bootstrap, specs, replication_factor=settings.replication_factor
        )
    )
    if refused := keys_topic_problem(outcomes):
        raise ConfigError(refused)
    for outcome in outcomes:
        if outcome.drift and UNREAD in outcome.drift.values():
            log.warning("topic %s %s: its configs are not checked", outcome.name, outcome.note)
        elif outcome.drift:
            log.warning("topic %s %s: %s", outcome.name, outcome.note, config_fix(outcome))
        elif "replicas" in outcome.note:
            log.warning("topic %s %s", outcome.name, outcome.note)
    problems = partition_problems(specs, outcomes)
    if problems:
        raise ConfigError(
            f"{'; '.join(problems)}: every topic about subjects has PRIVOPS_TOPIC_PARTITIONS "
            "partitions, so that a subject's records are on one partition number everywhere "
            "(set it to the topics' count, or recreate them)"
        )
    return outcomes


def keys_topic_problem(outcomes: list[TopicOutcome]) -> str | None:
    """Why the worker must not start on this privacy.subject-keys, or None: a cleanup
    policy other than ``compact`` (``delete`` drops every data key at its retention, and
    every field sealed under them with it; review, session 44)."""
    for outcome in outcomes:
        if outcome.name == SUBJECT_KEYS and outcome.drift.get("cleanup.policy", UNREAD) != UNREAD:
            return (
                f"{SUBJECT_KEYS} {outcome.note}: it holds the only copy of the subjects' "
                f"data keys, kept until shredded; {config_fix(outcome)}"
            )
    return None


def config_fix(outcome: TopicOutcome) -> str:
    """The command that gives ``outcome``'s topic the catalogue's configs."""
    pairs = ",".join(f"{k}={want}" for k, (_, want) in outcome.drift.items())
    return (
        "set the catalogue's configs with `kafka-configs.sh --bootstrap-server BROKER "
        f"--command-config admin.properties --alter --entity-type topics --entity-name "
        f"{outcome.name} --add-config {pairs}`"
    )


def partition_problems(specs: list[TopicSpec], outcomes: list[TopicOutcome]) -> list[str]:
    """Each existing topic whose partition count is not the catalogue's. A subject's
    partition is murmur2 of its id modulo the count, so one topic with another count
    puts the subject elsewhere there: its events would be refused as off its partition,
    its keys or requests not found. A topic this worker cannot describe (0) is left to
    the broker's own errors."""
    wanted = {spec.name: spec.partitions for spec in specs}
    return [
        f"topic {outcome.name} has {outcome.partitions} partitions, not {wanted[outcome.name]}"
        for outcome in outcomes
        if outcome.name in wanted and 0 < outcome.partitions != wanted[outcome.name]
    ]
