"""Every privops Prometheus metric, defined once, on a registry of our own.

Label values are bounded: each goes through a helper that checks it against a fixed
vocabulary and maps anything else to ``"other"``, so a subject id, an e-mail address or an
exception message can never become a time series. Label combinations drawn from the
enums are created at import so dashboards and alerts see series at 0 before traffic.

The worker serves ``render()`` at ``GET /metrics``. faust's own Prometheus sensor is meant
to share ``REGISTRY`` under ``FAUST_SENSOR_PREFIX``::

    setup_prometheus_sensors(app, registry=metrics.REGISTRY,
                             name_prefix=metrics.FAUST_SENSOR_PREFIX)

which exposes e.g. ``privops_faust_messages_received_total`` next to ours.
"""

from __future__ import annotations

import platform
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from privops import __version__
from privops.core.request import Reason
from privops.core.topics import ingest_inputs, workflow_inputs
from privops.core.vocab import (
    OPEN_STATES,
    TERMINAL_STATES,
    Channel,
    ConsentStatus,
    Purpose,
    RequestState,
    RequestType,
    System,
)

REGISTRY = CollectorRegistry()

OTHER = "other"
FAUST_SENSOR_PREFIX = "privops_faust"
UK = ZoneInfo("Europe/London")

# --------------------------------------------------------------------------------------
# Label vocabularies that have no home in privops.core.vocab (metrics-only reasons/actions).


class DeadLetterReason(StrEnum):
    undecodable = "undecodable"
    unknown_schema = "unknown_schema"
    invalid_record = "invalid_record"
    missing_identifier = "missing_identifier"
    unknown_value = "unknown_value"
    wrong_topic = "wrong_topic"
    undeclared_disclosure = "undeclared_disclosure"
    unknown_record = "unknown_record"
    # An upstream event on another partition than its subject's (a producer that does
    # not partition by murmur2 of the key, as the Java client does).
    wrong_partition = "wrong_partition"
    # An upstream event keyed by something else than the subject id it carries.
    wrong_key = "wrong_key"
    # An upstream event dated ahead of the worker's clock by more than a clock's skew
    # (privops.core.facts.MAX_CLOCK_SKEW).
    implausible_time = "implausible_time"
    # Encrypted personal fields (privops.core.fieldcrypt): the key is gone, the value
    # does not authenticate where it is, or a personal field is not ciphertext.
    shredded_key = "shredded_key"
    tampered_field = "tampered_field"
    malformed_field = "malformed_field"


class AuditAction(StrEnum):
    """Audit actions as counted; the audit module's action names should match these."""

    consent_changed = "consent_changed"
    request_received = "request_received"
    request_transitioned = "request_transitioned"
    task_sent = "task_sent"
    task_answered = "task_answered"
    task_retried = "task_retried"
    task_escalated = "task_escalated"
    legal_hold_placed = "legal_hold_placed"
    legal_hold_released = "legal_hold_released"
    deadline_extended = "deadline_extended"
    deadline_alert = "deadline_alert"
    notification_sent = "notification_sent"
    command_rejected = "command_rejected"
    dead_lettered = "dead_lettered"
    export_refused = "export_refused"
    keys_shredded = "keys_shredded"
    retained_outside_task = "retained_outside_task"
    request_record_deleted = "request_record_deleted"
    access_withheld = "access_withheld"
    notification_withheld = "notification_withheld"
    response_review_required = "response_review_required"
    transmission_required = "transmission_required"
    export_redacted = "export_redacted"
    response_approved = "response_approved"
    search_preserved = "search_preserved"
    request_refused = "request_refused"
    search_released = "search_released"
    categories_not_mapped = "categories_not_mapped"
    erasure_waiting = "erasure_waiting"
    erasure_resumed = "erasure_resumed"


class EventSource(StrEnum):
    """Where a consumed event came from: a business system or a privops input topic."""

    orders = "orders"
    crm = "crm"
    telephony = "telephony"
    marketing = "marketing"
    web = "web"
    cctv = "cctv"
    commands = "commands"
    task_results = "task_results"


INPUT_TOPICS: tuple[str, ...] = (*ingest_inputs(), *workflow_inputs())
"""What the worker's agents read as their groups (privops.core.topics): a lag or dead
letter on one is labelled with its name (the request ticks: behind on them, deadlines
wait; the subject directives: behind on them, an erasure's identity clean-up waits)."""
KNOWN_TOPICS: frozenset[str] = frozenset(
    {
        *INPUT_TOPICS,
        *(f"privacy.tasks.{s.value}" for s in System),
        "privacy.consent-state",
        "privacy.audit",
        "privacy.alerts",
        "privacy.notifications",
        "privacy.deadletter",
    }
)

