"""Connector SDK (privops.connectors): how a business system takes privops' tasks and answers.

See docs/connectors.md. The contract (``base``) sits beside what runs it (``runner``,
``holds``, ``ledger``, ``metrics``) and beside the reference connectors over SQLite
(``privops.connectors.reference``), which are complete examples of every action.
"""

from __future__ import annotations

from privops.adapters.datamap_file import load_datamap
from privops.connectors.sdk import (
    REGISTRY,
    AgeLimit,
    Answer,
    Connector,
    ConnectorRunner,
    TransientError,
    TransientRetry,
    age_limits,
    serve_metrics,
)
from privops.core.records import (
    Erase,
    Export,
    LegalHoldState,
    LiftRestriction,
    Rectify,
    Restrict,
    SearchPreserved,
    Task,
)

__all__ = [
    "REGISTRY",
    "AgeLimit",
    "Answer",
    "Connector",
    "ConnectorRunner",
    "Erase",
    "Export",
    "LegalHoldState",
    "LiftRestriction",
    "Rectify",
    "Restrict",
    "SearchPreserved",
    "Task",
    "TransientError",
    "TransientRetry",
    "age_limits",
    "load_datamap",
    "serve_metrics",
]
