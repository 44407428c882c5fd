"""The DPO's open requests gathered from every worker (agents.http ``GET /requests``):
each worker answers for the partitions it owns from its schedule, and the worker asked
answers only when every partition did, so a moving partition is a 503 to retry, never a
list that silently misses a request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from agents import http
from privops.core import caseload
from privops.core.request import RequestRecord
from privops.core.vocab import RequestState, RequestType
from streams.app import settings
from streams.context import collaborators
from streams.tables import requests
from tests.agents.test_http_routing import Answers, serving

TODAY = datetime.now(UTC).date()
MINE = list(range(settings.topic_partitions // 2))
THEIRS = list(range(settings.topic_partitions // 2, settings.topic_partitions))
THEIR_REQUEST = {
    "request_id": "R-theirs",
    "request_type": "access",
    "state": "awaiting_systems",
    "subject_ref": "sr_theirs",
    "due_on": (TODAY + timedelta(days=3)).isoformat(),
    "days_left": 3,
    "waiting_on": ["crm"],
}


def stored(rid: str, request_type: RequestType, due: date | None, **fields: Any) -> None:
    """An open request of this worker's, stored and tracked by its schedule."""
    rec = RequestRecord(
        request_id=rid,
        request_type=request_type,
        subject_id=f"S-{rid}",
        actor="dpo",
        state=fields.pop("state", RequestState.in_progress),
        received_on=TODAY - timedelta(days=20),
        due_on=due,
        created_at=datetime.now(UTC),
        **fields,
    )
    requests.data[rid] = rec.model_dump(mode="json")  # the app fixture untracks it after
    collaborators().schedule.track(rec)


@pytest.fixture
def worker(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This worker: owns the first half of the partitions, its schedule rebuilt and
    holding four requests (one closed), callers not checked (not what is tested here)."""
    monkeypatch.setattr(http, "_authenticator", lambda: None)
    monkeypatch.setattr(http, "owned_partitions", lambda: MINE)
    monkeypatch.setattr(app.router, "table_metadata", lambda _table: {})
    stored("R-late", RequestType.erasure, TODAY - timedelta(days=2))
    stored("R-later", RequestType.erasure, TODAY + timedelta(days=20))
    stored("R-unverified", RequestType.access, None, state=RequestState.received)
    stored("R-done", RequestType.erasure, TODAY, state=RequestState.completed)
    collaborators().schedule.rebuilt()
    return app


async def listed(query: str = "", **headers: str) -> Any:
    request = make_mocked_request("GET", f"/requests{query}", headers=headers)
    return await http.caseload_view.get(Answers(), request)


@asynccontextmanager
async def other_worker(
    app: Any, monkeypatch: pytest.MonkeyPatch, status: int, body: Any, delay: float = 0.0
) -> AsyncIterator[list[dict[str, str]]]:
    """A second worker of the group, answering its part; what it was asked is kept."""
    asked: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        asked.append({**request.headers, "query": request.query_string})
        await asyncio.sleep(delay)
        return web.json_response(body, status=status)

    async with serving("/requests", answer) as url:
        here = str(app.conf.canonical_url)
        metadata = {here: {"x": MINE}, str(url): {"x": THEIRS}}
        monkeypatch.setattr(app.router, "table_metadata", lambda _table: metadata)
        session = aiohttp.ClientSession()
        monkeypatch.setattr(app, "_http_client", session)
        try:
            yield asked
        finally:
            await session.close()


def their_part(partitions: list[int] = THEIRS, requests: Any = None) -> dict[str, Any]:
    listed = [THEIR_REQUEST] if requests is None else requests
    return {"part": True, "partitions": partitions, "total": len(listed), "requests": listed}


async def test_one_worker_owning_every_partition_lists_its_open_requests_due_first(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "owned_partitions", lambda: MINE + THEIRS)
    status, body = await listed()
    assert status == 200
    assert [e["request_id"] for e in body["requests"]] == ["R-late", "R-later", "R-unverified"]
    late = body["requests"][0]
    assert (late["days_left"], late["state"], late["request_type"]) == (
        -2,
        "in_progress",
        "erasure",
    )
    assert late["subject_ref"].startswith("sr_")
    assert "S-R-late" not in str(body)  # the subject id stays out of the list
    assert body["requests"][2]["due_on"] is None
    assert (body["total"], body["workers"]) == (3, 1)
    assert "part" not in body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?due_within=0", ["R-late"]),
        ("?due_within=30", ["R-late", "R-later"]),
        ("?type=access", ["R-unverified"]),
        ("?limit=1", ["R-late"]),
    ],
)
async def test_the_list_is_filtered(
    worker: Any, monkeypatch: pytest.MonkeyPatch, query: str, expected: list[str]
) -> None:
    monkeypatch.setattr(http, "owned_partitions", lambda: MINE + THEIRS)
    status, body = await listed(query)
    assert status == 200
    assert [e["request_id"] for e in body["requests"]] == expected


@pytest.mark.parametrize("query", ["?type=holiday", "?due_within=-1", "?limit=0", "?sort=due"])
async def test_a_bad_query_is_a_400_saying_what_to_fix(worker: Any, query: str) -> None:
    status, body = await listed(query)
    assert status == 400
    assert body["error"] == "bad query"
    assert body["reason"]


async def test_every_worker_is_asked_its_part_as_this_worker_not_with_the_callers_password(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = {"Authorization": "Basic cHJpdm9wczpwdw=="}  # privops:pw
    monkeypatch.setattr(http, "_own_credentials", lambda: own)
    async with other_worker(worker, monkeypatch, 200, their_part()) as asked:
        status, body = await listed("?limit=10", Authorization="Basic ZHBvOnNlY3JldA==")
    assert status == 200
    assert [e["request_id"] for e in body["requests"]] == [
        "R-late", "R-theirs", "R-later", "R-unverified",
    ]  # fmt: skip
    assert (body["total"], body["workers"]) == (4, 2)
    (question,) = asked
    assert question["Authorization"] == own["Authorization"]  # not the DPO's password
    assert question[http.PART_HEADER] == "1"  # its own part only
    assert question["query"] == "limit=10"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, {"error": "partition moving between workers; retry in a few seconds"}),
        (200, their_part(THEIRS[:-1])),  # a partition nobody answered
        (200, their_part([MINE[0], *THEIRS])),  # a partition answered twice (moving)
    ],
    ids=["moving there", "a partition missing", "a partition twice"],
)
async def test_a_list_not_covering_each_partition_once_is_a_503_never_a_short_list(
    worker: Any, monkeypatch: pytest.MonkeyPatch, status: int, body: Any
) -> None:
    async with other_worker(worker, monkeypatch, status, body):
        answered, said = await listed()
    assert answered == 503
    assert "retry" in said["error"]


async def test_a_worker_that_hangs_is_a_503_naming_it_within_the_gathering_time(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "GATHER_SECONDS", 0.3)
    async with other_worker(worker, monkeypatch, 200, their_part(), delay=2.0):
        answered, said = await asyncio.wait_for(listed(), timeout=1.5)
        here = str(worker.conf.canonical_url)
        slow = next(h for h in worker.router.table_metadata("requests") if h != here)
    assert answered == 503
    assert "retry" in said["error"]
    assert f"no answer within 0.3 s from {slow}" == said["reason"]


async def test_a_worker_of_the_version_before_asking_with_the_forwarding_mark_gets_a_part(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It never gathers when asked by another worker: an older worker took the other's
    question for a list, and the two would ask each other without end."""
    monkeypatch.setattr(
        worker.router, "table_metadata", lambda _t: pytest.fail("a part must not gather")
    )
    status, body = await listed(**{http.ROUTED_HEADER: "1"})
    assert status == 200
    assert body["part"] is True
    assert body["partitions"] == MINE


async def test_a_worker_of_the_version_before_answering_its_part_is_named(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_shape = {"partitions": THEIRS, "requests": [THEIR_REQUEST]}  # no "part", no "total"
    async with other_worker(worker, monkeypatch, 200, old_shape) as asked:
        answered, said = await listed()
    assert answered == 502
    assert "not a part of the list" in said["reason"]
    assert asked[0][http.ROUTED_HEADER] == "1"  # the mark it knows, beside the new one


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (401, {"error": "unauthenticated"}, "401"),
        (404, {"error": "not found"}, "404"),  # a worker older than the list
        (200, {"error": "x"}, "not a part of the list"),
        (200, their_part(requests=[{"request_id": "R-x"}]), "an entry is malformed"),
    ],
)
async def test_another_worker_answering_something_else_is_a_502_naming_it(
    worker: Any, monkeypatch: pytest.MonkeyPatch, status: int, body: Any, words: str
) -> None:
    async with other_worker(worker, monkeypatch, status, body):
        answered, said = await listed()
    assert answered == 502
    assert "did not give its part" in said["reason"]
    assert words in said["reason"]