#: Record names from the contract (DESIGN.md section 4); system event types are added
#: from the schema catalogue at start-up via ``register_event_types``.
_CONTRACT_EVENT_TYPES = (
    "RequestSubmitted",
    "IdentityVerified",
    "ClarificationRequested",
    "ClarificationReceived",
    "DeadlineExtended",
    "LegalHoldPlaced",
    "LegalHoldReleased",
    "RequestCancelled",
    "TaskCompleted",
    "TaskFailed",
    "TaskRetained",
    "NotFound",
)
MAX_EVENT_TYPES = 256
_event_types: set[str] = set(_CONTRACT_EVENT_TYPES)


def _values(*enums: Iterable[StrEnum]) -> frozenset[str]:
    return frozenset(member.value for enum in enums for member in enum)


SYSTEMS = _values(System)
CHANNELS = _values(Channel)
PURPOSES = _values(Purpose)
CONSENT_STATUSES = _values(ConsentStatus)
REQUEST_TYPES = _values(RequestType)
REQUEST_STATES = _values(RequestState)
OPEN_REQUEST_STATES = _values(OPEN_STATES)
OUTCOMES = _values(TERMINAL_STATES)
SOURCES = _values(EventSource)
DEADLETTER_REASONS = _values(DeadLetterReason)
# The workflow's rejection codes, signature checks included (privops.core.request.Reason).
REJECTION_REASONS = _values(Reason)
AUDIT_ACTIONS = _values(AuditAction)
AGENTS = frozenset({"ingest", "workflow"})
AGENT_STAGES = frozenset({"decide", "flush"})

# --------------------------------------------------------------------------------------
# Label helpers: the only way a value becomes a label.


def bounded(value: object, allowed: Iterable[str]) -> str:
    """``value`` as a label if it is in ``allowed``, else ``"other"``."""
    text = value.value if isinstance(value, StrEnum) else value
    return text if isinstance(text, str) and text in allowed else OTHER


def system_label(value: object) -> str:
    return bounded(value, SYSTEMS)


def channel_label(value: object) -> str:
    return bounded(value, CHANNELS)


def purpose_label(value: object) -> str:
    return bounded(value, PURPOSES)


def consent_status_label(value: object) -> str:
    return bounded(value, CONSENT_STATUSES)


def request_type_label(value: object) -> str:
    return bounded(value, REQUEST_TYPES)


def request_state_label(value: object) -> str:
    return bounded(value, REQUEST_STATES)


def outcome_label(value: object) -> str:
    return bounded(value, OUTCOMES)


def source_label(value: object) -> str:
    return bounded(value, SOURCES)


def topic_label(value: object) -> str:
    return bounded(value, KNOWN_TOPICS)


def event_type_label(value: object) -> str:
    return bounded(value, _event_types)


def deadletter_reason_label(value: object) -> str:
    return bounded(value, DEADLETTER_REASONS)


def rejection_reason_label(value: object) -> str:
    return bounded(value, REJECTION_REASONS)


def audit_action_label(value: object) -> str:
    return bounded(value, AUDIT_ACTIONS)


def register_event_types(names: Iterable[str]) -> None:
    """Allow record names from the schema catalogue as ``type`` labels (capped)."""
    for name in names:
        if len(_event_types) >= MAX_EVENT_TYPES:
            break
        if name.isidentifier() and len(name) <= 64:
            _event_types.add(name)


# --------------------------------------------------------------------------------------
# Metric definitions (DESIGN.md section 7). Counters get ``_total`` from prometheus_client.

