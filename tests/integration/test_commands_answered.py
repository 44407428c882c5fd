"""Issue 12 item 1 acceptance: every command is answered, through the real CLI.

Each rejected command gives its exit code (1 refused, 4 unknown subject or request) and
its reason in words, and has no side effect: no task on any privacy.tasks.<system> topic
and no notification for its request. An accepted one exits 0 with the request's state.
The CLI runs as a subprocess against the session's broker and the module's worker.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import TypeVar

import pytest

from privops.adapters.settings import Settings
from privops.core import records as r
from privops.core.topics import NOTIFICATIONS, tasks_topic
from privops.core.vocab import Channel, LawfulBasis, Purpose, System
from tests.conftest import REPO, WorkerProcess
from tests.integration.helpers import (
    Subject,
    ToProduce,
    http_json,
    produce,
    read_topic,
    wait_for,
)

pytestmark = pytest.mark.integration

EXIT_REJECTED, EXIT_NOT_FOUND = 1, 4
SETTLE_S = 2.0
T = TypeVar("T")  # time for any (wrong) effect of a rejected command to reach its topic


@dataclass
class Cli:
    code: int
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        """Everything printed, on one line (rich wraps long messages)."""
        return " ".join((self.stdout + " " + self.stderr).split())

    @property
    def request_id(self) -> str:
        return self.stdout.splitlines()[0].strip()


def cli(worker: WorkerProcess, *args: str) -> Cli:
    proc = subprocess.run(
        [sys.executable, "-m", "privops.cli.main", "request", *args, "--wait", "30"],
        capture_output=True,
        text=True,
        env={**worker.env, "COLUMNS": "200"},
        cwd=REPO,
        timeout=90,
    )
    return Cli(proc.returncode, proc.stdout, proc.stderr)


def unknown_request_id() -> str:
    return "REQ-" + uuid.uuid4().hex[:12].upper()


def known_subject(settings: Settings, worker: WorkerProcess, uid: str, n: int) -> Subject:
    """A subject the worker has heard of (a CRM customer record), so requests about it
    fail or succeed on their own merits, not as unknown_subject."""
    subject = Subject(uid, n)
    produce(settings, [subject.event(r.CustomerCreated, System.crm)])
    wait_for(
        "the subject to be known",
        lambda: http_json(f"{worker.url}/consent/{subject.id}")[0] == 200,
    )
    return subject


def about(settings: Settings, topic: str, kind: type[T], request_id: str) -> list[T]:
    """The records of `kind` on `topic` that belong to `request_id`."""
    return [
        c.value
        for c in read_topic(settings, topic)
        if isinstance(c.value, kind) and getattr(c.value, "request_id", None) == request_id
    ]


def side_effects(settings: Settings, request_id: str) -> list[object]:
    """Every task and notification about `request_id`, after a moment to let them land."""
    time.sleep(SETTLE_S)
    found: list[object] = []
    for system in System:
        found += about(settings, tasks_topic(system), r.Task, request_id)
    return found + about(settings, NOTIFICATIONS, r.Notification, request_id)


def test_erasure_for_an_unknown_subject_exits_4_with_the_reason(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    out = cli(worker, "erase", "--subject", f"CUST-NOBODY-{uid}", "--verified-now")
    assert out.code == EXIT_NOT_FOUND, out.said
    assert "rejected" in out.said
    assert "no system has reported this subject" in out.said
    assert "unknown_subject" in out.said
    rid = out.request_id
    assert side_effects(local_runtime, rid) == []
    status, _ = http_json(f"{worker.url}/requests/{rid}")
    assert status == 404  # nothing half-applied: no request was created


def test_quiet_rejection_prints_only_the_id_and_exits_4(worker: WorkerProcess, uid: str) -> None:
    out = cli(worker, "erase", "--subject", f"CUST-NOBODY-Q{uid}", "--verified-now", "-q")
    assert out.code == EXIT_NOT_FOUND, out.said
    assert re.fullmatch(r"REQ-\w+\n", out.stdout)
    assert "unknown_subject" in out.stderr


def test_extend_of_an_unknown_request_exits_4(
    local_runtime: Settings, worker: WorkerProcess
) -> None:
    rid = unknown_request_id()
    out = cli(worker, "extend", rid, "--reason", "complex request")
    assert out.code == EXIT_NOT_FOUND, out.said
    assert "the worker knows no request with this id" in out.said
    assert side_effects(local_runtime, rid) == []


def test_verify_of_an_unknown_request_exits_4(
    local_runtime: Settings, worker: WorkerProcess
) -> None:
    rid = unknown_request_id()
    out = cli(worker, "verify", rid)
    assert out.code == EXIT_NOT_FOUND, out.said
    assert "unknown_request" in out.said
    assert side_effects(local_runtime, rid) == []


def test_a_second_extension_is_refused_as_allowed_once(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    subject = known_subject(local_runtime, worker, uid, 1)
    submitted = cli(worker, "access", "--subject", subject.id, "--verified-now")
    assert submitted.code == 0, submitted.said
    rid = submitted.request_id
    first = cli(worker, "extend", rid, "--reason", "numerous requests")
    assert first.code == 0, first.said
    assert "accepted" in first.said

    def extension_notices() -> list[r.SubjectNotification]:
        return about(local_runtime, NOTIFICATIONS, r.SubjectNotification, rid)

    notified = wait_for("the first extension's notice", extension_notices)
    second = cli(worker, "extend", rid, "--reason", "still numerous")
    assert second.code == EXIT_REJECTED, second.said
    assert "once" in second.said  # "an extension is allowed once"
    assert "rejected" in second.said
    time.sleep(SETTLE_S)
    assert len(extension_notices()) == len(notified)  # the subject is not told twice


def test_cancel_of_a_completed_request_exits_1(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    submitted = cli(worker, "complain", "--subject", f"CUST-C{uid}", "--reason", "slow reply")
    assert submitted.code == 0, submitted.said
    rid = submitted.request_id
    answered = cli(worker, "answer", rid, "--reason", "apologised and explained")
    assert answered.code == 0, answered.said
    assert "completed" in answered.said
    before = side_effects(local_runtime, rid)
    out = cli(worker, "cancel", rid, "--reason", "withdrawn")
    assert out.code == EXIT_REJECTED, out.said
    assert "rejected" in out.said
    assert "already finished" in out.said or "does not allow" in out.said
    assert side_effects(local_runtime, rid) == before
    status, body = http_json(f"{worker.url}/requests/{rid}")
    assert (status, body["state"]) == (200, "completed")


def test_lift_for_a_never_restricted_subject_exits_1_and_touches_nothing(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    subject = known_subject(local_runtime, worker, uid, 2)
    out = cli(worker, "lift", "--subject", subject.id, "--verified-now", "--reason", "checked")
    assert out.code == EXIT_REJECTED, out.said
    assert "rejected" in out.said
    assert "restriction" in out.said  # "the subject has no active restriction to lift"
    assert side_effects(local_runtime, out.request_id) == []  # no lift task, no notice


def test_accepted_erasure_exits_0_with_its_state(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    subject = known_subject(local_runtime, worker, uid, 3)
    out = cli(worker, "erase", "--subject", subject.id, "--verified-now")
    assert out.code == 0, out.said
    assert re.search(r"accepted, state (in_progress|awaiting_systems)", out.said), out.said
    assert re.search(r"due \d{4}-\d{2}-\d{2}", out.said), out.said
    rid = out.request_id
    tasks = wait_for(
        "the erasure task for the CRM",
        lambda: about(local_runtime, tasks_topic(System.crm), r.Task, rid),
    )
    assert tasks


def test_a_withdrawal_told_to_the_dpo_withdraws_that_consent_only(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    """`privops request withdraw` (review, session 25): the DPO had no verb for it, and a
    withdrawal withdrew every consent on every channel."""
    subject = known_subject(local_runtime, worker, uid, 9)
    grants: list[ToProduce] = [
        subject.event(
            r.ConsentGiven,
            System.marketing,
            minutes=1,
            purpose=Purpose.marketing,
            channel=channel,
            basis=LawfulBasis.consent,
        )
        for channel in (Channel.email, Channel.sms)
    ]
    produce(local_runtime, grants)

    def allowed(channel: Channel) -> object:
        url = f"{worker.url}/consent/{subject.id}?purpose=marketing&channel={channel.value}"
        return http_json(url)[1].get("allowed")

    wait_for("both consents", lambda: allowed(Channel.email) and allowed(Channel.sms))
    out = cli(
        worker, "withdraw", "--subject", subject.id, "--purpose", "marketing", "--channel", "email"
    )
    assert out.code == 0, out.said
    wait_for("email withdrawn", lambda: allowed(Channel.email) is False)
    assert allowed(Channel.sms) is True
