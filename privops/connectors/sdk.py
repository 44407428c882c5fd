"""The connector SDK in one import: what a business system implements and what runs it.

A team writes one small :class:`Connector` subclass (erase / restrict / lift_restriction /
rectify / export for an identifier set, hold / release for legal holds), returns an
:class:`Answer` from each action and runs it with :class:`ConnectorRunner`, which does
the Kafka plumbing (see docs/connectors.md).

The parts live beside each other: ``base`` (the contract), ``runner`` (Kafka, in-process
retries), ``holds`` (the legal holds on the system, read whole), ``retention`` (the data
map's periods for deletion by age), ``ledger`` (exactly-once effect), ``metrics`` (a
registry of their own). This module gathers them so a connector needs one import path.
"""

from __future__ import annotations

from privops.connectors.base import NO_ANSWER, Answer, Connector, TransientError, honours_holds
from privops.connectors.holds import HoldReader
from privops.connectors.ledger import Ledger, ledger_path
from privops.connectors.metrics import REGISTRY, metric_value, serve_metrics
from privops.connectors.retention import AgeLimit, age_limits
from privops.connectors.runner import (
    SKIP_REASONS,
    AnswerHook,
    ConnectorRunner,
    RunnerStats,
    TransientRetry,
)

__all__ = [
    "NO_ANSWER",
    "REGISTRY",
    "SKIP_REASONS",
    "AgeLimit",
    "Answer",
    "AnswerHook",
    "Connector",
    "ConnectorRunner",
    "HoldReader",
    "Ledger",
    "RunnerStats",
    "TransientError",
    "TransientRetry",
    "age_limits",
    "honours_holds",
    "ledger_path",
    "metric_value",
    "serve_metrics",
]
