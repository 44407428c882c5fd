"""Connector SDK (privops.connectors): how a business system takes privops' tasks and answers.

See docs/connectors.md. Reference connectors over SQLite live in
``privops.connectors.reference``.
"""

from __future__ import annotations

from privops.connectors.sdk import (
    REGISTRY,
    Connector,
    ConnectorRunner,
    Outcome,
    RetryPolicy,
    TransientError,
    serve_metrics,
)
from privops.core.records import Erase, Export, LiftRestriction, Rectify, Restrict, Task

__all__ = [
    "REGISTRY",
    "Connector",
    "ConnectorRunner",
    "Erase",
    "Export",
    "LiftRestriction",
    "Outcome",
    "Rectify",
    "Restrict",
    "RetryPolicy",
    "Task",
    "TransientError",
    "serve_metrics",
]