EVENTS_CONSUMED = Counter(
    "privops_events_consumed",
    "Events consumed from input topics, by source and record type.",
    ["source", "type"],
    registry=REGISTRY,
)
CONSENT_CHANGES = Counter(
    "privops_consent_changes",
    "Consent or preference state changes, by purpose, channel and new status.",
    ["purpose", "channel", "status"],
    registry=REGISTRY,
)
REQUESTS = Counter(
    "privops_requests",
    "Rights requests that reached a terminal state, by type and outcome.",
    ["type", "outcome"],
    registry=REGISTRY,
)
REQUESTS_OPEN = Gauge(
    "privops_requests_open",
    "Rights requests currently open, by type and lifecycle state.",
    ["type", "state"],
    registry=REGISTRY,
)
# Up to three days: systems' SLAs reach a day (cctv 86,400 s) before any re-send, and an
# answer slower than the last bucket would read as that bucket on the p95 panel.
TASK_LATENCY_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600,
    7200, 21600, 43200, 86400, 172800, 259200,
)  # fmt: skip
REQUEST_TASK_LATENCY = Histogram(
    "privops_request_task_latency_seconds",
    "Time from a task being sent to a system until its answer, by system.",
    ["system"],
    buckets=TASK_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TASKS_PENDING = Gauge(
    "privops_tasks_pending",
    "Tasks sent to a system and not yet answered, by system.",
    ["system"],
    registry=REGISTRY,
)
TASK_RETRIES = Counter(
    "privops_task_retries",
    "Tasks re-sent after a system missed its SLA, by system.",
    ["system"],
    registry=REGISTRY,
)
TASK_ESCALATIONS = Counter(
    "privops_task_escalations",
    "Tasks escalated to the DPO, by system: silent after the retry budget ran out, or "
    "answered failed for good.",
    ["system"],
    registry=REGISTRY,
)
DEADLETTERS = Counter(
    "privops_deadletter",
    "Input records sent to privacy.deadletter, by source topic and reason.",
    ["topic", "reason"],
    registry=REGISTRY,
)
AUDIT_EVENTS = Counter(
    "privops_audit_events",
    "Audit events published on privacy.audit, by action.",
    ["action"],
    registry=REGISTRY,
)
COMMANDS_REJECTED = Counter(
    "privops_commands_rejected",
    "Commands refused with an audit event, by reason.",
    ["reason"],
    registry=REGISTRY,
)
PLAINTEXT_COMMAND_FIELDS = Counter(
    "privops_plaintext_command_fields",
    "The DPO's text in commands accepted in plaintext (not sealed by the key service: "
    "an older CLI, a script; PRIVOPS_PERSONAL_PLAINTEXT=accept).",
    registry=REGISTRY,
)
PLAINTEXT_PERSONAL_FIELDS = Counter(
    "privops_plaintext_personal_fields",
    "Personal fields of upstream events accepted in plaintext (not encrypted under the "
    "subject's key: PRIVOPS_PERSONAL_PLAINTEXT=accept), by system.",
    ["system"],
    registry=REGISTRY,
)
EVENT_PARTS = frozenset({"retention_fact", "identifiers", "grant"})
EVENT_PARTS_NOT_TAKEN = Counter(
    "privops_event_parts_not_taken",
    "Parts of upstream events left out because the data map does not let their system "
    "record them (a retention fact of a category it does not hold, an email or phone it "
    "does not know subjects by, a permission to contact it may not grant), by system and "
    "part; the rest of each event is taken.",
    ["system", "part"],
    registry=REGISTRY,
)
AGENT_BUSY_SECONDS = Counter(
    "privops_agent_busy_seconds",
    "Seconds the worker's agents spent on their inputs, by agent (ingest, workflow) and "
    "stage (decide: each input's decision; flush: writing what was decided, the local "
    "store's write once delivered included). The worker runs both on one event loop, so "
    "their summed rate is how busy it is: near 1, add workers.",
    ["agent", "stage"],
    registry=REGISTRY,
)
AGENT_STALLED_SECONDS = Gauge(
    "privops_agent_stalled_seconds",
    "Seconds an agent has not moved on: the longer of how long its fetched input has "
    "waited with none of it taken and how long its current chunk has taken (0 when "
    "nothing waits and it works on nothing). Under load it takes and finishes a chunk "
    "every few hundred milliseconds; minutes mean it is stuck, and /health says so.",
    ["agent"],
    registry=REGISTRY,
)
PERSONAL_FIELDS_OPEN_SECONDS = Counter(
    "privops_personal_fields_open_seconds",
    "Seconds the worker spent opening the encrypted personal fields of what it reads "
    "(upstream events, task results, commands) once found and parsed: key lookups, "
    "waits for the key store included, and decryption; part of the agents' decide stage.",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "privops_consumer_lag",
    "Messages not yet processed: from the first offset the worker has not decided and "
    "delivered (after its last acknowledgement, else the committed offset) to the log "
    "end, summed per topic over the partitions it owns.",
    ["topic"],
    registry=REGISTRY,
)
WORKER_UP = Gauge(
    "privops_worker_up",
    "1 while the privops worker runs well: the broker and registry answer and every agent "
    "moves on; 0 while it starts, stops, or reports such a problem.",
    registry=REGISTRY,
)
WORKER_READY = Gauge(
    "privops_worker_ready",
    "1 while the worker serves (its /health answers 200): up, and its tables and global "
    "views recovered and subject keys loaded; 0 during a start or a takeover's recovery.",
    registry=REGISTRY,
)
BUILD_INFO = Info("privops_build", "privops build information.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})
SIGNERS_MISSING = "missing"
SIGNERS_FAIL_CLOSED = "fail-closed"
SIGNERS_INFO = Gauge(
    "privops_signers_info",
    "1 for the signer set the worker trusts from its signers file, by fingerprint (16 hex "
    "of a SHA-256 over its keys, their owners and revocations; 'missing': no file; "
    "'fail-closed': unreadable, invalid or unsafe, so no DPO key is trusted). Workers "
    "showing different ones take different DPOs' commands (PrivopsSignersDiffer).",
    ["fingerprint"],
    registry=REGISTRY,
)

# --------------------------------------------------------------------------------------
# Deadlines: a snapshot histogram kept from due dates, so a sweep costs O(changes).

DSAR_DUE_BUCKETS: tuple[float, ...] = (-30, -7, -1, 0, 1, 3, 7, 14, 21, 30, 60, 90)


def uk_today() -> date:
    return datetime.now(tz=UK).date()


class _DueTally(Collector):
    """A tally of open items' due dates, whose families are computed at scrape time, so
    they stay right as days pass without any sweep touching every item."""

    def __init__(self, today: Callable[[], date] = uk_today) -> None:
        self._today = today
        self._due: Tally[date] = Tally()
        self._lock = threading.Lock()

    def add(self, due: date) -> None:
        with self._lock:
            self._due[due] += 1

    def remove(self, due: date) -> None:
        with self._lock:
            self._due[due] -= 1
            if self._due[due] <= 0:
                del self._due[due]

    def move(self, old: date, new: date) -> None:
        self.remove(old)
        self.add(new)

    def clear(self) -> None:
        with self._lock:
            self._due.clear()

    def due_in_days(self) -> list[tuple[int, int]]:
        """(days to due, number of requests) pairs; negative days are overdue."""
        today = self._today()
        with self._lock:
            return [((due - today).days, n) for due, n in self._due.items()]

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families(self.due_in_days())

    def _families(self, pairs: list[tuple[int, int]]) -> Iterator[Metric]:
        raise NotImplementedError


class DeadlineBook(_DueTally):
    """Open rights requests' due dates, exposed as the current distribution of days to due.

    ``privops_dsar_due_in_days`` is a histogram of *open* requests (not a cumulative
    history: do not ``rate()`` it) and ``privops_dsar_overdue`` counts those whose due
    date (UK local) has passed.
    """

    def _families(self, pairs: list[tuple[int, int]]) -> Iterator[Metric]:
        buckets: list[tuple[str, float]] = [
            (repr(float(b)), float(sum(n for d, n in pairs if d <= b))) for b in DSAR_DUE_BUCKETS
        ]  # le as Prometheus 3 normalises it ("3.0"), so rules match on 2.x and 3.x
        total = sum(n for _, n in pairs)
        buckets.append(("+Inf", float(total)))
        due = HistogramMetricFamily(
            "privops_dsar_due_in_days",
            "Open requests by days until their legal due date (snapshot; negative = late).",
            buckets=buckets,
        )
        # prometheus_client leaves out _count/_sum when buckets go negative; we want them.
        due.add_sample("privops_dsar_due_in_days_count", {}, float(total))
        due.add_sample("privops_dsar_due_in_days_sum", {}, float(sum(d * n for d, n in pairs)))
        yield due
        yield GaugeMetricFamily(
            "privops_dsar_overdue",
            "Open requests past their legal due date.",
            value=float(sum(n for d, n in pairs if d < 0)),
        )


DSAR_DEADLINES = DeadlineBook()
REGISTRY.register(DSAR_DEADLINES)


class ComplaintBook(_DueTally):
    """Acknowledged complaints still open, by the date their acknowledgement told the
    complainant a response would come (DPA 2018 s.164A sets a limit on the
    acknowledgement only; that date is privops' own promise, so its passing is watched
    here, not raised as a legal deadline on privacy.alerts)."""

    def _families(self, pairs: list[tuple[int, int]]) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "privops_complaints_awaiting_response",
            "Acknowledged complaints still open (their outcome not yet given).",
            value=float(sum(n for _, n in pairs)),
        )
        yield GaugeMetricFamily(
            "privops_complaints_response_overdue",
            "Acknowledged complaints still open past the response date their acknowledgement gave.",
            value=float(sum(n for d, n in pairs if d < 0)),
        )


COMPLAINTS = ComplaintBook()
REGISTRY.register(COMPLAINTS)


class IdentityBook(_DueTally):
    """Open requests waiting for the subject's identity, by the day each was received
    (the tally's dates): no clock runs until the identity comes, so no deadline alert
    does either, and the ICO expects the ID asked for at once (alert
    ``PrivopsIdentityAwaited``)."""

    def _families(self, pairs: list[tuple[int, int]]) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "privops_requests_awaiting_identity",
            "Open requests waiting for the subject's identity (no clock runs yet).",
            value=float(sum(n for _, n in pairs)),
        )
        yield GaugeMetricFamily(
            "privops_requests_awaiting_identity_oldest_days",
            "Days since the oldest request waiting for its subject's identity was received.",
            value=float(max((-d for d, _ in pairs), default=0)),
        )


