"""What the DPO sees of a lift that lifted nothing (from 0.45): ``GET /requests/{id}``
(``agents.http.request_json``) and ``privops request status`` name the restrictions that
still stand, or say the one the lift named had already ended."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from agents.http import request_json
from privops.core.fanout import NONE_STANDING
from privops.core.request import RequestRecord
from privops.core.vocab import RequestState, RequestType
from tests.agents.test_workflow_agent import NOW, SUBJECT
from tests.unit.test_tools_views import rendered

DAY = date(2025, 3, 10)


def lift(still_restricted_by: list[str]) -> RequestRecord:
    return RequestRecord(
        request_id="L-1",
        request_type=RequestType.restriction_lift,
        subject_id=SUBJECT,
        actor="dpo",
        state=RequestState.completed,
        received_on=DAY,
        identity_verified_on=DAY,
        due_on=date(2025, 4, 10),
        still_restricted_by=still_restricted_by,
        created_at=NOW,
    )


def shown(body: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """What ``privops request status`` prints for ``body``."""
    return rendered(body | {"tasks": [], "history": []}, monkeypatch)


def test_the_view_names_what_still_restricts_the_subject(
    app: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = request_json(lift(["R-A", "R-B"]))
    assert (body["lifted_nothing"], body["still_restricted_by"]) == (True, ["R-A", "R-B"])
    assert re.search(r"lifted nothing\s+still restricted by R-A, R-B", shown(body, monkeypatch))


def test_the_view_says_when_the_restriction_named_had_already_ended(
    app: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = request_json(lift([NONE_STANDING]))
    assert (body["lifted_nothing"], body["still_restricted_by"]) == (True, [])
    assert "the restriction it named had already ended" in shown(body, monkeypatch)


def test_a_lift_that_lifted_shows_neither(app: object, monkeypatch: pytest.MonkeyPatch) -> None:
    body = request_json(lift([]))
    assert (body["lifted_nothing"], body["still_restricted_by"]) == (False, [])
    assert "lifted nothing" not in shown(body, monkeypatch)
