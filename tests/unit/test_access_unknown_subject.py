"""An access request from someone no system has reported (UK GDPR Art. 15(1)): recorded,
on the clock, and answered that we hold nothing (review, session 27: it was refused
``unknown_subject``, with no record, no due date and no answer)."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Any

import pytest

from privops import contract
from privops.adapters.avro import latest_schemas
from privops.core import deadlines, sealing
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.personal import personal_paths
from privops.core.sealing import personal_values_in
from privops.core.topics import NOTIFICATIONS
from privops.core.vocab import RequestState, RequestType
from tests.unit.test_workflow import (
    NOW,
    TODAY,
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    identity_map,
    of_type,
    submit,
    tasks_out,
)

S = RequestState


@pytest.fixture
def stranger(ctx: wf.Context) -> wf.Context:  # noqa: F811
    """The context the workflow agent builds for a subject no system has reported."""
    return dataclasses.replace(ctx, identity=None, known_subject=False)


def _nothing_held_answer(outcome: wf.Outcome) -> None:
    """The outcome answers "we hold nothing" and does nothing else: no task, no
    directive (which would make a consent state), nothing sealed (which would make a key)."""
    assert tasks_out(outcome) == []
    assert {o.topic for o in outcome.out} == {NOTIFICATIONS}
    (note,) = of_type(outcome, r.SubjectNotification)
    # The shipped data map's CCTV is searched by day, hours and place: the subject is
    # told what to give for it.
    assert (note.kind, note.message) == ("access_response", wf.NOTHING_HELD + wf.SEARCH_OFFER)
    assert (note.document, note.exports) == (None, [])
    paths = personal_paths(latest_schemas(contract.schema_dir())[note.fullname()].schema)
    assert not personal_values_in(note.model_dump(mode="python"), paths)
    rec = outcome.record
    assert rec is not None
    assert (rec.state, rec.tasks, rec.manifest) == (S.completed, {}, None)
    assert not sealing.personal_values(rec.model_dump(mode="json"), sealing.REQUESTS)


def test_a_verified_access_request_is_recorded_and_answered_that_nothing_is_held(
    stranger: wf.Context,
) -> None:
    outcome = wf.on_command(None, submit(RequestType.access), stranger)
    assert outcome.rejected is None, outcome.message
    _nothing_held_answer(outcome)
    rec = outcome.record
    assert rec is not None
    assert rec.clock_start == TODAY
    assert rec.due_on == deadlines.due_date(TODAY) == date(2025, 4, 10)
    assert rec.closed_at == NOW
    answer = outcome.answer
    assert isinstance(answer, r.CommandAccepted)
    assert (answer.request_state, answer.due_on) == (S.completed, rec.due_on)
    # The DPO is told why, so a mistyped subject id does not pass unnoticed.
    assert "no system has reported this subject" in (answer.message or "")
    assert [a.action for a in outcome.audit] == [
        "request_received",
        "request_transitioned",
        "request_transitioned",
        "notification_sent",
    ]


def test_identity_is_verified_before_the_answer(stranger: wf.Context) -> None:
    """As for a held subject: "nothing" at once where others wait would tell a stranger
    which of the two they asked about."""
    waiting = wf.on_command(None, submit(RequestType.access, verified=False), stranger)
    assert waiting.rejected is None, waiting.message
    rec = waiting.record
    assert rec is not None
    assert rec.state is S.identity_unverified
    assert waiting.out == []
    later = dataclasses.replace(stranger, now=NOW + timedelta(days=3), today=TODAY + timedelta(3))
    verified = wf.on_command(rec, command(r.IdentityVerified, verified_on=later.today), later)
    assert verified.rejected is None, verified.message
    _nothing_held_answer(verified)
    assert verified.record is not None
    assert verified.record.due_on == deadlines.due_date(later.today)


NOTE = "phoned from 12 Acacia Avenue asking what we hold"


@pytest.mark.parametrize("verified", [True, False], ids=["verified", "awaiting-identity"])
def test_the_dpos_note_on_a_strangers_access_request_is_not_kept(
    stranger: wf.Context, verified: bool
) -> None:
    """Kept, the note is sealed under the subject's key, and the flush makes one for the
    stranger, answered or still waiting for their ID (review, session 27). The DPO is
    told it was not kept."""
    outcome = wf.on_command(
        None, submit(RequestType.access, verified=verified, reason=NOTE), stranger
    )
    assert outcome.rejected is None, outcome.message
    rec = outcome.record
    assert rec is not None
    assert rec.state is (S.completed if verified else S.identity_unverified)
    assert rec.reason is None
    assert not sealing.personal_values(rec.model_dump(mode="json"), sealing.REQUESTS)
    assert wf.NOTE_NOT_KEPT in (outcome.message or "")
    if verified:
        _nothing_held_answer(outcome)
        assert "no system has reported this subject" in (outcome.message or "")


def test_a_note_given_to_a_known_subjects_access_request_is_kept(ctx: wf.Context) -> None:  # noqa: F811
    outcome = wf.on_command(None, submit(RequestType.access, reason=NOTE), ctx)
    assert outcome.record is not None
    assert outcome.record.reason == NOTE
    assert wf.NOTE_NOT_KEPT not in (outcome.message or "")


def test_a_subject_reported_before_verification_gets_the_ordinary_access_response(
    stranger: wf.Context,
) -> None:
    rec = wf.on_command(None, submit(RequestType.access, verified=False), stranger).record
    assert rec is not None
    known = dataclasses.replace(stranger, identity=identity_map(), known_subject=True)
    verified = wf.on_command(rec, command(r.IdentityVerified, verified_on=TODAY), known)
    assert verified.record is not None
    assert verified.record.state is S.awaiting_systems
    assert tasks_out(verified)
    assert of_type(verified, r.SubjectNotification) == []


def test_a_redelivered_access_request_is_answered_as_before(stranger: wf.Context) -> None:
    submitted = submit(RequestType.access)
    first = wf.on_command(None, submitted, stranger)
    again = wf.on_command(first.record, submitted, stranger)
    assert (again.record, again.out, again.audit) == (None, [], [])
    assert isinstance(first.answer, r.CommandAccepted)
    assert isinstance(again.answer, r.CommandAccepted)
    assert again.answer.message == first.answer.message


@pytest.mark.parametrize(
    ("request_type", "fields"),
    [
        (RequestType.erasure, {}),
        (RequestType.restriction, {}),
        (RequestType.restriction_lift, {}),
        (RequestType.rectification, {"rectification": {"postcode": "AB1 2CD"}}),
        (RequestType.objection, {"objection_scope": "direct_marketing"}),
        (RequestType.consent_withdrawal, {}),
    ],
)
def test_other_rights_about_a_subject_no_system_reported_are_still_refused(
    stranger: wf.Context, request_type: RequestType, fields: dict[str, Any]
) -> None:
    """Nothing to act on, and acting would send directives making a consent state for
    a subject id no system gave: refused, pointing the DPO at an access request."""
    outcome = wf.on_command(None, submit(request_type, **fields), stranger)
    assert outcome.rejected == "unknown_subject"
    assert (outcome.record, outcome.out) == (None, [])
    assert "access request" in (outcome.message or "")
