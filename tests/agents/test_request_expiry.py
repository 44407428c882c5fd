"""privops' own record of a finished request is deleted once the data map's
``request_records.period_days`` have passed (``workflow.expires_on``): the sweep finds it
due and sends a tick on the subject's partition, and the workflow agent deletes the
record and its request-index entry and audits that it did; a legal hold on the subject
keeps it, and it is looked at again a day later."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from agents import timers
from agents.http import request_json
from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.core import consent as rules
from privops.core import records as r
from privops.core.clock import Clock
from privops.core.facts import directive_fact
from privops.core.request import RequestRecord
from privops.core.topics import REQUEST_INDEX, REQUEST_TICKS
from privops.core.vocab import Category, Purpose, RequestState, RequestType
from streams.context import collaborators
from streams.tables import consent, legal_holds, request_index, requests
from tests.agents.conftest import Outbox
from tests.agents.signers import trust
from tests.agents.test_command_answers import (
    Driver,
    answers,
    audited,
    command,
    submit,
)
from tests.agents.test_workflow_agent import SUBJECT, known_subject

DAYS = collaborators().datamap.request_records.period_days


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The workflow agent trusts the test key (tests.agents.signers) for `dpo`."""
    return trust(monkeypatch, tmp_path)


@pytest.fixture
async def driver(serde: Serde, outbox: Outbox) -> AsyncIterator[Driver]:
    known_subject()
    async with workflow.test_context() as agent:
        yield Driver(agent, serde, outbox)


async def _finished(driver: Driver, request_id: str, **fields: str) -> None:
    """A consent withdrawal told to the DPO: completed at once, no task."""
    sent = await driver.send(
        submit(
            request_id,
            RequestType.consent_withdrawal,
            withdrawn_purpose=Purpose.profiling,
            **fields,
        )
    )
    assert answers(sent)[0].request_state is RequestState.completed
    assert requests.data.get(request_id) is not None
    assert request_index.get(request_id) == SUBJECT


async def _sweep(outbox: Outbox, monkeypatch: pytest.MonkeyPatch, days: int) -> list[r.RequestTick]:
    """The ticks one sweep sends with the worker's clock ``days`` ahead."""
    monkeypatch.setattr(collaborators(), "clock", Clock(timedelta(days=days)))
    collaborators().schedule.ready = True  # as after the start-up rebuild
    start = len(outbox.sent)
    await inspect.unwrap(timers.sweep)()  # the sweep itself, not Faust's timer loop
    return [
        s.record
        for s in outbox.sent[start:]
        if s.topic == REQUEST_TICKS and isinstance(s.record, r.RequestTick)
    ]


def _expiries(ticks: list[r.RequestTick]) -> list[str]:
    return [t.request_id for t in ticks if t.kind == "record_expired"]