IDENTITY_AWAITED = IdentityBook()
REGISTRY.register(IDENTITY_AWAITED)

# --------------------------------------------------------------------------------------
# Recording helpers: call sites pass domain values, labels are bounded here.


# Children by label values, so the hot path does one dict lookup per count instead of
# labels()' keyword checks and lock. Keys are bounded labels, so the dict stays small.
_children: dict[tuple[object, ...], Any] = {}
_M = TypeVar("_M", Counter, Gauge, Histogram)


def _child(metric: _M, *labels: str) -> _M:
    """``metric.labels(*labels)``, remembered (labels in the metric's order). Only for
    metrics whose children are never removed."""
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return cast(_M, child)


def count_event(source: object, event_type: object) -> None:
    _child(EVENTS_CONSUMED, source_label(source), event_type_label(event_type)).inc()


def count_consent_change(purpose: object, channel: object, status: object) -> None:
    _child(
        CONSENT_CHANGES,
        purpose_label(purpose),
        channel_label(channel),
        consent_status_label(status),
    ).inc()


def count_request(request_type: object, outcome: object) -> None:
    REQUESTS.labels(type=request_type_label(request_type), outcome=outcome_label(outcome)).inc()


def set_requests_open(request_type: object, state: object, count: int) -> None:
    _child(REQUESTS_OPEN, request_type_label(request_type), request_state_label(state)).set(count)


