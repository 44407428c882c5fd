"""The worker refuses a topic whose partition count is not the catalogue's
(streams.bootstrap.partition_problems).

A subject's partition is murmur2 of its id modulo the topic's count: one topic with
another count would put the subject elsewhere there, so its events would be refused as
off their subject's partition (`wrong_partition`), and its keys or requests not found.
"""

from __future__ import annotations

from types import SimpleNamespace

from privops.adapters.kafka import UNREAD, TopicOutcome, config_drift, one_copy_problem
from privops.core.topics import SUBJECT_KEYS, TopicSpec, compacted
from streams.bootstrap import keys_topic_problem, partition_problems

SPECS = [
    TopicSpec("crm.events", "subject id", 4, compacted()),
    TopicSpec("privacy.commands", "subject id", 4, compacted()),
]


def test_a_topic_with_another_partition_count_is_named() -> None:
    outcomes = [
        TopicOutcome("crm.events", created=False, partitions=8),
        TopicOutcome("privacy.commands", created=True, partitions=4),
    ]
    assert partition_problems(SPECS, outcomes) == ["topic crm.events has 8 partitions, not 4"]


def test_topics_as_the_catalogue_says_or_not_described_pass() -> None:
    outcomes = [
        TopicOutcome("crm.events", created=False, partitions=4),
        TopicOutcome("privacy.commands", created=False, partitions=0),  # not described here
        TopicOutcome("someone.elses", created=False, partitions=1),
    ]
    assert partition_problems(SPECS, outcomes) == []


def test_a_production_cluster_of_three_brokers_needs_a_replication_factor_said() -> None:
    """With the default of one copy, privacy.audit (ten years) and the subjects' keys
    lived on one broker's disk of three (ops review, session 33)."""
    assert one_copy_problem(1) is None
    assert one_copy_problem(2) is not None  # three, one of them down at the start
    problem = one_copy_problem(3)
    assert problem is not None
    assert "PRIVOPS_REPLICATION_FACTOR" in problem
    assert "3 brokers" in problem


class _Admin:
    """``describe_configs`` as aiokafka answers it: one response, a resource per topic."""

    def __init__(self, resources: list[tuple[int, str, list[tuple[str, str]]]]) -> None:
        self.resources = resources

    async def describe_configs(self, _resources: object) -> list[SimpleNamespace]:
        answered = [(code, "", 2, name, entries) for code, name, entries in self.resources]
        return [SimpleNamespace(resources=answered)]


async def test_configs_not_readable_are_said_and_never_refuse_on_their_own() -> None:
    """A topic whose configs the principal may not describe was passed over unsaid, and
    with it a keys topic that deletes (review of session 44's check): marked, so the
    worker logs that it is not checked; only a read ``cleanup.policy`` refuses."""
    keys = TopicSpec(SUBJECT_KEYS, "key id", 4, compacted())
    events = TopicSpec("crm.events", "subject id", 4, compacted())
    admin = _Admin([(29, SUBJECT_KEYS, []), (0, "crm.events", [("cleanup.policy", "delete")])])
    drift = await config_drift(admin, [keys, events])
    assert set(drift[SUBJECT_KEYS].values()) == {UNREAD}
    assert drift["crm.events"]["cleanup.policy"] == ("delete", "compact")
    unread = TopicOutcome(SUBJECT_KEYS, False, 4, "", drift[SUBJECT_KEYS])
    assert keys_topic_problem([unread]) is None
    deleting = TopicOutcome(SUBJECT_KEYS, False, 4, "", drift["crm.events"])
    assert keys_topic_problem([deleting]) is not None
