"""privops.adapters.metrics: every DESIGN.md section 7 name is exposed, labels stay bounded."""

from __future__ import annotations

import ast
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from privops.adapters import metrics
from privops.core.topics import ingest_inputs, workflow_inputs
from privops.core.vocab import Channel, ConsentStatus, Purpose, RequestState, RequestType, System

DESIGN_NAMES = [
    "privops_events_consumed_total",
    "privops_consent_changes_total",
    "privops_requests_total",
    "privops_requests_open",
    "privops_request_task_latency_seconds",
    "privops_tasks_pending",
    "privops_task_retries_total",
    "privops_task_escalations_total",
    "privops_dsar_due_in_days",
    "privops_dsar_overdue",
    "privops_deadletter_total",
    "privops_audit_events_total",
    "privops_commands_rejected_total",
    "privops_consumer_lag",
    "privops_worker_up",
    "privops_build_info",
]


def value(name: str, **labels: str) -> float:
    sample = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


def test_render_exposes_every_design_metric() -> None:
    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in DESIGN_NAMES:
        assert f"# TYPE {name} " in text, name


def test_metrics_live_on_a_dedicated_registry() -> None:
    from prometheus_client import REGISTRY as GLOBAL

    assert metrics.REGISTRY is not GLOBAL
    assert GLOBAL.get_sample_value("privops_worker_up") is None


def test_enum_combinations_are_preinitialised() -> None:
    """Every label combination exists from the start (other tests in this process, e.g. the
    agent tests rejecting forged signatures, may have moved them: presence is checked)."""
    text = metrics.render()[0].decode()
    for system in System:
        assert f'privops_tasks_pending{{system="{system}"}} ' in text
        assert f'privops_task_escalations_total{{system="{system}"}} ' in text
    assert 'privops_requests_total{outcome="partially_completed",type="erasure"} ' in text
    assert 'privops_requests_open{state="awaiting_systems",type="access"} 0.0' in text
    assert 'privops_consent_changes_total{channel="sms",purpose="marketing",status="objected"}' in (
        text
    )
    for reason in ("bad_signature", "unsigned", "not_restricted", "dates_out_of_order"):
        assert f'privops_commands_rejected_total{{reason="{reason}"}} ' in text


@pytest.mark.parametrize(
    ("helper", "good"),
    [
        (metrics.system_label, System.crm),
        (metrics.channel_label, Channel.sms),
        (metrics.purpose_label, Purpose.profiling),
        (metrics.consent_status_label, ConsentStatus.objected),
        (metrics.request_type_label, RequestType.restriction_lift),
        (metrics.request_state_label, RequestState.awaiting_systems),
        (metrics.outcome_label, RequestState.partially_completed),
        (metrics.source_label, "task_results"),
        (metrics.topic_label, "privacy.task-results.crm"),
        (metrics.event_type_label, "RequestSubmitted"),
        (metrics.deadletter_reason_label, metrics.DeadLetterReason.unknown_schema),
        (metrics.rejection_reason_label, "not_restricted"),
        (metrics.audit_action_label, metrics.AuditAction.task_escalated),
    ],
)
def test_label_helpers_keep_known_values_and_map_the_rest_to_other(
    helper: Callable[[object], str], good: object
) -> None:
    assert helper(good) == str(good)
    for bad in ("alice@example.com", "+447700900123", "subj-1234", "", None, 42, "CRM"):
        assert helper(bad) == "other"


def test_every_topic_the_agents_read_has_its_own_label() -> None:
    """The subject directives, an input of the ingest agent, were labelled ``other`` on
    the lag gauge and the dead-letter counter (review, session 33)."""
    for topic in (*ingest_inputs(), *workflow_inputs()):
        assert metrics.topic_label(topic) == topic


def test_outcome_label_accepts_only_terminal_states() -> None:
    assert metrics.outcome_label(RequestState.in_progress) == "other"


