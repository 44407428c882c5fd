"""The connector contract without Kafka: answers become result records, dispatch, defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from privops.connectors import Answer, Connector
from privops.core import records as r
from privops.core.vocab import Category, System, TaskOutcome

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REF = r.ExportReference(location="/tmp/x.json", record_count=2, checksum="sha256:00")


def task(model: type[r.Task] = r.Erase, **kw: Any) -> r.Task:
    fields: dict[str, Any] = {
        "task_id": "T-1",
        "request_id": "R-1",
        "subject_id": "CUST-0001",
        "system": System.crm,
        "issued_at": NOW,
        "identifiers": {"customer_id": "CUST-0001"},
        "attempt": 3,
    }
    return model.model_validate(fields | kw)


@pytest.mark.parametrize(
    ("answer", "model", "fields"),
    [
        (Answer.completed(4), r.TaskCompleted, {"records_affected": 4, "export": None}),
        (Answer.completed(2, export=REF), r.TaskCompleted, {"records_affected": 2, "export": REF}),
        (
            Answer.retained("why", [Category.cctv]),
            r.TaskRetained,
            {"reason": "why", "categories": [Category.cctv]},
        ),
        (Answer.not_found(), r.NotFound, {}),
        (Answer.failed("busy"), r.TaskFailed, {"reason": "busy", "retryable": True}),
        (Answer.failed("no", retryable=False), r.TaskFailed, {"reason": "no", "retryable": False}),
    ],
)
def test_answers_become_result_records_echoing_the_task(
    answer: Answer, model: type[r.TaskResult], fields: dict[str, object]
) -> None:
    result = answer.result(task(), NOW)
    assert type(result) is model
    assert result.model_dump(include={"task_id", "request_id", "system", "attempt"}) == {
        "task_id": "T-1",
        "request_id": "R-1",
        "system": System.crm,
        "attempt": 3,
    }
    assert result.answered_at == NOW
    for name, value in fields.items():
        assert getattr(result, name) == value


def test_no_answer_sends_nothing() -> None:
    assert Answer.no_answer().result(task(), NOW) is None


@pytest.mark.parametrize(
    ("answer", "final", "label"),
    [
        (Answer.completed(), True, "completed"),
        (Answer.retained("why", [Category.contact]), True, "retained"),
        (Answer.not_found(), True, "not_found"),
        (Answer.failed("no", retryable=False), True, "failed"),
        (Answer.failed("busy"), False, "failed"),  # privops' re-send must execute again
        (Answer.no_answer(), False, "no_answer"),
    ],
)
def test_which_answers_are_final(answer: Answer, final: bool, label: str) -> None:
    assert answer.final is final
    assert answer.label == label


class _EraseOnly(Connector):
    system = System.crm

    async def erase(self, task: r.Erase) -> Answer:
        return Answer.completed(len(task.identifiers))


@pytest.mark.parametrize("model", r.TASKS)
async def test_handle_dispatches_and_refuses_what_is_not_implemented(model: type[r.Task]) -> None:
    answer = await _EraseOnly().handle(task(model))
    if model is r.Erase:
        assert answer == Answer.completed(1)
        return
    assert answer.kind == TaskOutcome.failed
    assert not answer.retryable
    assert answer.reason == f"{model.action} is not supported by this connector"
