"""The DPO's view of a subject's legal holds (agents.http ``GET /holds/{subject_id}``,
``privops request hold list``): answered at the subject's owner from the newest decided
holds, active and released, to the DPO and the worker only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from agents import http
from privops.adapters.acls import Api, may_call, system_principal
from privops.adapters.key_topic import subject_partition
from privops.core.errors import RuntimeUnavailable
from privops.core.holds import LegalHold
from privops.core.vocab import Category, System
from streams.app import settings
from streams.state import state
from streams.tables import HOLDS, request_index
from tests.agents.test_flush_order import Broker
from tests.agents.test_http_routing import Answers
from tests.agents.test_views_read_newest import decided

SUBJECT = "S-holds-1"
NOW = datetime.now(UTC)


@pytest.fixture
def owner(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This worker owns the subject, its tables recovered; callers not checked (not what
    is tested here)."""
    monkeypatch.setattr(state, "queue_all", Broker().queue_all)
    monkeypatch.setattr(http, "_authenticator", lambda: None)
    monkeypatch.setattr(app.router, "key_store", lambda _t, _k: app.conf.canonical_url)
    monkeypatch.setattr(http, "serving", lambda _partition: True)  # as once it has started
    return app


def hold(hold_id: str, placed_days_ago: int, released: bool = False) -> LegalHold:
    placed = NOW - timedelta(days=placed_days_ago)
    return LegalHold(
        hold_id=hold_id,
        subject_id=SUBJECT,
        categories=(Category.cctv, Category.interactions),
        reason=f"claim {hold_id}",
        placed_at=placed,
        released_at=placed + timedelta(days=1) if released else None,
    )


async def asked(subject_id: str = SUBJECT) -> Any:
    request = make_mocked_request("GET", f"/holds/{subject_id}")
    return await http.holds_view.get(Answers(), request, subject_id)


async def test_a_subjects_holds_active_and_released_oldest_first(owner: Any) -> None:
    partition = subject_partition(SUBJECT, settings.topic_partitions)
    holds = [hold("H-2", 3), hold("H-1", 10, released=True)]
    decided(partition, lambda: state.put(HOLDS, SUBJECT, holds))  # decided, not stored yet
    status, body = await asked()
    assert status == 200
    assert body["subject_ref"].startswith("sr_")
    listed = [(h["hold_id"], h["active"], h["categories"], h["reason"]) for h in body["holds"]]
    assert listed == [
        ("H-1", False, ["cctv", "interactions"], "claim H-1"),
        ("H-2", True, ["cctv", "interactions"], "claim H-2"),
    ]
    assert body["holds"][0]["released_at"] is not None


async def test_a_subject_without_holds_has_an_empty_list_and_a_bad_id_is_a_400(
    owner: Any,
) -> None:
    status, body = await asked("S-nobody")
    assert (status, body["holds"]) == (200, [])
    status, body = await asked("x" * 10_000)
    assert status == 400
    assert body["error"] == "bad subject id"


def test_only_the_dpo_and_the_worker_may_see_holds() -> None:
    assert may_call("dpo", Api.HOLDS)
    assert may_call("privops", Api.HOLDS)
    assert not may_call(system_principal(System.crm), Api.HOLDS)
    assert not may_call("admin", Api.HOLDS)


class Proven:
    """The broker's check of the caller, as ``api_auth`` gives it: this principal."""

    def __init__(self, principal: str) -> None:
        self.who = principal

    async def principal(self, _header: str | None) -> str:
        return self.who


@pytest.mark.parametrize(
    ("principal", "status"), [(system_principal(System.crm), 403), ("admin", 403), ("dpo", 200)]
)
async def test_the_view_asks_for_the_holds_permission(
    owner: Any, monkeypatch: pytest.MonkeyPatch, principal: str, status: int
) -> None:
    """A system may ask consent and keys, never the DPO's hold reasons: the view checks
    the caller for holds, not for anything a system may ask."""
    partition = subject_partition(SUBJECT, settings.topic_partitions)
    decided(partition, lambda: state.put(HOLDS, SUBJECT, [hold("H-9", 1)]))
    monkeypatch.setattr(http, "_authenticator", lambda: Proven(principal))
    answered, body = await asked()
    assert answered == status
    assert ("claim H-9" in str(body)) is (status == 200)


async def test_no_holds_are_answered_while_the_tables_recover(
    owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "serving", lambda _partition: False)
    status, body = await asked()
    assert status == 503
    assert "retry" in body["error"]


@pytest.mark.parametrize("path", ["consent", "requests"])
async def test_consent_and_requests_are_not_answered_while_the_tables_recover(
    owner: Any, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """A worker taking its partitions back after a restart replays their changelogs: the
    table holds an older state meanwhile, so a withdrawal decided elsewhere meanwhile
    answered "allowed", and a request an older state (review, session 32). A 503 to
    retry, as for the holds; and an answer once recovered."""
    request_index._set("R-1", SUBJECT)  # as read from the topic
    view, key = (http.consent_view, SUBJECT) if path == "consent" else (http.request_view, "R-1")
    request = make_mocked_request("GET", f"/{path}/{key}")
    monkeypatch.setattr(http, "serving", lambda _partition: False)
    status, body = await view.get(Answers(), request, key)
    assert status == 503
    assert "retry" in body["error"]
    monkeypatch.setattr(http, "serving", lambda _partition: True)
    status, _ = await view.get(Answers(), request, key)
    assert status == 404  # nothing known of either: answered, not deferred


async def test_a_caller_not_proven_yet_is_not_told_where_the_broker_is(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone could send made-up credentials while the broker was down and read its
    address in the 503 (review, session 32): it goes to the log only."""

    class BrokerDown:
        async def principal(self, _header: str | None) -> str:
            raise RuntimeUnavailable("Kafka broker at 10.20.30.40:9093 not answering")

    monkeypatch.setattr(http, "_authenticator", BrokerDown)
    request = make_mocked_request("GET", f"/holds/{SUBJECT}")
    status, body = await http.holds_view.get(Answers(), request, SUBJECT)
    assert status == 503
    assert "retry" in body["error"]
    assert "10.20.30.40" not in str(body)
