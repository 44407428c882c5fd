"""The workflow agent lets an erasure waiting for the subject's access response go on
once that response went out (``agents.requests.settle``): the erase tasks follow the
copies, never go beside them (privops.core.fanout.RESPONSE_FIRST)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.core import records as r
from privops.core.topics import AUDIT, COMMANDS, NOTIFICATIONS, task_results_topic
from privops.core.vocab import RequestState, RequestType
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


async def test_the_erase_tasks_go_out_once_the_access_response_did(
    serde: Serde, outbox: Outbox
) -> None:
    known_subject()
    async with workflow.test_context() as agent:
        access = submitted(ACCESS, RequestType.access)
        await put_on(agent, COMMANDS, SUBJECT.encode(), serde.encode(access))
        await wait_for(lambda: len(sent(outbox, r.Export)) == len(TASKED))
        await put_on(agent, COMMANDS, SUBJECT.encode(), serde.encode(erasure(ERASURE)))
        await wait_for(lambda: "erasure_waiting" in audited(outbox, ERASURE))
        assert requests.data[ERASURE]["waits_for"] == [ACCESS]
        assert requests.data[ERASURE]["state"] == RequestState.in_progress.value
        assert sent(outbox, r.Erase) == []

        for system in TASKED:
            export = r.ExportReference(
                location=f"https://exports.allled.example/dsar/{system}/{ACCESS}.json",
                record_count=1,
                checksum="sha256:" + "ab" * 32,
            )
            answer = r.TaskCompleted(
                task_id=f"{ACCESS}:{system}:export",
                request_id=ACCESS,
                system=system,
                answered_at=NOW,
                export=export,
            )
            await put_on(agent, task_results_topic(system), SUBJECT.encode(), serde.encode(answer))
        await wait_for(lambda: len(sent(outbox, r.Erase)) == len(TASKED))

    (note,) = outbox.of(NOTIFICATIONS, r.SubjectNotification)
    assert note.kind == "access_response"
    notified = next(i for i, s in enumerate(outbox.sent) if s.record is note)
    first_erase = next(i for i, s in enumerate(outbox.sent) if isinstance(s.record, r.Erase))
    assert notified < first_erase
    stored = requests.data[ERASURE]
    assert "waits_for" not in stored
    assert stored["state"] == RequestState.awaiting_systems.value
    assert "erasure_resumed" in audited(outbox, ERASURE)
