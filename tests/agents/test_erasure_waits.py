"""The workflow agent holds an erasure beside the subject's access request until that
response is out (``agents.requests.settle``, ``privops.core.response_first``): the erase tasks
never go beside the export tasks. A response closing without copies lets it go on at
once; one with copies keeps it waiting, and tells the subject the day it takes them."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from agents.http import request_json
from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.cli.request import status
from privops.core import records as r
from privops.core.fanout import ERASED_WITH_IT
from privops.core.request import RequestRecord
from privops.core.topics import AUDIT, COMMANDS, NOTIFICATIONS, task_results_topic
from privops.core.vocab import RequestState, RequestType, System
from streams.tables import requests
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.signers import trust
from tests.agents.test_workflow_agent import (
    NOW,
    SUBJECT,
    TASKED,
    erasure,
    known_subject,
    submitted,
)

ACCESS, ERASURE = "R-first-access", "R-then-erase"


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return trust(monkeypatch, tmp_path)


def sent(outbox: Outbox, kind: type[r.Task]) -> list[r.Task]:
    return [s.record for s in outbox.on_prefix("privacy.tasks.") if isinstance(s.record, kind)]


def audited(outbox: Outbox, request_id: str) -> list[str]:
    return [a.action for a in outbox.of(AUDIT, r.AuditEvent) if a.request_id == request_id]


async def _waiting(agent: Any, serde: Serde, outbox: Outbox) -> None:
    """The subject's access request sends its exports; then their erasure waits."""
    known_subject()
    access = submitted(ACCESS, RequestType.access)
    await put_on(agent, COMMANDS, SUBJECT.encode(), serde.encode(access))
    await wait_for(lambda: len(sent(outbox, r.Export)) == len(TASKED))
    await put_on(agent, COMMANDS, SUBJECT.encode(), serde.encode(erasure(ERASURE)))
    await wait_for(lambda: "erasure_waiting" in audited(outbox, ERASURE))
    assert requests.data[ERASURE]["waits_for"] == [ACCESS]
    assert requests.data[ERASURE]["state"] == RequestState.in_progress.value
    assert sent(outbox, r.Erase) == []


async def _answered(agent: Any, serde: Serde, *, copy: bool) -> None:
    """Every export of the access request answered: with a copy, or nothing held."""
    for system in TASKED:
        answer = _answer(system, copy=copy)
        await put_on(agent, task_results_topic(system), SUBJECT.encode(), serde.encode(answer))


def _answer(system: System, *, copy: bool) -> r.TaskResult:
    common = {
        "task_id": f"{ACCESS}:{system}:export",
        "request_id": ACCESS,
        "system": system,
        "answered_at": NOW,
    }
    if not copy:
        return r.NotFound(**common)
    export = r.ExportReference(
        location=f"https://exports.allled.example/dsar/{system}/{ACCESS}.json",
        record_count=1,
        checksum="sha256:" + "ab" * 32,
    )
    return r.TaskCompleted(**common, export=export)


async def test_the_erase_tasks_go_out_once_the_access_response_closed_empty(
    serde: Serde, outbox: Outbox
) -> None:
    async with workflow.test_context() as agent:
        await _waiting(agent, serde, outbox)
        await _answered(agent, serde, copy=False)
        await wait_for(lambda: len(sent(outbox, r.Erase)) == len(TASKED))

    (note,) = outbox.of(NOTIFICATIONS, r.SubjectNotification)
    assert note.kind == "access_response"
    notified = next(i for i, s in enumerate(outbox.sent) if s.record is note)
    first_erase = next(i for i, s in enumerate(outbox.sent) if isinstance(s.record, r.Erase))
    assert notified < first_erase
    stored = requests.data[ERASURE]
    assert "waits_for" not in stored  # none left to wait for
    assert stored["state"] == RequestState.awaiting_systems.value
    assert "erasure_resumed" in audited(outbox, ERASURE)


async def test_copies_out_keep_it_waiting_and_the_subject_is_told_until_when(
    serde: Serde, outbox: Outbox
) -> None:
    async with workflow.test_context() as agent:
        await _waiting(agent, serde, outbox)
        await _answered(agent, serde, copy=True)
        await wait_for(lambda: bool(outbox.of(NOTIFICATIONS, r.SubjectNotification)))

    (note,) = outbox.of(NOTIFICATIONS, r.SubjectNotification)
    assert note.kind == "access_response"
    stored = requests.data[ERASURE]
    assert stored["waits_for"] == [ACCESS]
    assert ERASED_WITH_IT.format(day=stored["erase_on"]) in note.message
    assert sent(outbox, r.Erase) == []
    assert "erasure_resumed" not in audited(outbox, ERASURE)


def test_the_view_says_what_an_erasure_waits_for_and_until_when(app: object) -> None:
    """``GET /requests/{id}`` (``privops request status``): the responses it waits for
    and its latest day, while it waits; neither once its work went out or it closed."""
    day = date(2025, 3, 10)
    rec = RequestRecord(
        request_id=ERASURE,
        request_type=RequestType.erasure,
        subject_id=SUBJECT,
        actor="dpo",
        state=RequestState.in_progress,
        received_on=day,
        identity_verified_on=day,
        due_on=date(2025, 4, 10),
        waits_for=[ACCESS],
        erase_on=date(2025, 4, 3),
        created_at=NOW,
    )
    body = request_json(rec)
    assert (body["waits_for"], body["erase_on"]) == ([ACCESS], "2025-04-03")
    assert "2025-04-03" in status._waits_for(body)
    cancelled = request_json(rec.model_copy(update={"state": RequestState.cancelled}))
    assert (cancelled["waits_for"], cancelled["erase_on"]) == ([], None)
