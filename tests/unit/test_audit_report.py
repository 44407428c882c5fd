"""The accountability report (privops.core.audit_report): how a period's rights requests
were handled, from audit steps alone, shaped as the workflow writes them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from privops.core.audit_report import ReportBuilder
from privops.core.records import AuditEvent
from privops.core.request import FOLLOWUP_ACTOR
from privops.core.workflow import EXTENSION_TOLD

SEQ = count(1)
MARCH = datetime(2026, 3, 10, 10, tzinfo=UTC)
DAY = timedelta(days=1)


def step(
    rid: str | None, action: str, at: datetime, app: str = "privops", **fields: Any
) -> AuditEvent:
    return AuditEvent(
        audit_id=f"a-{next(SEQ)}",
        chain=f"{app}/{rid or 'sr_x'}",
        seq=1,
        request_id=rid,
        subject_ref=fields.pop("subject_ref", "sr_x"),
        actor=fields.pop("actor", "dpo"),
        action=action,
        occurred_at=at,
        prev_hash="0" * 64,
        hash="1" * 64,
        **fields,
    )


def received(
    rid: str, kind: str, on: date | None = None, at: datetime = MARCH, **fields: Any
) -> AuditEvent:
    """``request_received`` as workflow._submitted writes it (``received_reason``)."""
    day = on or at.date()
    reason = f"{kind}, received {day.isoformat()}"
    return step(rid, "request_received", at, after="received", reason=reason, **fields)


def closed(rid: str, state: str, at: datetime, app: str = "privops") -> AuditEvent:
    return step(rid, "request_transitioned", at, app, before="awaiting_systems", after=state)


def report(events: list[AuditEvent], chain: str = "") -> dict[str, Any]:
    builder = ReportBuilder(date(2026, 3, 1), date(2026, 3, 31), chain)
    for event in events:
        builder.add(event)
    return builder.report()


def test_a_periods_requests_with_how_each_closed_late_extended_and_withheld() -> None:
    events = [
        received("E-1", "erasure"),
        step("E-1", "task_sent", MARCH),
        closed("E-1", "partially_completed", MARCH + 4 * DAY),
        received("E-2", "erasure", at=MARCH + DAY),
        closed("E-2", "completed", MARCH + 11 * DAY),
        received("A-1", "access"),
        step(
            "A-1", "deadline_extended", MARCH + 2 * DAY, after="2026-06-10", reason=EXTENSION_TOLD
        ),
        step("A-1", "deadline_alert", MARCH + 40 * DAY, after="deadline_approaching"),
        step("A-1", "deadline_alert", MARCH + 95 * DAY, after="deadline_breached"),
        received("A-2", "access"),
        step("A-2", "access_withheld", MARCH + 5 * DAY, after="legal_hold"),
        closed("A-2", "completed", MARCH + 5 * DAY),
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
    assert (access["received"], access["open"], access["late"], access["extended"]) == (2, 1, 1, 1)
    assert access["withheld_for_review"] == 1
    assert out["withheld_requests"] == ["A-2"]
    assert out["total"]["received"] == 4
    assert out["total"]["late"] == 1


def test_a_request_counts_in_the_period_it_was_received_and_closes_from_then() -> None:
    events = [
        # Received on 27 February, logged in March (the DPO back-fills): February's.
        received("X-0", "erasure", on=date(2026, 2, 27)),
        closed("X-0", "completed", MARCH),
        # Received on 31 March, logged on 2 April: March's, 5 days to close.
        received("X-1", "erasure", on=date(2026, 3, 31), at=datetime(2026, 4, 2, tzinfo=UTC)),
        closed("X-1", "completed", datetime(2026, 4, 5, 9, tzinfo=UTC)),
    ]
    out = report(events)
    assert out["total"]["received"] == 1
    assert out["total"]["days_to_close"]["max"] == 5


def test_a_step_written_before_it_gave_the_receipt_date_counts_by_its_uk_date() -> None:
    late_on_the_31st = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)  # 1 April in the UK (BST)
    first_of_march = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)  # GMT: still 1 March
    events = [
        step("O-1", "request_received", first_of_march, after="received", reason="erasure"),
        step("O-2", "request_received", late_on_the_31st, after="received", reason="erasure"),
    ]
    out = report(events)
    assert [row["request_type"] for row in out["by_type"]] == ["erasure"]
    assert out["total"]["received"] == 1


def test_the_follow_up_erasures_privops_issues_are_counted_apart() -> None:
    events = [
        received("P-1", "erasure"),
        step("P-1", "request_received", MARCH, after="followup_scheduled", reason="follow-up"),
        received("P-1-F1", "erasure", at=MARCH + 3 * DAY, actor=FOLLOWUP_ACTOR),
        closed("P-1-F1", "completed", MARCH + 4 * DAY),
    ]
    out = report(events)
    assert out["total"]["received"] == 1
    assert out["total"]["closed"] == 0
    assert out["followup_erasures"] == 1


def test_a_replayed_follow_up_counts_once() -> None:
    child = received("P-2-F1", "erasure", at=MARCH + 3 * DAY, actor=FOLLOWUP_ACTOR)
    assert report([child, child])["followup_erasures"] == 1


def test_an_extension_audited_before_with_the_dpos_own_text_still_counts() -> None:
    events = [
        received("V-1", "access"),
        step("V-1", "deadline_extended", MARCH + DAY, after="2026-06-10", reason="complex"),
    ]
    assert report(events)["total"]["extended"] == 1


def test_a_prefix_matching_nothing_names_the_deployments_it_passed_over() -> None:
    out = report([received("R-1", "access")], chain="privops-prod/")
    assert out["total"]["received"] == 0
    assert out["other_app_ids"] == ["privops"]


def test_an_extension_withdrawn_once_a_pause_counted_is_not_extended() -> None:
    withdrawn = "the extension notified on 2026-04-20 came after the first month: it does not count"
    events = [
        received("W-1", "access"),
        step("W-1", "deadline_extended", MARCH + DAY, after="2026-06-10", reason=EXTENSION_TOLD),
        step("W-1", "deadline_extended", MARCH + 9 * DAY, after="2026-04-12", reason=withdrawn),
    ]
    assert report(events)["total"]["extended"] == 0


def test_deployments_are_told_apart_and_one_can_be_chosen() -> None:
    events = [
        received("R-1", "access"),
        step("R-1", "request_received", MARCH, "privops-demo", after="received",
             reason="access, received 2026-03-10"),
        closed("R-1", "completed", MARCH, app="privops-demo"),
    ]  # fmt: skip
    both = report(events)
    assert both["app_ids"] == ["privops", "privops-demo"]
    assert (both["total"]["received"], both["total"]["closed"]) == (2, 1)
    one = report(events, chain="privops/")
    assert one["app_ids"] == ["privops"]
    assert (one["total"]["received"], one["total"]["closed"]) == (1, 0)


def test_the_first_closing_counts_and_an_empty_period_is_all_zero() -> None:
    events = [
        received("C-1", "complaint"),
        closed("C-1", "completed", MARCH + 3 * DAY),
        closed("C-1", "cancelled", MARCH + 9 * DAY),  # a replayed step cannot move it
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


def test_the_workflows_own_step_carries_the_receipt_date() -> None:
    from privops.core.request import RequestRecord
    from privops.core.vocab import RequestState, RequestType
    from privops.core.workflow import received_reason

    rec = RequestRecord(
        request_id="R-9",
        request_type=RequestType.access,
        subject_id="S-9",
        actor="dpo",
        state=RequestState.received,
        received_on=date(2026, 3, 30),
        created_at=datetime(2026, 4, 2, tzinfo=UTC),
    )
    event = step("R-9", "request_received", datetime(2026, 4, 2, tzinfo=UTC),
                 after="received", reason=received_reason(rec))  # fmt: skip
    assert report([event])["by_type"][0]["request_type"] == "access"


class _Scan:
    def __init__(self, events: list[AuditEvent], unusable: int = 0) -> None:
        self.events, self.unusable = events, unusable

    def __call__(self, visit: Any) -> Any:
        from privops.cli import audit as audit_cli

        for offset, event in enumerate(self.events):
            visit(0, offset, 0, event)
        found = audit_cli.AuditScan()
        found.unusable = [{"problem": "undecodable"}] * self.unusable
        return found


def test_the_cli_shows_the_report_per_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `privops audit report` prints for what the scan reads (reading the topic
    is the integration tests' business: tests/integration/test_dsar_flow.py)."""
    from privops.cli import audit as audit_cli
    from tests.unit.test_cli_bad_input import run

    events = [
        received("E-1", "erasure"),
        step("E-1", "erasure_waiting", MARCH, after="A-9", reason="until 2026-03-12 at most"),
        closed("E-1", "partially_completed", MARCH + 6 * DAY),
        received("C-1", "consent_withdrawal"),
        closed("C-1", "completed", MARCH),
        received("E-2", "erasure"),
        step("E-2", "request_refused", MARCH + DAY, after="excessive"),
        closed("E-2", "refused", MARCH + DAY),
    ]
    monkeypatch.setattr(audit_cli, "scan_audit", _Scan(events))
    out = run("audit", "report", "--from", "2026-03-01", "--to", "2026-03-31")
    assert out.code == 0, out.output
    assert "Rights requests received 2026-03-01 to 2026-03-31" in out.flat
    rows = {line.split("│")[1].strip(): line for line in out.output.splitlines() if "│" in line}
    heading = next(line for line in out.output.splitlines() if "┃" in line)
    header = [c.strip() for c in heading.split("┃")[2:5]]
    assert header == ["all", "consent withdrawal", "erasure"]

    def row(label: str) -> list[str]:
        return [c.strip() for c in rows[label].split("│")[2:5]]

    assert row("partially completed") == ["1", "0", "1"]
    assert row("refused") == ["1", "0", "1"]
    assert row("refused: excessive") == ["1", "0", "1"]
    assert row("refused: ground unrecorded") == ["0", "0", "0"]
    assert row("days to close (max)") == ["6", "0", "6"]
    assert row("erasure: waited for their response") == ["1", "0", "1"]
    assert row("released by the DPO") == ["0", "0", "0"]
    assert "Follow-up erasures privops issued: 0" in out.flat
    assert "chains privops/*" in out.flat  # this deployment's by default
    assert "data map does not list" not in out.flat