def observe_task_latency(system: object, seconds: float) -> None:
    _child(REQUEST_TASK_LATENCY, system_label(system)).observe(seconds)


def set_tasks_pending(system: object, count: int) -> None:
    _child(TASKS_PENDING, system_label(system)).set(count)


def count_task_retry(system: object) -> None:
    _child(TASK_RETRIES, system_label(system)).inc()


def count_task_escalation(system: object) -> None:
    TASK_ESCALATIONS.labels(system=system_label(system)).inc()


def count_deadletter(topic: object, reason: object) -> None:
    _child(DEADLETTERS, topic_label(topic), deadletter_reason_label(reason)).inc()


def count_audit_event(action: object) -> None:
    _child(AUDIT_EVENTS, audit_action_label(action)).inc()


def count_command_rejected(reason: object) -> None:
    COMMANDS_REJECTED.labels(reason=rejection_reason_label(reason)).inc()


def add_agent_busy(agent: object, stage: object, seconds: float) -> None:
    _child(AGENT_BUSY_SECONDS, bounded(agent, AGENTS), bounded(stage, AGENT_STAGES)).inc(seconds)


def set_agent_stalled(agent: object, seconds: float) -> None:
    AGENT_STALLED_SECONDS.labels(agent=bounded(agent, AGENTS)).set(seconds)


def add_personal_fields_open(seconds: float) -> None:
    PERSONAL_FIELDS_OPEN_SECONDS.inc(seconds)


def count_plaintext_command_fields(fields: int = 1) -> None:
    PLAINTEXT_COMMAND_FIELDS.inc(fields)


def count_event_part_not_taken(system: object, part: str) -> None:
    _child(EVENT_PARTS_NOT_TAKEN, system_label(system), bounded(part, EVENT_PARTS)).inc()


