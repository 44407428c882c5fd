"""What the DPO sees of a request an earlier release let pause (before 0.38, any request
type could): only an access request's clock stops for clarification (UK GDPR Art. 12A),
so `/requests/{id}` and `privops request status` show the due date without the pause,
the one the alerts go by, before any decision has stored it."""

from __future__ import annotations

from datetime import UTC, date, datetime

from agents.http import request_json
from privops.core import deadlines
from privops.core.request import RequestRecord
from privops.core.vocab import ObjectionScope, RequestState, RequestType


def _paused_by_0_37(request_type: RequestType) -> RequestRecord:
    return RequestRecord(
        request_id="R-old-pause",
        request_type=request_type,
        subject_id="CUST-0001",
        actor="dpo",
        state=RequestState.paused,
        received_on=date(2026, 3, 2),
        identity_verified_on=date(2026, 3, 2),
        clock_start=date(2026, 3, 2),
        objection_scope=(
            ObjectionScope.legitimate_interest if request_type is RequestType.objection else None
        ),
        clarification_asked_on=date(2026, 3, 20),
        pauses=[deadlines.Pause(date(2026, 3, 10), date(2026, 3, 12))],
        paused_days=3,
        due_on=date(2026, 4, 7),
        created_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
    )


def test_a_request_an_earlier_release_paused_shows_its_due_date_without_the_pause() -> None:
    shown = request_json(_paused_by_0_37(RequestType.objection))
    assert shown["due_on"] == "2026-04-02"  # not the stored 7 April


def test_an_access_requests_pause_still_moves_its_due_date() -> None:
    shown = request_json(_paused_by_0_37(RequestType.access))
    assert shown["due_on"] == "2026-04-07"
