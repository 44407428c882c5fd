"""The order the suite's modules start in: the longest integration modules first.

`make test` hands whole modules to pytest-xdist workers in collection order
(``--dist loadfile --no-loadscope-reorder``). Starting the longest ones first keeps a
worker from picking up a three-minute module when the others are nearly done; the unit
and agent tests, many and short, fill the gaps at the end. Without xdist the order only
changes which module runs when: every module sets up what it needs itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# Longest first, from `pytest -n 2 --durations=0` (setup + call + teardown per module:
# test_request_flow 223 s ... test_connector_sdk 11 s). A module not named here, new and
# not yet measured, starts before all of these: if it is short that costs nothing.
LONGEST_FIRST = (
    "test_request_flow",
    "test_worker_startup",
    "test_scale_out",
    "test_commands_answered",
    "test_three_brokers",
    "test_wheel",
    "test_observability",
    "test_dsar_flow",
    "test_demo",
    "test_subject_keys",
    "test_crypto_shredding",
    "test_kafka_acls",
    "test_worker_health",
    "test_art19",
    "test_audit_verify",
    "test_consent_flow",
    "test_forget_check",
    "test_request_records",
    "test_slice",
    "test_connector_sdk",
)


def _rank(item: pytest.Item) -> int:
    if item.path.parent != HERE:
        return len(LONGEST_FIRST)
    stem = item.path.stem
    return LONGEST_FIRST.index(stem) if stem in LONGEST_FIRST else -1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: each module's tests keep their own order