async def test_a_part_is_this_workers_own_within_the_limit_and_marked_so(worker: Any) -> None:
    part = {http.PART_HEADER: "1"}
    status, body = await listed("?limit=2", **part)
    assert status == 200
    assert body["part"] is True
    assert body["partitions"] == MINE
    assert [e["request_id"] for e in body["requests"]] == ["R-late", "R-later"]
    assert body["total"] == 3  # every match counted, only the first sent


async def test_a_worker_whose_schedule_is_being_rebuilt_answers_neither_part_nor_list(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "owned_partitions", lambda: MINE + THEIRS)
    collaborators().schedule.clear()  # its partitions moved: rebuilt at the next sweep
    assert (await listed(**{http.PART_HEADER: "1"}))[0] == 503
    assert (await listed())[0] == 503


async def test_a_large_caseload_is_read_in_slices_between_which_the_loop_runs(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "owned_partitions", lambda: MINE + THEIRS)
    monkeypatch.setattr(http, "CASELOAD_SLICE", 1)
    schedule = collaborators().schedule
    order: list[str] = []
    read = schedule.open_request

    def reading(rid: str) -> Any:
        order.append("read")
        return read(rid)

    monkeypatch.setattr(schedule, "open_request", reading)

    async def meanwhile() -> None:
        for _ in range(3):
            order.append("other")
            await asyncio.sleep(0)

    part = http._own_part(caseload.Filter())
    found, _ = await asyncio.gather(part, meanwhile())
    assert found is not None
    assert found.total == 3
    first, last = order.index("read"), len(order) - 1 - order[::-1].index("read")
    assert "other" in order[first:last]  # the other task ran between two slices


async def test_a_schedule_rebuilt_while_it_is_read_gives_no_part(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "CASELOAD_SLICE", 1)
    schedule = collaborators().schedule

    async def rebalanced() -> None:
        await asyncio.sleep(0)
        schedule.clear()  # partitions moved: the schedule starts again

    found, _ = await asyncio.gather(http._own_part(caseload.Filter()), rebalanced())
    assert found is None