def test_recording_helpers_bound_labels() -> None:
    before = value("privops_deadletter_total", topic="other", reason="other")
    metrics.count_deadletter("bob@example.com", "ValueError: bad byte 0x00 for bob")
    assert value("privops_deadletter_total", topic="other", reason="other") == before + 1

    before = value("privops_events_consumed_total", source="other", type="other")
    metrics.count_event("subj-42", "Jane Doe")
    assert value("privops_events_consumed_total", source="other", type="other") == before + 1

    before = value("privops_task_retries_total", system="crm")
    metrics.count_task_retry(System.crm)
    assert value("privops_task_retries_total", system="crm") == before + 1

    metrics.set_tasks_pending("orders", 3)
    assert value("privops_tasks_pending", system="orders") == 3
    metrics.set_tasks_pending("orders", 0)

    text = metrics.render()[0].decode()
    for raw in ("bob@example.com", "subj-42", "Jane Doe", "ValueError"):
        assert raw not in text


def test_event_types_come_from_a_registered_bounded_set() -> None:
    assert metrics.event_type_label("OrderPlacedForTest") == "other"
    metrics.register_event_types(["OrderPlacedForTest", "not an identifier"])
    assert metrics.event_type_label("OrderPlacedForTest") == "OrderPlacedForTest"
    assert metrics.event_type_label("not an identifier") == "other"


def test_consumer_lag_sums_partitions_per_topic() -> None:
    metrics.record_consumer_lag([("crm.events", 5), ("crm.events", 7), ("private-topic", 3)])
    assert value("privops_consumer_lag", topic="crm.events") == 12
    assert value("privops_consumer_lag", topic="other") == 3


def test_a_topic_no_longer_read_reads_no_lag() -> None:
    """Review, session 24: a worker left with no partitions of a topic kept exporting
    its last lag for ever (a sum over workers counted it twice, and the lag alert could
    fire with nothing behind)."""
    metrics.record_consumer_lag([("crm.events", 20_000)])
    metrics.record_consumer_lag([])
    assert value("privops_consumer_lag", topic="crm.events") == 0


def test_task_latency_buckets_reach_the_slowest_sla() -> None:
    """A cctv SLA is a day before any re-send: answers slower than the last bucket read as
    that bucket on the p95 panel (it ended at an hour)."""
    assert max(metrics.TASK_LATENCY_BUCKETS) >= 3 * 86_400


def test_worker_up_toggles() -> None:
    metrics.set_worker_up(True)
    assert value("privops_worker_up") == 1
    metrics.set_worker_up(False)
    assert value("privops_worker_up") == 0


def test_deadline_book_is_a_snapshot_that_follows_the_calendar() -> None:
    today = date(2026, 3, 2)
    book = metrics.DeadlineBook(today=lambda: today)
    registry = CollectorRegistry()
    registry.register(book)
    book.add(date(2026, 2, 20))  # 10 days late
    book.add(date(2026, 3, 2))  # due today
    book.add(date(2026, 3, 4))  # 2 days left
    book.add(date(2026, 3, 4))

    def bucket(le: str) -> float | None:
        return registry.get_sample_value("privops_dsar_due_in_days_bucket", {"le": le})

    assert bucket("-7.0") == 1
    assert bucket("-1.0") == 1
    assert bucket("0.0") == 2
    assert bucket("3.0") == 4
    assert bucket("+Inf") == 4
    assert registry.get_sample_value("privops_dsar_due_in_days_count") == 4
    assert registry.get_sample_value("privops_dsar_overdue") == 1

    book.remove(date(2026, 2, 20))
    book.move(date(2026, 3, 4), date(2026, 5, 4))
    assert registry.get_sample_value("privops_dsar_overdue") == 0
    assert bucket("3.0") == 2
    assert bucket("60.0") == 2
    assert bucket("90.0") == 3

    today = date(2026, 3, 5)
    assert registry.get_sample_value("privops_dsar_overdue") == 2


def test_complaint_book_counts_those_past_their_promised_response_date() -> None:
    today = date(2026, 3, 2)
    book = metrics.ComplaintBook(today=lambda: today)
    registry = CollectorRegistry()
    registry.register(book)
    book.add(date(2026, 3, 1))  # promised yesterday
    book.add(date(2026, 3, 2))  # promised today: not late yet
    assert registry.get_sample_value("privops_complaints_awaiting_response") == 2
    assert registry.get_sample_value("privops_complaints_response_overdue") == 1
    today = date(2026, 3, 3)
    assert registry.get_sample_value("privops_complaints_response_overdue") == 2
    book.remove(date(2026, 3, 1))
    assert registry.get_sample_value("privops_complaints_awaiting_response") == 1
    assert registry.get_sample_value("privops_complaints_response_overdue") == 1
    # The worker's registry has them.
    assert {
        "privops_complaints_awaiting_response",
        "privops_complaints_response_overdue",
    } <= metrics.metric_names()


