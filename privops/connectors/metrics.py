"""The connector metrics, on a registry of their own.

A connector process is not the privops worker: its metrics must never mix with the
worker's registry, and their labels stay bounded to the vocabulary (system, action,
outcome, skip reason), so no identifier can become a label.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()

KEY_SKIP_REASONS: Final = ("shredded_key", "tampered_field", "malformed_field")
"""Skip reasons of a task whose personal fields do not open (the field errors' reasons):
under a key an erasure destroyed (a stale re-send), or not authentic. Never executed."""


def _counter(name: str, doc: str, *labels: str) -> Counter:
    return Counter(name, doc, labels, registry=REGISTRY)


TASKS = _counter(
    "privops_connector_tasks_total",
    "Tasks a connector handled, by outcome (duplicates included, answered from the ledger).",
    "system",
    "action",
    "outcome",
)
TASK_SECONDS = Histogram(
    "privops_connector_task_seconds",
    "Time a connector spent executing one task delivery, in-process retries included.",
    ["system", "action"],
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DUPLICATES = _counter(
    "privops_connector_duplicates_total",
    "Re-sent or redelivered tasks answered from the ledger without executing again.",
    "system",
)
LEDGER_UNREADABLE = _counter(
    "privops_connector_ledger_unreadable_total",
    "Tasks whose kept answer in the ledger could not be read (a record type or model this "
    "runner does not know, JSON cut short): executed again, the new answer kept instead.",
    "system",
)
SKIPPED = _counter(
    "privops_connector_skipped_total",
    "Messages on a task topic that were not a usable task for this connector, by reason: "
    "undecodable, unknown_schema, not_a_task, wrong_system, superseded (a later attempt "
    "in the same fetch is executed instead), or a task whose fields do not open "
    "(shredded_key: its subject was erased; tampered_field, malformed_field).",
    "system",
    "reason",
)
TRANSIENT_RETRIES = _counter(
    "privops_connector_transient_retries_total",
    "In-process retries after a connector raised TransientError.",
    "system",
    "action",
)


KEY_RETRIES = _counter(
    "privops_connector_key_retries_total",
    "In-process retries after a subject's key could not be had (key service unreachable "
    "or busy); once they run out the task is answered TaskFailed(retryable=True).",
    "system",
)


HOLD_OUTCOMES: Final = (
    "held",
    "preserved",
    "released",
    "unopened",
    "ignored",
    "skipped",
    "failed",
)
"""What became of a record on ``privacy.legal-holds.<system>``: applied (``held``, or
``preserved`` for a search's preservation; ``unopened`` when its identifiers' or
details' key is gone and it went on without them), a tombstone applied (``released``),
received by a connector that does not implement holds or preservation (``ignored``),
decoded but not a hold record of this system (``skipped``), or not applied now
(``failed``, per try: the connector raised, or a keyed record does not decode; tried
again until it applies)."""

HOLD_RECORDS = _counter(
    "privops_connector_hold_records_total",
    "Records read from the system's legal-holds topic, by what became of them: held, "
    "preserved (a search's finds), released, unopened, ignored, skipped, failed.",
    "system",
    "outcome",
)


def _gauge(name: str, doc: str) -> Gauge:
    return Gauge(name, doc, ["system"], registry=REGISTRY)


HOLDS = _gauge(
    "privops_connector_legal_holds",
    "Subjects a legal hold keeps something of at this system, as the connector applies them.",
)
HOLDS_READY = _gauge(
    "privops_connector_holds_ready",
    "1 once the legal-holds topic is read to the end offsets found at start and every "
    "record read is applied: deletion by age may run. 0 before, and while one fails.",
)
HOLDS_IGNORED = _gauge(
    "privops_connector_holds_ignored",
    "1 when the connector does not implement hold and release: legal holds are not applied "
    "at this system, and its deletion by age deletes held data.",
)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Serve the connector metrics (``/metrics``) on a background thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)


def metric_value(name: str, **labels: str) -> float:
    """A sample of the connector registry (0 when absent): for tests and progress output."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