def test_the_report_lists_responses_that_told_a_category_the_data_map_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from privops.cli import audit as audit_cli
    from tests.unit.test_cli_bad_input import run

    events = [
        received("A-1", "access"),
        step("A-1", "categories_not_mapped", MARCH + DAY, after="orders: interactions"),
        closed("A-1", "completed", MARCH + DAY),
        received("A-2", "access"),
        closed("A-2", "completed", MARCH + DAY),
    ]
    assert report(events)["unmapped_requests"] == ["A-1"]
    monkeypatch.setattr(audit_cli, "scan_audit", _Scan(events))
    out = run("audit", "report", "--from", "2026-03-01", "--to", "2026-03-31")
    assert out.code == 0, out.output
    assert "the data map does not list for its system (update the data map): A-1" in out.flat


def test_the_cli_says_when_records_could_not_be_read_and_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from privops.cli import audit as audit_cli
    from tests.unit.test_cli_bad_input import run

    monkeypatch.setattr(audit_cli, "scan_audit", _Scan([received("E-1", "erasure")], 2))
    out = run("audit", "report", "--from", "2026-03-01", "--to", "2026-03-31", "--json")
    assert out.code == 1
    assert json_loads_first(out.stdout)["unusable"] == 2
    assert "2 record(s) on privacy.audit could not be read" in out.flat


