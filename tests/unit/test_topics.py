"""Every topic says how long Kafka keeps it, and the data map bounds what it decides (#15.5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core.datamap import DataMap, RetryPolicy
from privops.core.topics import (
    ALERTS,
    AUDIT,
    COMMAND_RESULTS,
    COMMANDS,
    CONSENT_STATE,
    DAY_MS,
    DEADLETTER,
    NOTIFICATIONS,
    REQUEST_INDEX,
    REQUEST_TICKS,
    SUBJECT_DIRECTIVES,
    SUBJECT_KEYS,
    SUBJECT_KEYS_KEY,
    SUPPRESSION,
    TopicSpec,
    catalogue,
    events_topic,
    legal_holds_topic,
    task_results_topic,
    tasks_topic,
)
from privops.core.vocab import Category, System

REAL = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"
YEAR_MS = 365 * DAY_MS


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap(REAL)


def by_name(specs: list[TopicSpec]) -> dict[str, TopicSpec]:
    return {s.name: s for s in specs}


def retention_days(spec: TopicSpec) -> float:
    return int(spec.config["retention.ms"]) / DAY_MS


SPECS = catalogue(3)
DELETED = [s for s in SPECS if s.config.get("cleanup.policy") == "delete"]


def test_names_and_partitions_are_unchanged() -> None:
    assert set(by_name(SPECS)) == {
        *(events_topic(s) for s in System),
        *(tasks_topic(s) for s in System),
        COMMANDS,
        COMMAND_RESULTS,
        *(task_results_topic(s) for s in System),
        *(legal_holds_topic(s) for s in System),
        CONSENT_STATE,
        AUDIT,
        ALERTS,
        NOTIFICATIONS,
        DEADLETTER,
        SUBJECT_DIRECTIVES,
        REQUEST_TICKS,
        SUPPRESSION,
        REQUEST_INDEX,
        SUBJECT_KEYS,
    }
    assert len(SPECS) == len(by_name(SPECS))
    assert {s.partitions for s in SPECS} == {3}


def test_everything_about_a_subject_travels_under_its_subject_id() -> None:
    """DESIGN.md section 4: co-partitioned by subject id; only the audit (by chain),
    dead letters (their original key) and the two global views are keyed otherwise; the
    subject keys by key id, on the subject's partition (streams.keystore); a system's
    legal holds by subject id, and an open search's preservation by its request
    (records.SearchPreserved: each system reads its topic whole, in no group)."""
    others = {AUDIT, DEADLETTER, SUPPRESSION, REQUEST_INDEX, SUBJECT_KEYS}
    holds = {legal_holds_topic(s) for s in System}
    assert {s.name for s in SPECS if s.key != "subject id"} == others | holds
    assert {by_name(SPECS)[h].key for h in holds} == {"subject id, or a search's preservation key"}
    assert by_name(SPECS)[SUBJECT_KEYS].key == SUBJECT_KEYS_KEY


def test_subject_keys_are_kept_until_their_tombstone() -> None:
    """The only copy of each data key: compacted, never deleted by age (#15)."""
    config = by_name(SPECS)[SUBJECT_KEYS].config
    assert config["cleanup.policy"] == "compact"
    assert "retention.ms" not in config
    assert by_name(SPECS)[SUBJECT_KEYS].partitions == by_name(SPECS)[COMMANDS].partitions


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_topic_has_an_explicit_retention_or_is_compacted(spec: TopicSpec) -> None:
    policy = spec.config.get("cleanup.policy")
    assert policy in ("delete", "compact")
    if policy == "compact":
        assert "retention.ms" not in spec.config
        # A superseded value (an erased subject's old state) goes within a week, and a
        # tombstone stays long enough for a store that was offline to see it.
        assert int(spec.config["max.compaction.lag.ms"]) <= 7 * DAY_MS
        assert int(spec.config["delete.retention.ms"]) >= DAY_MS
    else:
        assert 0 < int(spec.config["retention.ms"]) < 2**63


# Not the audit: ten years of daily segments is not worth a day's precision.
@pytest.mark.parametrize("spec", [s for s in DELETED if s.name != AUDIT], ids=lambda s: s.name)
def test_bounded_topics_are_deleted_within_a_day_of_their_retention(spec: TopicSpec) -> None:
    segment = int(spec.config["segment.ms"])
    assert segment <= min(DAY_MS, int(spec.config["retention.ms"]))


def test_audit_is_kept_at_least_ten_years() -> None:
    audit = by_name(SPECS)[AUDIT]
    assert audit.config["cleanup.policy"] == "delete"
    assert int(audit.config["retention.ms"]) >= 10 * YEAR_MS


@pytest.mark.parametrize(
    ("topic", "at_most_days"),
    [
        (DEADLETTER, 30),  # original bytes, any category: under the shortest (CCTV, 30)
        (NOTIFICATIONS, 30),  # the access manifest, recipients' identifiers
        (COMMANDS, 120),  # rectification values, free text: while a request can run
        (COMMAND_RESULTS, 7),
        (ALERTS, 30),
        (SUBJECT_DIRECTIVES, 7),
        (REQUEST_TICKS, 7),
        *((tasks_topic(s), 60) for s in System),  # identifiers
        *((task_results_topic(s), 60) for s in System),
        *((events_topic(s), 30) for s in System),
    ],
)
def test_topics_with_personal_data_are_bounded(topic: str, at_most_days: int) -> None:
    assert retention_days(by_name(SPECS)[topic]) <= at_most_days


def test_everything_but_the_audit_is_kept_less_than_a_year() -> None:
    kept = [s.name for s in DELETED if int(s.config["retention.ms"]) >= YEAR_MS]
    assert kept == [AUDIT]


def test_defaults_are_what_the_shipped_data_map_gives(dm: DataMap) -> None:
    assert catalogue(3, dm) == catalogue(3)


def with_period(dm: DataMap, category: Category, days: int) -> DataMap:
    rule = dm.retention[category].model_copy(update={"period_days": days, "period_years": None})
    return dm.model_copy(update={"retention": {**dm.retention, category: rule}})


@pytest.mark.parametrize(
    ("category", "days", "events", "deadletter"),
    [
        # CCTV footage kept 5 days: the cctv events and the dead letters follow it.
        (Category.cctv, 5, {System.cctv: 5}, 5),
        # Call recordings kept 10 days: every system holding interactions follows.
        (Category.interactions, 10, {System.crm: 10, System.telephony: 10}, 10),
        # A category kept longer than transport changes nothing.
        (Category.web, 400, {}, 28),
    ],
)
def test_events_and_dead_letters_never_outlive_the_shortest_category(
    dm: DataMap,
    category: Category,
    days: int,
    events: dict[System, int],
    deadletter: int,
) -> None:
    specs = by_name(catalogue(3, with_period(dm, category, days)))
    for system in System:
        assert retention_days(specs[events_topic(system)]) == events.get(system, 14), system
    assert retention_days(specs[DEADLETTER]) == deadletter


def test_tasks_outlive_a_slow_systems_retries(dm: DataMap) -> None:
    slow = dm.systems[System.cctv].model_copy(
        update={
            "sla_seconds": 86400,
            "retry": RetryPolicy(max_attempts=5, backoff_seconds=86400, backoff_multiplier=2),
        }
    )
    specs = by_name(
        catalogue(3, dm.model_copy(update={"systems": {**dm.systems, System.cctv: slow}}))
    )
    # One day's SLA, then 1 + 2 + 4 + 8 + 16 days of back-off, twice over.
    assert retention_days(specs[tasks_topic(System.cctv)]) == 2 * (1 + 31)
    assert retention_days(specs[task_results_topic(System.cctv)]) == 64  # as its tasks
    assert retention_days(specs[tasks_topic(System.orders)]) == 28  # the floor
