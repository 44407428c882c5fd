"""`privops request list` (and `privops request hold list`) against a stand-in worker
over real HTTP: what it asks, how it shows the answer, and its exit codes. The worker's
side is tests/agents/test_caseload.py's and test_holds_view.py's; the real thing end to
end is tests/integration/test_dsar_flow.py's and test_legal_holds.py's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from privops.cli import worker_http
from privops.cli.common import EXIT_BAD_INPUT, EXIT_UNAVAILABLE
from tests.unit.test_cli_bad_input import (  # noqa: F401
    consent_body,
    env,
    run,
    send_json,
    stand_in_worker,
)

LISTED = {
    "requests": [
        {
            "request_id": "REQ-LATE", "request_type": "erasure", "state": "awaiting_systems",
            "subject_ref": "sr_aaaa", "due_on": "2026-11-29", "days_left": -2,
            "waiting_on": ["crm", "telephony"],
        },
        {
            "request_id": "REQ-SOON", "request_type": "access", "state": "in_progress",
            "subject_ref": "sr_bbbb", "due_on": "2026-12-03", "days_left": 2, "waiting_on": [],
        },
        {
            "request_id": "REQ-NEW", "request_type": "access", "state": "received",
            "subject_ref": "sr_cccc", "due_on": None, "days_left": None, "waiting_on": [],
        },
    ],
    "total": 5,
    "workers": 2,
}  # fmt: skip


class StandIn:
    """Answers each GET with the next scripted answer (the last one again once they run
    out), and keeps the paths asked."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any]] = [(200, LISTED)]
        self.asked: list[str] = []