def json_loads_first(text: str) -> Any:
    import json

    return json.loads(text)


def test_erasures_that_waited_for_a_response_and_those_the_dpo_released() -> None:
    """From 0.42 an erasure may wait for the subject's access response
    (response_first): the report counts those that did, and those the DPO released
    before their day; a wait that ended by itself is not a release."""
    from privops.core.response_first import DAY_CAME, RELEASED, RESUMED

    waiting = {"after": "A-1", "reason": "waits for the response; until 2026-04-02 at most"}
    events = [
        received("A-1", "access"),
        received("E-1", "erasure"),
        step("E-1", "erasure_waiting", MARCH, **waiting),
        step("E-1", "erasure_resumed", MARCH + DAY, after="awaiting_systems", reason=RELEASED),
        received("E-2", "erasure"),
        step("E-2", "erasure_waiting", MARCH, **waiting),
        step("E-2", "erasure_resumed", MARCH + DAY, after="awaiting_systems", reason=RESUMED),
        received("E-3", "erasure"),
        step("E-3", "erasure_waiting", MARCH, **waiting),
        step("E-3", "erasure_resumed", MARCH + DAY, after="awaiting_systems", reason=DAY_CAME),
        received("E-4", "erasure"),
    ]
    kinds = {row["request_type"]: row for row in report(events)["by_type"]}
    assert (kinds["erasure"]["waited_for_response"], kinds["erasure"]["released_by_dpo"]) == (3, 1)
    assert (kinds["access"]["waited_for_response"], kinds["access"]["released_by_dpo"]) == (0, 0)


def test_show_finds_a_subjects_history_under_the_pseudonym_keys_a_rotation_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record keeps the subject ref of the key current when it was written: after a
    rotation, `audit show SUBJECT_ID` left the older history out without a word
    (review, session 43)."""
    import json

    from privops.adapters.settings import get_settings
    from privops.cli import audit as audit_cli
    from privops.core.identity import subject_ref
    from tests.unit.test_cli_bad_input import run

    old, new = "an-old-pseudonym-key-0001", "the-new-pseudonym-key-0002"
    monkeypatch.setenv("PRIVOPS_PSEUDONYM_KEY", new)
    monkeypatch.setenv("PRIVOPS_PSEUDONYM_PREVIOUS_KEYS", json.dumps([old]))
    get_settings.cache_clear()
    before = step(None, "consent_changed", MARCH, subject_ref=subject_ref(old.encode(), "C-7"))
    after = step(None, "hold_placed", MARCH + DAY, subject_ref=subject_ref(new.encode(), "C-7"))
    stranger = step(None, "hold_placed", MARCH, subject_ref=subject_ref(old.encode(), "C-8"))
    monkeypatch.setattr(audit_cli, "scan_audit", _Scan([before, after, stranger]))
    try:
        out = run("audit", "show", "C-7", "--json")
    finally:
        get_settings.cache_clear()
    assert out.code == 0, out.output
    assert [e["action"] for e in json.loads(out.stdout)] == ["consent_changed", "hold_placed"]
