"""What the DPO's view of a request (``GET /requests/{id}``, ``privops request status``)
says of a representative: who, in what capacity, and whether the work waits for the
evidence of their authority, as the worker decides it (``awaiting_authority``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from agents.http import request_json
from privops.cli.request import status
from privops.core.request import RequestRecord
from privops.core.vocab import Capacity, RequestState, RequestType

DAY = date(2025, 3, 10)
WAITING = RequestRecord(
    request_id="R-rep-1",
    request_type=RequestType.access,
    subject_id="subj-1",
    actor="dpo",
    state=RequestState.identity_unverified,
    received_on=DAY,
    identity_verified_on=DAY,
    representative="Jane Doe (attorney), 4 Mill Lane",
    capacity=Capacity.attorney,
    created_at=datetime(2025, 3, 10, 9, tzinfo=UTC),
)


def test_the_view_says_what_the_request_waits_for(app: Any) -> None:
    body = request_json(WAITING)
    assert (body["representative"], body["capacity"], body["authority_received_on"]) == (
        WAITING.representative,
        "attorney",
        None,
    )
    assert body["awaiting_authority"] is True
    assert "waiting for the evidence of their authority" in status._representative(body)
    shown = WAITING.model_copy(
        update={"authority_received_on": DAY, "state": RequestState.in_progress}
    )
    assert request_json(shown)["awaiting_authority"] is False
    cancelled = WAITING.model_copy(update={"state": RequestState.cancelled})
    assert request_json(cancelled)["awaiting_authority"] is False
    objection = WAITING.model_copy(
        update={"request_type": RequestType.objection, "state": RequestState.in_progress}
    )
    assert request_json(objection)["awaiting_authority"] is False
    assert "the notices go to the subject meanwhile" in status._representative(
        request_json(objection)
    )
