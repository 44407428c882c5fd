"""The connector SDK in one import: what a business system implements and what runs it.

A team writes one small :class:`Connector` subclass (erase / restrict / lift_restriction /
rectify / export for an identifier set), returns an :class:`Answer` from each action and
runs it with :class:`ConnectorRunner`, which does the Kafka plumbing (see docs/connectors.md).

The parts live beside each other: ``base`` (the contract), ``runner`` (Kafka, in-process
retries), ``ledger`` (exactly-once effect), ``metrics`` (a registry of their own). This
module gathers them so a connector needs one import path.
"""

from __future__ import annotations

from privops.connectors.base import NO_ANSWER, Answer, Connector, TransientError
from privops.connectors.ledger import Ledger, ledger_path
from privops.connectors.metrics import REGISTRY, metric_value, serve_metrics
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
    "Answer",
    "AnswerHook",
    "Connector",
    "ConnectorRunner",
    "Ledger",
    "RunnerStats",
    "TransientError",
    "TransientRetry",
    "ledger_path",
    "metric_value",
    "serve_metrics",
]
