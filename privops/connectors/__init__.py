"""Connector SDK (privops.connectors): how a business system takes privops' tasks and answers.

See docs/connectors.md. The contract (``base``) sits beside what runs it (``runner``,
``ledger``, ``metrics``) and beside the reference connectors over SQLite
(``privops.connectors.reference``), which are complete examples of every action.
"""

from __future__ import annotations

from privops.connectors.sdk import (
    REGISTRY,
    Answer,
    Connector,
    ConnectorRunner,
    TransientError,
    TransientRetry,
    serve_metrics,
)
from privops.core.records import Erase, Export, LiftRestriction, Rectify, Restrict, Task

__all__ = [
    "REGISTRY",
    "Answer",
    "Connector",
    "ConnectorRunner",
    "Erase",
    "Export",
    "LiftRestriction",
    "Rectify",
    "Restrict",
    "Task",
    "TransientError",
    "TransientRetry",
    "serve_metrics",
]