def test_identity_book_gives_how_many_wait_and_the_oldest_wait() -> None:
    today = date(2026, 3, 20)
    book = metrics.IdentityBook(today=lambda: today)
    registry = CollectorRegistry()
    registry.register(book)
    assert registry.get_sample_value("privops_requests_awaiting_identity_oldest_days") == 0
    book.add(date(2026, 3, 2))
    book.add(date(2026, 3, 19))
    assert registry.get_sample_value("privops_requests_awaiting_identity") == 2
    assert registry.get_sample_value("privops_requests_awaiting_identity_oldest_days") == 18
    book.remove(date(2026, 3, 2))
    assert registry.get_sample_value("privops_requests_awaiting_identity_oldest_days") == 1
    assert {
        "privops_requests_awaiting_identity",
        "privops_requests_awaiting_identity_oldest_days",
    } <= metrics.metric_names()


def test_metric_names_lists_exposed_sample_names() -> None:
    names = metrics.metric_names()
    assert "privops_request_task_latency_seconds_bucket" in names
    assert "privops_dsar_due_in_days_bucket" in names
    assert "privops_events_consumed_total" in names
    assert "privops_build_info" in names


def test_plaintext_personal_fields_are_counted_per_system_and_nothing_else() -> None:
    text = metrics.render()[0].decode()
    for system in System:
        assert f'privops_plaintext_personal_fields_total{{system="{system}"}} ' in text
    before = value("privops_plaintext_personal_fields_total", system="crm")
    metrics.count_plaintext_personal_fields(System.crm, 2)
    assert value("privops_plaintext_personal_fields_total", system="crm") == before + 2
    before = value("privops_plaintext_personal_fields_total", system="other")
    metrics.count_plaintext_personal_fields("ann@example.com")
    assert value("privops_plaintext_personal_fields_total", system="other") == before + 1
    assert "ann@example.com" not in metrics.render()[0].decode()


# --- every audit action the code emits is counted as itself -------------------------------------

_ROOT = Path(__file__).resolve().parents[2]


def _constants(trees: dict[Path, ast.Module]) -> dict[str, str]:
    """Module-level NAME = "text" constants, by name (``KEYS_SHREDDED: Final = ...``)."""
    found: dict[str, str] = {}
    for tree in trees.values():
        for node in tree.body:
            target: ast.expr | None = None
            value_node: ast.expr | None = None
            if isinstance(node, ast.AnnAssign):
                target, value_node = node.target, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value_node = node.targets[0], node.value
            if (
                isinstance(target, ast.Name)
                and isinstance(value_node, ast.Constant)
                and isinstance(value_node.value, str)
            ):
                found[target.id] = value_node.value
    return found


def _emitted_audit_actions() -> dict[str, str]:
    """Each action AuditStep(...) or audit(action=...) is given in privops/, agents/ and
    streams/, with where; an action passed on from a step (``step.action``) is skipped."""
    trees = {
        path: ast.parse(path.read_text(), str(path))
        for folder in ("privops", "agents", "streams")
        for path in sorted((_ROOT / folder).rglob("*.py"))
    }
    constants = _constants(trees)
    actions: dict[str, str] = {}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            given = [k.value for k in node.keywords if k.arg == "action"]
            if name == "AuditStep" and node.args:
                given.append(node.args[0])
            elif name != "audit":
                continue
            where = f"{path.relative_to(_ROOT)}:{node.lineno}"
            for expr in given:
                if isinstance(expr, ast.Attribute) and expr.attr == "action":
                    continue
                for part in ast.walk(expr):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        actions[part.value] = where
                    elif isinstance(part, ast.Name | ast.Attribute):
                        ref = part.id if isinstance(part, ast.Name) else part.attr
                        if ref.isupper():
                            assert ref in constants, f"{where}: cannot tell what {ref} is"
                            actions[constants[ref]] = where
    return actions


def test_every_audit_action_the_code_emits_is_counted_as_itself() -> None:
    emitted = _emitted_audit_actions()
    assert {"retained_outside_task", "keys_shredded", "task_sent", "task_retried"} <= set(emitted)
    counted_as_other = {
        action: where
        for action, where in emitted.items()
        if metrics.audit_action_label(action) != action
    }
    assert counted_as_other == {}