async def test_a_finished_request_is_deleted_once_its_days_have_passed(
    driver: Driver, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _finished(driver, "R-exp-1")
    await driver.send(submit("R-exp-open", RequestType.access))  # open: never expires
    # What the DPO sees (`privops request status`): the day the record goes.
    finished = RequestRecord.model_validate(requests.data["R-exp-1"])
    kept_until = collaborators().clock.today() + timedelta(days=DAYS)
    assert request_json(finished)["record_kept_until"] == kept_until.isoformat()
    still_open = RequestRecord.model_validate(requests.data["R-exp-open"])
    assert request_json(still_open)["record_kept_until"] is None

    assert _expiries(await _sweep(outbox, monkeypatch, DAYS - 1)) == []
    ticks = await _sweep(outbox, monkeypatch, DAYS)
    assert _expiries(ticks) == ["R-exp-1"]
    assert {s.key for s in outbox.sent if s.topic == REQUEST_TICKS} == {SUBJECT.encode()}

    sent = await driver.send(ticks[0], topic=REQUEST_TICKS, key=SUBJECT.encode())
    assert requests.data.get("R-exp-1") is None
    assert request_index.get("R-exp-1") is None
    assert (REQUEST_INDEX, b"R-exp-1") in outbox.tombstones  # every worker's index forgets it
    steps = audited(sent)
    assert [(a.action, a.request_id, a.before) for a in steps] == [
        ("request_record_deleted", "R-exp-1", "completed")
    ]
    assert f"kept {DAYS} days" in (steps[0].reason or "")
    assert requests.data.get("R-exp-open") is not None

    # Once deleted, it stays deleted: a second tick (a stale entry) finds nothing.
    again = await driver.send(ticks[0], topic=REQUEST_TICKS, key=SUBJECT.encode())
    assert audited(again) == []
    assert requests.data.get("R-exp-1") is None


async def test_a_legal_hold_on_the_subject_keeps_the_record_and_it_is_looked_at_a_day_later(
    driver: Driver, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _finished(driver, "R-exp-2")
    hold = command(
        r.LegalHoldPlaced,
        "H-exp-2",
        hold_id="H-exp-2",
        subject_id=SUBJECT,
        categories=[Category.interactions],
        reason="litigation",
    )
    assert [type(a) for a in answers(await driver.send(hold))] == [r.CommandAccepted]
    assert legal_holds.data.get(SUBJECT)

    ticks = await _sweep(outbox, monkeypatch, DAYS)
    assert _expiries(ticks) == ["R-exp-2"]
    sent = await driver.send(ticks[0], topic=REQUEST_TICKS, key=SUBJECT.encode())
    assert audited(sent) == []
    assert requests.data.get("R-exp-2") is not None
    assert request_index.get("R-exp-2") == SUBJECT

    assert _expiries(await _sweep(outbox, monkeypatch, DAYS)) == []  # not again today
    assert _expiries(await _sweep(outbox, monkeypatch, DAYS + 1)) == ["R-exp-2"]


async def test_the_rebuilt_schedule_finds_the_finished_requests_that_are_due(
    driver: Driver, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart or a rebalance the schedule is rebuilt from the stored requests:
    a finished one's day comes back with it."""
    await _finished(driver, "R-exp-3")
    collaborators().schedule.clear()
    assert await timers.rebuild() is not None
    assert _expiries(await _sweep(outbox, monkeypatch, DAYS)) == ["R-exp-3"]


async def test_an_erased_subjects_record_is_deleted_not_written_back_scrubbed(
    driver: Driver, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request of an erased subject is scrubbed of its personal values after each
    decision about it (``settle``): after its deletion, that scrub must not write the
    record back."""
    await _finished(driver, "R-exp-4", reason="told us on the phone")  # a scrub drops it
    erasure = r.SubjectDirective(
        directive_id="d-exp-4",
        subject_id=SUBJECT,
        request_id="R-erased",
        kind="suppressed",
        occurred_at=collaborators().clock.now(),
    )
    erased_state, _ = rules.apply_all(None, SUBJECT, [directive_fact(erasure)])
    assert erased_state is not None
    assert erased_state.suppressed
    consent.data[SUBJECT] = erased_state.model_dump(mode="json")

    ticks = await _sweep(outbox, monkeypatch, DAYS)
    sent = await driver.send(ticks[0], topic=REQUEST_TICKS, key=SUBJECT.encode())
    assert [a.action for a in audited(sent)] == ["request_record_deleted"]
    assert requests.data.get("R-exp-4") is None


async def test_an_open_request_linking_to_the_record_keeps_it(
    driver: Driver, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A complaint about a request is answered from that request's record: while the
    complaint is open, the record is kept past its day (review, session 30)."""
    await _finished(driver, "R-exp-5")
    complaint = submit("C-exp-5", RequestType.complaint, linked_request_id="R-exp-5")
    assert answers(await driver.send(complaint))[0].request_state is RequestState.in_progress

    ticks = await _sweep(outbox, monkeypatch, DAYS)
    assert _expiries(ticks) == ["R-exp-5"]
    sent = await driver.send(ticks[0], topic=REQUEST_TICKS, key=SUBJECT.encode())
    assert audited(sent) == []
    assert requests.data.get("R-exp-5") is not None
    assert _expiries(await _sweep(outbox, monkeypatch, DAYS + 1)) == ["R-exp-5"]  # again


async def test_a_record_is_kept_its_days_from_the_last_command_it_answered(
    driver: Driver, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command a record answered (here a duplicate submission, rejected) is answered
    the same on redelivery only while the record is there: it is kept its days from that
    answer too, so a redelivery never finds it gone and starts the request again (review,
    session 30)."""
    await _finished(driver, "R-exp-6")
    await _sweep(outbox, monkeypatch, DAYS - 3)  # the worker's clock three days before
    duplicate = submit(
        "R-exp-6", RequestType.consent_withdrawal, withdrawn_purpose=Purpose.profiling
    )
    first = answers(await driver.send(duplicate))[0]
    assert isinstance(first, r.CommandRejected)
    assert first.reason == "duplicate"

    stale = await _sweep(outbox, monkeypatch, DAYS)  # the day it had before that answer
    assert _expiries(stale) == ["R-exp-6"]
    assert audited(await driver.send(stale[0], topic=REQUEST_TICKS, key=SUBJECT.encode())) == []
    assert requests.data.get("R-exp-6") is not None
    assert _expiries(await _sweep(outbox, monkeypatch, 2 * DAYS - 4)) == []
    assert _expiries(await _sweep(outbox, monkeypatch, 2 * DAYS - 3)) == ["R-exp-6"]
    again = answers(await driver.send(duplicate))[0]  # redelivered meanwhile: the same
    assert isinstance(again, r.CommandRejected)
    assert (again.reason, again.message) == (first.reason, first.message)