@pytest.fixture
def worker(env: Callable[..., None]) -> Iterator[StandIn]:  # noqa: F811
    stand_in = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            stand_in.asked.append(self.path)
            answers = stand_in.answers
            status, body = answers.pop(0) if len(answers) > 1 else answers[0]
            send_json(self, status, json.dumps(body).encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with stand_in_worker(Handler, env):
        yield stand_in


def test_the_open_requests_are_shown_due_first_with_what_they_wait_on(worker: StandIn) -> None:
    out = run("request", "list")
    assert out.code == 0, out.output
    for text in ("Open requests (3 of 5, due first)", "2 overdue", "crm, telephony", "no clock"):
        assert text in out.flat
    assert out.flat.index("REQ-LATE") < out.flat.index("REQ-SOON") < out.flat.index("REQ-NEW")
    assert "2 more: raise --limit or narrow the list" in out.flat
    assert worker.asked == ["/requests?limit=500"]


def test_a_response_awaiting_review_waits_on_the_dpo(worker: StandIn) -> None:
    held = {
        "request_id": "REQ-CCTV", "request_type": "access", "state": "awaiting_review",
        "subject_ref": "sr_dddd", "due_on": "2026-12-10", "days_left": 9, "waiting_on": [],
    }  # fmt: skip
    worker.answers = [(200, {**LISTED, "requests": [held]})]
    out = run("request", "list")
    assert out.code == 0, out.output
    assert "your review" in out.flat
    assert "privops request redact" in out.flat


def test_the_filters_are_asked_of_the_worker(worker: StandIn) -> None:
    # Any case, as every other choice option takes it (review, session 35)
    out = run("request", "list", "--due-within", "7", "--type", "Access", "--limit", "20")
    assert out.code == 0, out.output
    assert worker.asked == ["/requests?limit=20&due_within=7&type=access"]


def test_json_is_the_workers_answer(worker: StandIn) -> None:
    out = run("request", "list", "--json")
    assert out.code == 0, out.output
    assert json.loads(out.stdout) == LISTED


def test_no_open_requests(worker: StandIn) -> None:
    worker.answers = [(200, {"requests": [], "total": 0, "workers": 1})]
    out = run("request", "list")
    assert out.code == 0, out.output
    assert out.flat == "no open requests"


def test_no_open_requests_match_the_filter(worker: StandIn) -> None:
    worker.answers = [(200, {"requests": [], "total": 0, "workers": 2})]
    out = run("request", "list", "--type", "complaint")
    assert out.code == 0, out.output
    assert out.flat == "no open requests match"


def test_one_workers_part_is_not_shown_as_the_list(worker: StandIn) -> None:
    first: Any = LISTED["requests"]
    part = {"part": True, "partitions": [0, 1], "total": 1, "requests": first[:1]}
    worker.answers = [(200, part)]
    out = run("request", "list")
    assert out.code == EXIT_UNAVAILABLE
    assert "did not answer with the whole list" in out.flat
    assert "REQ-LATE" not in out.output


def test_rows_that_are_not_requests_exit_3_not_a_traceback(worker: StandIn) -> None:
    worker.answers = [(200, {"workers": 1, "total": 1, "requests": ["REQ-1"]})]
    out = run("request", "list")
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert "did not answer with the whole list" in out.flat


def test_a_moving_partition_is_asked_again(worker: StandIn) -> None:
    moving = (503, {"error": "partition moving between workers; retry in a few seconds"})
    worker.answers = [moving, moving, (200, LISTED)]
    out = run("request", "list")
    assert out.code == 0, out.output
    assert len(worker.asked) == 3
    assert "REQ-LATE" in out.flat


def test_partitions_that_keep_moving_exit_3_never_a_short_list(
    worker: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_http, "MOVING_RETRY_SECONDS", 0.3)
    worker.answers = [(503, {"error": "partition moving between workers; retry in a few seconds"})]
    out = run("request", "list")
    assert out.code == EXIT_UNAVAILABLE
    assert "could not answer now" in out.flat
    assert "REQ-" not in out.output


def test_a_consent_check_during_a_rebalance_is_asked_again(worker: StandIn) -> None:
    """The worker answers /consent 503 while the group rebalances (its tables may hold an
    older state): a check run then exited 3 at once; every read waits it out now."""
    moving = (503, {"error": "partition moving between workers; retry in a few seconds"})
    worker.answers = [moving, (200, consent_body("C-1", "marketing", "post"))]
    out = run("consent", "check", "C-1", "--purpose", "marketing", "--channel", "post")
    assert out.code == 0, out.output
    assert len(worker.asked) == 2


def test_an_older_worker_without_the_list_exits_3_saying_upgrade(worker: StandIn) -> None:
    worker.answers = [(404, {"error": "not found"})]
    out = run("request", "list")
    assert out.code == EXIT_UNAVAILABLE
    assert "does not list requests" in out.flat
    assert "upgrade it" in out.flat


@pytest.mark.parametrize("args", [["--type", "holiday"], ["--due-within", "-1"], ["--limit", "0"]])
def test_a_bad_filter_exits_2_before_asking(worker: StandIn, args: list[str]) -> None:
    out = run("request", "list", *args)
    assert out.code == EXIT_BAD_INPUT
    assert worker.asked == []


# --- privops request hold list (the same stand-in worker) -----------------------------------

HOLDS = {
    "subject_id": "C-1",
    "subject_ref": "sr_aaaa",
    "holds": [
        {
            "hold_id": "HOLD-OLD", "subject_id": "C-1", "categories": ["cctv"],
            "reason": "incident 17", "placed_at": "2026-01-02T09:00:00+00:00",
            "released_at": "2026-02-01T10:30:00+00:00", "active": False,
        },
        {
            "hold_id": "HOLD-NEW", "subject_id": "C-1", "categories": ["purchases", "payment"],
            "reason": "claim by the subject", "placed_at": "2026-11-20T08:00:00+00:00",
            "released_at": None, "active": True,
        },
    ],
}  # fmt: skip


def test_a_subjects_holds_are_shown_with_the_id_release_takes(worker: StandIn) -> None:
    worker.answers = [(200, HOLDS)]
    out = run("request", "hold", "list", "--subject", "C-1")
    assert out.code == 0, out.output
    assert worker.asked == ["/holds/C-1"]
    for text in ("HOLD-NEW", "active", "purchases, payment", "claim by the subject"):
        assert text in out.flat
    assert "2026-11-20 08:00:00" in out.flat
    assert "released" in out.flat
    assert "2026-02-01 10:30:00" in out.flat


def test_hold_list_json_is_the_workers_answer_and_none_is_said(worker: StandIn) -> None:
    worker.answers = [(200, HOLDS)]
    out = run("request", "hold", "list", "--subject", "C-1", "--json")
    assert json.loads(out.stdout) == HOLDS
    worker.answers = [(200, {"subject_id": "C-2", "subject_ref": "sr_b", "holds": []})]
    out = run("request", "hold", "list", "--subject", "C-2")
    assert out.code == 0, out.output
    assert out.flat == "no legal holds on C-2"


def test_hold_list_from_an_older_worker_exits_3_saying_upgrade(worker: StandIn) -> None:
    worker.answers = [(404, {"error": "not found"})]
    out = run("request", "hold", "list", "--subject", "C-1")
    assert out.code == EXIT_UNAVAILABLE
    assert "does not list holds" in out.flat
