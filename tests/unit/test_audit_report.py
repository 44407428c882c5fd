"""The accountability report (privops.core.audit_report): how a period's rights requests
were handled, from audit steps alone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from privops.core.audit_report import ReportBuilder
from privops.core.records import AuditEvent

SEQ = count(1)
MARCH = datetime(2026, 3, 10, 10, tzinfo=UTC)


def step(
    rid: str | None, action: str, at: datetime, app: str = "privops", **fields: Any
) -> AuditEvent:
    return AuditEvent(
        audit_id=f"a-{next(SEQ)}",
        chain=f"{app}/{rid or 'sr_x'}",
        seq=1,
        request_id=rid,
        subject_ref="sr_x",
        actor="dpo",
        action=action,
        occurred_at=at,
        prev_hash="0" * 64,
        hash="1" * 64,
        **fields,
    )


def received(rid: str, kind: str, at: datetime = MARCH, app: str = "privops") -> AuditEvent:
    return step(rid, "request_received", at, app, after="received", reason=kind)


def closed(rid: str, state: str, at: datetime, app: str = "privops") -> AuditEvent:
    return step(rid, "request_transitioned", at, app, before="awaiting_systems", after=state)


def report(events: list[AuditEvent], chain: str = "") -> dict[str, Any]:
    builder = ReportBuilder(date(2026, 3, 1), date(2026, 3, 31), chain)
    for event in events:
        builder.add(event)
    return builder.report()


def test_a_periods_requests_with_how_each_closed_late_and_extended() -> None:
    day = timedelta(days=1)
    events = [
        received("E-1", "erasure"),
        step("E-1", "task_sent", MARCH),
        closed("E-1", "partially_completed", MARCH + 4 * day),
        received("E-2", "erasure", MARCH + day),
        closed("E-2", "completed", MARCH + 11 * day),
        received("A-1", "access"),
        step("A-1", "deadline_extended", MARCH + 2 * day, after="2026-06-10"),
        step("A-1", "deadline_alert", MARCH + 40 * day, after="deadline_approaching"),
        step("A-1", "deadline_alert", MARCH + 95 * day, after="deadline_breached"),
        received("A-2", "access"),
        step("A-2", "consent_changed", MARCH, after="withdrawn"),
        step(None, "consent_changed", MARCH, after="withdrawn"),
        step(None, "consent_changed", MARCH, after="granted"),
        step(None, "consent_changed", MARCH - 30 * day, after="granted"),  # February's
    ]
    out = report(events)
    assert out["app_ids"] == ["privops"]
    kinds = {row["request_type"]: row for row in out["by_type"]}
    assert set(kinds) == {"access", "erasure"}
    erasure = kinds["erasure"]
    assert (erasure["received"], erasure["closed"], erasure["open"]) == (2, 2, 0)
    assert (erasure["completed"], erasure["partially_completed"]) == (1, 1)
    assert erasure["days_to_close"] == {"median": 4, "p90": 10, "max": 10}
    access = kinds["access"]
    assert (access["received"], access["open"], access["late"], access["extended"]) == (2, 2, 1, 1)
    assert access["days_to_close"] == {"median": None, "p90": None, "max": None}
    assert out["total"]["received"] == 4
    assert out["total"]["late"] == 1
    assert out["consent_changes"] == {"granted": 1, "withdrawn": 2}


def test_a_request_counts_in_the_period_it_was_logged_in_by_its_uk_date() -> None:
    late_on_the_31st = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)  # 1 April in the UK (BST)
    first_of_march = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)  # GMT: still 1 March
    events = [
        received("X-1", "erasure", first_of_march),
        received("X-2", "erasure", late_on_the_31st),
        received("X-0", "erasure", datetime(2026, 2, 28, 12, tzinfo=UTC)),
        closed("X-0", "completed", MARCH),  # closed in March, but February's request
    ]
    out = report(events)
    assert out["total"]["received"] == 1
    assert out["total"]["closed"] == 0


def test_a_follow_up_scheduled_on_a_parent_is_not_a_request_received() -> None:
    events = [
        received("P-1", "erasure"),
        step("P-1", "request_received", MARCH, after="followup_scheduled", reason="follow-up"),
        received("P-1-f", "erasure", MARCH + timedelta(days=2)),
    ]
    assert report(events)["total"]["received"] == 2


def test_deployments_are_told_apart_and_one_can_be_chosen() -> None:
    events = [
        received("R-1", "access", app="privops"),
        received("R-1", "access", app="privops-demo"),  # the same id, another deployment
        closed("R-1", "completed", MARCH, app="privops-demo"),
    ]
    both = report(events)
    assert both["app_ids"] == ["privops", "privops-demo"]
    assert (both["total"]["received"], both["total"]["closed"]) == (2, 1)
    one = report(events, chain="privops/")
    assert one["app_ids"] == ["privops"]
    assert (one["total"]["received"], one["total"]["closed"]) == (1, 0)


def test_the_first_closing_counts_and_an_empty_period_is_all_zero() -> None:
    events = [
        received("C-1", "complaint"),
        closed("C-1", "completed", MARCH + timedelta(days=3)),
        closed("C-1", "cancelled", MARCH + timedelta(days=9)),  # a replayed step cannot move it
    ]
    row = report(events)["by_type"][0]
    assert (row["completed"], row["cancelled"], row["days_to_close"]["max"]) == (1, 0, 3)
    empty = report([])
    assert empty["by_type"] == []
    assert empty["total"]["received"] == 0
    assert empty["total"]["days_to_close"]["median"] is None


@pytest.mark.parametrize(("n", "median", "p90"), [(1, 5, 5), (2, 5, 6), (10, 9, 13)])
def test_days_to_close_are_nearest_rank_quantiles(n: int, median: int, p90: int) -> None:
    events = []
    for i in range(n):
        events += [
            received(f"Q-{i}", "erasure"),
            closed(f"Q-{i}", "completed", MARCH + timedelta(days=5 + i)),
        ]
    figures = report(events)["total"]["days_to_close"]
    assert (figures["median"], figures["p90"], figures["max"]) == (median, p90, 5 + n - 1)


def test_the_cli_shows_the_report_per_type_with_the_consent_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `privops audit report` prints for what the scan reads (reading the topic
    is the integration tests' business: tests/integration/test_dsar_flow.py)."""
    from privops.cli import audit as audit_cli
    from tests.unit.test_cli_bad_input import run

    events = [
        received("E-1", "erasure"),
        closed("E-1", "partially_completed", MARCH + timedelta(days=6)),
        received("C-1", "consent_withdrawal"),
        closed("C-1", "completed", MARCH),
        step(None, "consent_changed", MARCH, after="withdrawn"),
    ]

    def scan(visit: Any) -> audit_cli.AuditScan:
        for offset, event in enumerate(events):
            visit(0, offset, 0, event)
        return audit_cli.AuditScan()

    monkeypatch.setattr(audit_cli, "scan_audit", scan)
    out = run("audit", "report", "--from", "2026-03-01", "--to", "2026-03-31")
    assert out.code == 0, out.output
    assert "Rights requests logged 2026-03-01 to 2026-03-31" in out.flat
    rows = {line.split("│")[1].strip(): line for line in out.output.splitlines() if "│" in line}
    heading = next(line for line in out.output.splitlines() if "┃" in line)
    header = [c.strip() for c in heading.split("┃")[2:5]]
    assert header == ["all", "consent withdrawal", "erasure"]

    def row(label: str) -> list[str]:
        return [c.strip() for c in rows[label].split("│")[2:5]]

    assert row("partially completed (data kept)") == ["1", "0", "1"]
    assert row("days to close (max)") == ["6", "0", "6"]
    assert "Consent changes recorded: withdrawn 1" in out.flat
