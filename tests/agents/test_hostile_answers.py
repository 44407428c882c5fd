"""Hostile answers on a system's results topic, and a submission reusing another
partition's request id (an independent review, session 22). No answer may stop the
worker (an error the workflow does not turn into a dead letter or a rejection fails the
state, and the restart reads the same answer again), make a record the broker refuses,
or keep another system's data through an erasure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.core import records as r
from privops.core.topics import AUDIT, COMMAND_RESULTS, COMMANDS, DEADLETTER, task_results_topic
from privops.core.vocab import Category, System
from streams.state import state
from streams.tables import request_index, requests
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.signers import trust
from tests.agents.test_workflow_agent import NOW, SUBJECT, erasure, known_subject


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return trust(monkeypatch, tmp_path)


def failed(request_id: str, reason: str, task_id: str | None = None) -> r.TaskFailed:
    return r.TaskFailed(
        task_id=task_id or f"{request_id}:crm:erase",
        request_id=request_id,
        system=System.crm,
        answered_at=NOW,
        reason=reason,
        retryable=True,
    )


async def answer(agent: Any, serde: Serde, result: r.TaskResult) -> None:
    await put_on(agent, task_results_topic(result.system), SUBJECT.encode(), serde.encode(result))


async def submitted(agent: Any, serde: Serde, request_id: str) -> dict[str, Any]:
    known_subject()
    await put_on(agent, COMMANDS, SUBJECT.encode(), serde.encode(erasure(request_id)))
    await wait_for(lambda: requests.data.get(request_id) is not None)
    stored: dict[str, Any] = requests.data[request_id]
    return stored


@pytest.mark.parametrize(
    "request_id",
    ["a" * 200_000 + "@", "ann@example.com", "R" * 129],
    ids=["quadratic-for-the-email-pattern", "email-shaped", "too-long"],
)
async def test_an_answer_whose_ids_privops_never_made_is_a_dead_letter(
    serde: Serde, outbox: Outbox, request_id: str
) -> None:
    """The first held the event loop for minutes in the email pattern; the second
    stopped the worker (the audit refuses an email-shaped request id)."""
    async with workflow.test_context() as agent:
        await answer(agent, serde, failed(request_id, "busy"))
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    (letter,) = outbox.of(DEADLETTER, r.DeadLetter)
    assert letter.reason == "invalid_record"
    assert "ann@example.com" not in letter.error
    assert state.failure is None


async def test_a_reason_that_becomes_a_phone_number_when_cut_is_withheld(
    serde: Serde, outbox: Outbox
) -> None:
    """The reason is audited as "crm: <reason>", cut to 500 characters: cut after the
    redaction, "07700900123X" (no number: a letter follows) became "07700900123", and
    the audit refused it, failing the state."""
    async with workflow.test_context() as agent:
        await submitted(agent, serde, "R-hostile-1")
        reason = "x" * (500 - len("crm: ") - 12) + " 07700900123X"
        await answer(agent, serde, failed("R-hostile-1", reason))
        await wait_for(
            lambda: any(a.action == "task_answered" for a in outbox.of(AUDIT, r.AuditEvent))
        )
    assert state.failure is None
    (step,) = [a for a in outbox.of(AUDIT, r.AuditEvent) if a.action == "task_answered"]
    assert step.reason is not None
    assert "07700900123" not in step.reason


async def test_a_long_reason_is_kept_cut(serde: Serde, outbox: Outbox) -> None:
    async with workflow.test_context() as agent:
        await submitted(agent, serde, "R-hostile-2")
        await answer(agent, serde, failed("R-hostile-2", "y" * 1_000_000))
        await wait_for(
            lambda: (
                requests.data["R-hostile-2"]["tasks"]["R-hostile-2:crm:erase"]["outcome_reason"]
                is not None
            )
        )
    kept = requests.data["R-hostile-2"]["tasks"]["R-hostile-2:crm:erase"]["outcome_reason"]
    assert kept == "y" * 500
    assert state.failure is None


def retained(request_id: str, categories: list[Category]) -> r.TaskRetained:
    return r.TaskRetained(
        task_id=f"{request_id}:crm:erase",
        request_id=request_id,
        system=System.crm,
        answered_at=NOW,
        reason="kept by law",
        categories=categories,
    )


async def test_a_system_cannot_keep_what_its_task_does_not_cover(
    serde: Serde, outbox: Outbox
) -> None:
    """crm keeping payment data would keep the orders system's retained keys through
    the erasure (kept items decide which keys survive): the answer closes crm's task,
    what it covers is kept, the rest is not, and the audit says so. (Refused, the same
    answer would come back from the connector's ledger at every re-send.)"""
    async with workflow.test_context() as agent:
        stored = await submitted(agent, serde, "R-hostile-3")
        crm_task = stored["tasks"]["R-hostile-3:crm:erase"]
        assert Category.payment.value not in crm_task["categories"]
        covered = Category(crm_task["categories"][0])
        said = [Category.payment, covered, Category.credit]
        await answer(agent, serde, retained("R-hostile-3", said))
        await wait_for(
            lambda: (
                requests.data["R-hostile-3"]["tasks"]["R-hostile-3:crm:erase"]["state"]
                == "retained"
            )
        )
    kept = [k["category"] for k in requests.data["R-hostile-3"]["kept"]]
    assert kept == [covered.value]
    (step,) = [a for a in outbox.of(AUDIT, r.AuditEvent) if a.action == "retained_outside_task"]
    assert step.after == "credit,payment"
    assert state.failure is None


async def test_a_category_said_many_times_is_kept_once(serde: Serde, outbox: Outbox) -> None:
    """Nine thousand of one category made a 10 KB answer a 9.6 MB request record."""
    async with workflow.test_context() as agent:
        stored = await submitted(agent, serde, "R-hostile-4")
        covered = Category(stored["tasks"]["R-hostile-4:crm:erase"]["categories"][0])
        await answer(agent, serde, retained("R-hostile-4", [covered] * 9_000))
        await wait_for(lambda: bool(requests.data["R-hostile-4"].get("kept")))
    assert len(requests.data["R-hostile-4"]["kept"]) == 1


@pytest.mark.parametrize(
    "export",
    [
        {"checksum": "x" * 900_000},
        {"checksum": "sha256:00", "media_type": "application/" + "x" * 900_000},
        {"checksum": "sha256:\x00ab"},
        {"checksum": "sha256:ab\r\n"},
    ],
    ids=["huge-checksum", "huge-media-type", "control-character", "trailing-newline"],
)
async def test_a_copy_described_past_any_bound_is_refused_as_a_final_failure(
    serde: Serde, outbox: Outbox, export: dict[str, Any]
) -> None:
    """Kept on the request record, the manifest and the subject's notification, a 900 kB
    checksum made each over Kafka's limit: the flush failed, the worker stopped, and every
    worker after it read the same answer again (review, session 43). Refused where it
    comes in (not by the stored model, which records written before must still read),
    as a final failure the DPO follows up: a dead letter would have been answered the
    same from the connector's ledger at every re-send, then escalated as silent."""
    async with workflow.test_context() as agent:
        await submitted(agent, serde, "R-hostile-5")
        ref = r.ExportReference.model_construct(
            location="https://exports.example/crm/R-hostile-5.json", record_count=1, **export
        )
        done = r.TaskCompleted.model_construct(
            task_id="R-hostile-5:crm:erase",
            request_id="R-hostile-5",
            system=System.crm,
            answered_at=NOW,
            attempt=1,
            records_affected=1,
            export=ref,
        )
        await answer(agent, serde, done)
        await wait_for(
            lambda: any(a.action == "export_refused" for a in outbox.of(AUDIT, r.AuditEvent))
        )
    (step,) = [a for a in outbox.of(AUDIT, r.AuditEvent) if a.action == "export_refused"]
    assert step.reason is not None
    assert step.reason.startswith("export_not_described: the ")
    assert "is not at most 256 printable characters" in step.reason
    task = requests.data["R-hostile-5"]["tasks"]["R-hostile-5:crm:erase"]
    assert (task["state"], task["export"]) == ("failed", None)
    assert outbox.on(DEADLETTER) == []
    assert state.failure is None


def test_a_stored_copy_of_before_the_bound_still_reads() -> None:
    """Request records hold the model: one written before the bound (an empty checksum,
    a sha512 one, a trailing newline) must still read (review of session 43's first
    bound, on the model itself)."""
    for checksum in ("", "sha512:" + "ab" * 64, "sha256:ab\n", "x" * 300):
        ref = r.ExportReference(location="x", record_count=1, checksum=checksum)
        assert r.ExportReference.model_validate(ref.model_dump()).checksum == checksum


def test_a_copy_naming_a_category_many_times_keeps_it_once() -> None:
    ref = r.ExportReference(
        location="x", record_count=1, checksum="sha256:00", categories=[Category.contact] * 9_000
    )
    assert ref.categories == [Category.contact]


async def test_a_request_id_another_subjects_request_has_is_a_duplicate(
    serde: Serde, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """That request lives on another partition (the request index says whose it is),
    where this partition's duplicate check cannot see it: accepted, the index, the HTTP
    view and the CLI would have named this subject for the other request."""
    request_index._set("R-taken", "S-someone-else")  # as read from the topic
    async with workflow.test_context() as agent:
        known_subject()
        await put_on(agent, COMMANDS, SUBJECT.encode(), serde.encode(erasure("R-taken")))
        await wait_for(lambda: bool(outbox.on(COMMAND_RESULTS)))
    (answer_,) = outbox.of(COMMAND_RESULTS, r.CommandRejected)
    assert answer_.reason == "duplicate"
    assert requests.data.get("R-taken") is None
    assert request_index.get("R-taken") == "S-someone-else"
    assert outbox.on_prefix("privacy.tasks.") == []


@pytest.mark.usefixtures("app")
def test_audit_text_is_redacted_before_it_is_cut() -> None:
    """Cut first, an address running across the 500th character kept its first part in
    the ten-year audit ("john.smith@exampl"); a phone number, 7 of its 11 digits."""
    from streams.audit import WITHHELD, _clean

    assert "john.smith" not in (_clean("r" * 482 + " john.smith@example.com") or "")
    assert "0770090" not in (_clean("r" * 490 + " 07700 900123 ok") or "")
    # No number until the cut makes one (a letter glued to it): withheld.
    assert _clean("x" * 488 + " 07700900123X") == WITHHELD