def count_plaintext_personal_fields(system: object, fields: int = 1) -> None:
    _child(PLAINTEXT_PERSONAL_FIELDS, system_label(system)).inc(fields)


def record_consumer_lag(partition_lags: Iterable[tuple[str, int]]) -> None:
    """Set lag per topic from (topic, lag) pairs, one per assigned partition; a topic
    this worker no longer reads reads 0 (its partitions moved: another worker's lag now),
    not the last lag it had, which a sum over workers would count twice."""
    per_topic: Tally[str] = Tally()
    for topic, lag in partition_lags:
        per_topic[topic_label(topic)] += max(lag, 0)
    for topic in _LAG_TOPICS - per_topic.keys():
        CONSUMER_LAG.labels(topic=topic).set(0)
    for topic, lag in per_topic.items():
        CONSUMER_LAG.labels(topic=topic).set(lag)
    _LAG_TOPICS.update(per_topic)


_LAG_TOPICS: set[str] = set()  # topic labels the lag gauge was ever set for (bounded)


def set_worker_up(up: bool) -> None:
    WORKER_UP.set(1 if up else 0)


def set_worker_ready(ready: bool) -> None:
    WORKER_READY.set(1 if ready else 0)


_SIGNERS_MARKERS = frozenset({SIGNERS_MISSING, SIGNERS_FAIL_CLOSED})
_SIGNERS_SHOWN: set[str] = set()  # the fingerprint label set now (one at most)


def set_signers_fingerprint(fingerprint: str) -> None:
    """Show ``fingerprint`` as the worker's only signer set. The child of the set it
    trusted before is removed: left at 1, the worker would count as two sets (and the
    series would grow with each change of the file)."""
    hex_digits = len(fingerprint) == 16 and all(c in "0123456789abcdef" for c in fingerprint)
    label = fingerprint if hex_digits else bounded(fingerprint, _SIGNERS_MARKERS)
    for old in _SIGNERS_SHOWN - {label}:
        SIGNERS_INFO.remove(old)
    SIGNERS_INFO.labels(fingerprint=label).set(1)
    _SIGNERS_SHOWN.clear()
    _SIGNERS_SHOWN.add(label)


def render() -> tuple[bytes, str]:
    """The exposition body and its content type, for ``GET /metrics``."""
    return generate_latest(REGISTRY), CONTENT_TYPE_PLAIN_0_0_4


def metric_names(registry: CollectorRegistry = REGISTRY) -> frozenset[str]:
    """Every sample name ``registry`` can expose (``_total``, ``_bucket``, ... included)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "info": ("_info",),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return frozenset(names)


def _preinitialise() -> None:
    for request_type in REQUEST_TYPES:
        for outcome in OUTCOMES:
            REQUESTS.labels(type=request_type, outcome=outcome)
        for state in OPEN_REQUEST_STATES:
            REQUESTS_OPEN.labels(type=request_type, state=state)
    for purpose in PURPOSES:
        for channel in CHANNELS:
            for status in CONSENT_STATUSES:
                CONSENT_CHANGES.labels(purpose=purpose, channel=channel, status=status)
    for system in SYSTEMS:
        REQUEST_TASK_LATENCY.labels(system=system)
        TASKS_PENDING.labels(system=system)
        TASK_RETRIES.labels(system=system)
        TASK_ESCALATIONS.labels(system=system)
        PLAINTEXT_PERSONAL_FIELDS.labels(system=system)
    for topic in INPUT_TOPICS:
        for reason in DEADLETTER_REASONS:
            DEADLETTERS.labels(topic=topic, reason=reason)
    for action in AUDIT_ACTIONS:
        AUDIT_EVENTS.labels(action=action)
    for reason in REJECTION_REASONS:
        COMMANDS_REJECTED.labels(reason=reason)
    WORKER_UP.set(0)


def _preinitialise_event_parts() -> None:
    for system in SYSTEMS:
        for part in EVENT_PARTS:
            EVENT_PARTS_NOT_TAKEN.labels(system=system, part=part)


def _preinitialise_agents() -> None:
    for agent in AGENTS:
        AGENT_STALLED_SECONDS.labels(agent=agent)
        for stage in AGENT_STAGES:
            AGENT_BUSY_SECONDS.labels(agent=agent, stage=stage)


_preinitialise()
_preinitialise_agents()
_preinitialise_event_parts()
