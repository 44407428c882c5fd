"""Requests made for the subject by someone else: a solicitor with their written
authority, an attorney, a Court of Protection deputy, a parent for a child (ICO, right of
access: "requests made on behalf of others"; the third party shows their entitlement).

The request names who and in what capacity (``privops request access --representative
... --capacity ...``, sealed). One that changes or discloses data waits, as for the
identity, for the evidence of their authority (``privops request authority``, or
``--authority-received`` with the request); its clock starts on the later of the two.
One that does neither (an objection, a consent withdrawal, a complaint) is acted on as
the subject's own would be. The notices about a request go to the representative once
their authority is recorded, to the subject before."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from privops import contract
from privops.adapters.avro import Codec
from privops.cli import request as request_cli
from privops.cli.common import console
from privops.cli.request import follow_up
from privops.cli.request import status as status_cli
from privops.cli.request import submit as submit_cli
from privops.core import admission, deadlines
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.personal import WITHHELD
from privops.core.request import FOR_REPRESENTATIVE, MADE_FOR_YOU, MADE_IN_YOUR_NAME, Refused
from privops.core.vocab import (
    Capacity,
    ObjectionScope,
    RefusalGround,
    RequestState,
    RequestType,
    TaskAction,
)
from tests.unit.test_workflow import (
    NOW,
    SUBJECT,
    TODAY,
    answer_all,
    at,
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    of_type,
    submit,
)

SOLICITOR = "Smith & Co Solicitors, ref AJ/22, post@smithco.example"
"""Who makes the request, in the words the DPO typed from their letter."""
S = RequestState


def by_solicitor(
    context: wf.Context, request_type: RequestType = RequestType.access, **kw: Any
) -> wf.Outcome:
    fields: dict[str, Any] = {"representative": SOLICITOR, "capacity": Capacity.authorised}
    return wf.on_command(None, submit(request_type, **(fields | kw)), context)


def authority(rec: wf.RequestRecord, context: wf.Context, day: Any = TODAY) -> wf.Outcome:
    return wf.on_command(rec, command(r.AuthorityReceived, received_on=day), context)


def later(context: wf.Context, days: int) -> wf.Context:
    return at(context, NOW + timedelta(days=days))


# --- the wait ------------------------------------------------------------------------------


def test_no_work_and_no_clock_before_the_authority_arrives(ctx: wf.Context) -> None:  # noqa: F811
    outcome = by_solicitor(ctx)  # identity verified the day received
    assert outcome.rejected is None, outcome.message
    rec = outcome.record
    assert rec is not None
    assert rec.state is S.identity_unverified
    assert [h.event for h in rec.history] == ["submitted", "authority_required"]
    assert (rec.tasks, outcome.out) == ({}, [])
    assert (rec.clock_start, rec.due_on) == (None, None)
    assert (rec.representative, rec.capacity) == (SOLICITOR, Capacity.authorised)


def test_the_authority_starts_the_work_and_the_clock(ctx: wf.Context) -> None:  # noqa: F811
    rec = by_solicitor(ctx).record
    assert rec is not None
    three = later(ctx, 3)
    outcome = authority(rec, three, three.today)
    assert outcome.rejected is None, outcome.message
    done = outcome.record
    assert done is not None
    assert done.state is S.awaiting_systems
    assert [h.event for h in done.history][-2:] == ["identity_verified", "tasks_sent"]
    assert f"{wf.AUTHORITY_RECEIVED}{three.today}; due " in repr(outcome.audit)
    assert {t.action for t in done.tasks.values()} == {TaskAction.export}
    assert done.authority_received_on == three.today
    assert done.clock_start == three.today  # not the day the identity was verified
    assert done.due_on == deadlines.due_date(three.today)


def test_the_identity_after_the_authority_starts_it_and_the_clock_takes_the_later(
    ctx: wf.Context,  # noqa: F811
) -> None:
    rec = by_solicitor(ctx, verified=False).record
    assert rec is not None
    assert [h.event for h in rec.history] == ["submitted", "identity_required"]
    first = authority(rec, later(ctx, 2), TODAY + timedelta(days=2))
    assert first.rejected is None, first.message
    waiting = first.record
    assert waiting is not None
    assert waiting.state is S.identity_unverified  # the identity is still to come
    assert waiting.tasks == {}
    assert waiting.clock_start is None
    (step,) = first.audit
    assert step.reason == f"{wf.AUTHORITY_RECEIVED}{TODAY + timedelta(days=2)}; no clock yet"
    five = later(ctx, 5)
    verified = command(
        r.IdentityVerified,
        verified_on=five.today,
        information_received_on=TODAY + timedelta(days=4),
    )
    outcome = wf.on_command(waiting, verified, five)
    done = outcome.record
    assert done is not None
    assert done.state is S.awaiting_systems
    assert done.clock_start == TODAY + timedelta(days=4)  # the identity came later


def test_the_identity_verified_while_the_authority_is_awaited_starts_nothing(
    ctx: wf.Context,  # noqa: F811
) -> None:
    rec = by_solicitor(ctx, verified=False).record
    assert rec is not None
    outcome = wf.on_command(rec, command(r.IdentityVerified, verified_on=TODAY), ctx)
    assert outcome.rejected is None, outcome.message
    waiting = outcome.record
    assert waiting is not None
    assert waiting.state is S.identity_unverified
    assert (waiting.identity_verified_on, waiting.tasks) == (TODAY, {})
    assert waiting.clock_start is None
    assert outcome.message == wf.IDENTITY_NOT_AUTHORITY
    done = authority(waiting, ctx).record
    assert done is not None
    assert done.state is S.awaiting_systems
    assert done.clock_start == TODAY


def test_authority_given_with_the_request_starts_it_at_once(ctx: wf.Context) -> None:  # noqa: F811
    outcome = by_solicitor(ctx, RequestType.erasure, authority_received_on=TODAY)
    rec = outcome.record
    assert rec is not None
    assert rec.state is S.awaiting_systems
    assert rec.clock_start == TODAY
    assert [h.event for h in rec.history] == ["submitted", "identity_verified", "tasks_sent"]
    assert f"{wf.AUTHORITY_RECEIVED}{TODAY}" in [step.reason for step in outcome.audit]


@pytest.mark.parametrize(
    ("request_type", "kw"),
    [
        (RequestType.objection, {"objection_scope": ObjectionScope.direct_marketing}),
        (RequestType.consent_withdrawal, {}),
        (RequestType.complaint, {}),
    ],
)
def test_a_request_that_changes_or_discloses_nothing_does_not_wait(
    ctx: wf.Context,  # noqa: F811
    request_type: RequestType,
    kw: dict[str, Any],
) -> None:
    outcome = by_solicitor(ctx, request_type, verified=False, **kw)
    assert outcome.rejected is None, outcome.message
    rec = outcome.record
    assert rec is not None
    assert rec.state is not S.identity_unverified
    assert "authority_required" not in [h.event for h in rec.history]
    assert rec.clock_start == TODAY


# --- the notices go to the representative -----------------------------------------------------


def test_the_response_goes_to_the_representative(ctx: wf.Context) -> None:  # noqa: F811
    rec = by_solicitor(ctx, authority_received_on=TODAY).record
    assert rec is not None
    _, last = answer_all(rec, ctx)
    (note,) = of_type(last, r.SubjectNotification)
    assert note.kind == "access_response"
    assert note.representative == SOLICITOR
    assert note.message.startswith(FOR_REPRESENTATIVE)
    assert SOLICITOR not in note.message  # the notice's text is not sealed
    assert SOLICITOR not in repr(last.audit)
    (sent,) = [step for step in last.audit if step.action == "notification_sent"]
    assert sent.reason == "representative"  # the audit says who was told


def test_the_subjects_own_request_is_answered_to_them(ctx: wf.Context) -> None:  # noqa: F811
    rec = wf.on_command(None, submit(RequestType.access), ctx).record
    assert rec is not None
    _, last = answer_all(rec, ctx)
    (note,) = of_type(last, r.SubjectNotification)
    assert note.representative is None
    assert not note.message.startswith(FOR_REPRESENTATIVE)


# --- refusal --------------------------------------------------------------------------------


def test_refused_while_the_authority_is_not_shown(ctx: wf.Context) -> None:  # noqa: F811
    rec = by_solicitor(ctx).record  # the identity verified, the authority not
    assert rec is not None
    refusal = command(
        r.RequestRefused, ground=RefusalGround.identity_not_established, reason="No authority."
    )
    outcome = wf.on_command(rec, refusal, ctx)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.state is S.refused
    (note,) = of_type(outcome, r.SubjectNotification)
    # Not to someone not shown to be entitled: to the subject (Art. 12(4)), whom it
    # tells that someone asked in their name; the DPO answers the requester by letter.
    assert note.representative is None
    assert note.message.startswith(MADE_IN_YOUR_NAME + wf.NO_AUTHORITY_SHOWN)
    assert "subject notified" in (outcome.message or "")


def test_notices_go_to_the_subject_until_the_authority_is_recorded(
    ctx: wf.Context,  # noqa: F811
) -> None:
    """An objection is acted on at once; what became of it is told to the subject while
    the representative has not shown they may act for them (telling them would
    disclose that the subject is a customer, and the DPO's reasons), and to the
    representative once they have."""
    withdrawn = by_solicitor(ctx, RequestType.consent_withdrawal, verified=False)
    assert withdrawn.record is not None
    assert withdrawn.record.state is S.completed
    (note,) = of_type(withdrawn, r.SubjectNotification)
    assert note.representative is None
    assert note.message.startswith(MADE_IN_YOUR_NAME)  # someone asked in their name
    objection = by_solicitor(
        ctx, RequestType.objection, objection_scope=ObjectionScope.legitimate_interest
    ).record
    assert objection is not None
    decision = command(r.ObjectionDecided, accepted=True, reason="We stop.")
    before = wf.on_command(objection, decision, ctx)
    (note,) = of_type(before, r.SubjectNotification)
    assert note.representative is None
    shown = authority(objection, ctx)
    assert shown.rejected is None, shown.message
    assert shown.record is not None
    assert shown.record.state is S.in_progress  # recorded; nothing else moves
    after = wf.on_command(shown.record, decision, ctx)
    (note,) = of_type(after, r.SubjectNotification)
    assert note.representative == SOLICITOR
    assert note.message.startswith(FOR_REPRESENTATIVE)
    assert "representative notified" in (after.message or "")
    again = authority(shown.record, later(ctx, 1), TODAY + timedelta(days=1))
    assert again.rejected == "invalid_transition"  # its notices changed hands that day


def test_not_refused_on_identity_once_both_are_shown(ctx: wf.Context) -> None:  # noqa: F811
    rec = by_solicitor(ctx, authority_received_on=TODAY).record
    assert rec is not None
    refusal = command(r.RequestRefused, ground=RefusalGround.identity_not_established, reason="No.")
    outcome = wf.on_command(rec, refusal, ctx)
    assert outcome.rejected is not None
    assert f"the representative's authority received on {TODAY}" in (outcome.message or "")


# --- what is refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"capacity": None}, "say in what capacity the representative acts (capacity: author"),
        ({"representative": None}, "a capacity or a day the authority arrived belongs to"),
        (
            {"representative": None, "capacity": None, "authority_received_on": TODAY},
            "a capacity or a day the authority arrived belongs to",
        ),
        ({"representative": "  "}, "representative is empty"),
        ({"representative": "Smith\x1b[2J & Co"}, "representative holds a control character"),
        ({"representative": "Smith\u202e & Co"}, "representative holds a control character"),
        ({"representative": "x" * 501}, "representative is 501 characters: at most 500"),
    ],
)
def test_a_malformed_representation_is_refused(
    ctx: wf.Context,  # noqa: F811
    kw: dict[str, Any],
    message: str,
) -> None:
    outcome = by_solicitor(ctx, **kw)
    assert outcome.rejected == "invalid_command"
    assert message in (outcome.message or "")
    assert outcome.record is None
    given = kw.get("representative")
    if given and given.strip():
        assert given.strip() not in (outcome.message or "")  # never repeated


def test_a_no_break_space_is_a_space(ctx: wf.Context) -> None:  # noqa: F811
    outcome = by_solicitor(ctx, representative="Smith\u00a0& Co")
    assert outcome.rejected is None, outcome.message


def test_the_authority_dates_are_checked(ctx: wf.Context) -> None:  # noqa: F811
    early = submit(
        RequestType.access,
        representative=SOLICITOR,
        capacity=Capacity.attorney,
        authority_received_on=TODAY - timedelta(days=1),
    )
    with pytest.raises(Refused, match=r"authority_received_on .* is earlier than received_on"):
        admission.check_dates(early, None, TODAY)
    rec = by_solicitor(ctx).record
    assert rec is not None
    before = command(r.AuthorityReceived, received_on=TODAY - timedelta(days=1))
    with pytest.raises(Refused, match="is earlier than the request's received_on"):
        admission.check_dates(before, rec, TODAY)
    ahead = command(r.AuthorityReceived, received_on=TODAY + timedelta(days=1))
    with pytest.raises(Refused, match="is after today"):
        admission.check_dates(ahead, rec, TODAY)


def test_authority_only_for_a_representative_and_corrected_only_while_nothing_runs(
    ctx: wf.Context,  # noqa: F811
) -> None:
    own = wf.on_command(None, submit(RequestType.access, verified=False), ctx).record
    assert own is not None
    refused = authority(own, ctx)
    assert refused.rejected == "invalid_command"
    assert "made by the subject, not a representative" in (refused.message or "")
    rec = by_solicitor(ctx, verified=False).record
    assert rec is not None
    mistyped = authority(rec, later(ctx, 1), TODAY + timedelta(days=1)).record
    assert mistyped is not None
    # Still waiting for the identity: no clock runs, so the day may be put right.
    fixed = authority(mistyped, later(ctx, 1), TODAY)
    assert fixed.rejected is None, fixed.message
    assert fixed.record is not None
    assert fixed.record.authority_received_on == TODAY
    (step,) = fixed.audit
    assert f"(corrected from {TODAY + timedelta(days=1)})" in (step.reason or "")
    verified = wf.on_command(fixed.record, command(r.IdentityVerified, verified_on=TODAY), ctx)
    running = verified.record
    assert running is not None
    assert running.state is S.awaiting_systems
    again = authority(running, later(ctx, 2), TODAY + timedelta(days=2))
    assert again.rejected == "invalid_transition"
    assert f"recorded already (received {TODAY})" in (again.message or "")


def test_no_second_identity_while_the_authority_is_awaited(ctx: wf.Context) -> None:  # noqa: F811
    """The first moved nothing on; a second would move the day the clock counts from."""
    rec = by_solicitor(ctx).record  # identity verified with the request
    assert rec is not None
    five = later(ctx, 5)
    outcome = wf.on_command(rec, command(r.IdentityVerified, verified_on=five.today), five)
    assert outcome.rejected == "invalid_transition"
    assert f"verified on {TODAY} already" in (outcome.message or "")


def test_no_correction_once_the_clock_runs(ctx: wf.Context) -> None:  # noqa: F811
    """The identity information arrived, not yet checked: the clock runs from it and the
    authority's day, though the request still waits; a second day would move a running
    deadline (or erase a breach)."""
    rec = by_solicitor(ctx, verified=False, identity_received_on=TODAY).record
    assert rec is not None
    first = authority(rec, later(ctx, 1), TODAY + timedelta(days=1)).record
    assert first is not None
    assert first.state is S.identity_unverified
    assert first.clock_start == TODAY + timedelta(days=1)
    moved = authority(first, later(ctx, 2), TODAY)
    assert moved.rejected == "invalid_transition"
    assert "its clock runs" in (moved.message or "")


def test_details_the_cli_could_not_seal_are_not_kept(ctx: wf.Context) -> None:  # noqa: F811
    """The key service made no key for the subject (privops holds nothing of them), so
    the CLI sent a placeholder: the request stands, the details are not kept."""
    outcome = by_solicitor(ctx, representative=WITHHELD)
    assert outcome.rejected is None, outcome.message
    rec = outcome.record
    assert rec is not None
    assert (rec.representative, rec.capacity) == (None, Capacity.authorised)
    assert outcome.message == wf.REPRESENTATIVE_NOT_KEPT
    assert "answer the representative by letter" in outcome.message
    shown = authority(rec, ctx).record
    assert shown is not None
    _, last = answer_all(shown, ctx)
    (note,) = of_type(last, r.SubjectNotification)
    assert note.representative is None  # no address for them: to the subject
    assert note.message.startswith(MADE_FOR_YOU)


def test_a_strangers_representative_is_not_kept(ctx: wf.Context) -> None:  # noqa: F811
    """No system knows the subject: the answer is that nothing is held, and privops keeps
    nothing personal of them (the representative's details would make them a key)."""
    stranger = at(ctx, NOW, identity=None, known_subject=False)
    outcome = by_solicitor(stranger, authority_received_on=TODAY)
    assert outcome.rejected is None, outcome.message
    rec = outcome.record
    assert rec is not None
    assert (rec.representative, rec.capacity) == (None, None)  # capacity tells of them
    assert rec.state is S.completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.representative is None
    said = f"{wf.NOTHING_HELD_NOTE}; {wf.STRANGERS_REPRESENTATIVE}"
    assert (outcome.message or "").endswith(said)


# --- the DPO's view and CLI -------------------------------------------------------------------


def _body(rec: wf.RequestRecord) -> dict[str, Any]:
    return {
        "request_id": rec.request_id,
        "request_type": rec.request_type.value,
        "state": rec.state.value,
        "representative": rec.representative,
        "capacity": rec.capacity.value if rec.capacity else None,
        "authority_received_on": rec.authority_received_on.isoformat()
        if rec.authority_received_on
        else None,
        "awaiting_authority": rec.awaiting_authority and rec.open,
    }


def test_the_status_says_who_made_it_and_what_it_waits_for(ctx: wf.Context) -> None:  # noqa: F811
    rec = by_solicitor(ctx).record
    assert rec is not None
    waiting = status_cli._representative(_body(rec))
    assert waiting.startswith(f"{SOLICITOR} [dim](authorised)[/]")
    assert "waiting for the evidence of their authority" in waiting
    assert "record the day it arrived, privops request authority R-1 --on YYYY-MM-DD" in waiting
    assert "child" not in waiting
    parent = status_cli._representative(_body(rec) | {"capacity": "parent"})
    assert "best interests" in parent
    done = authority(rec, ctx).record
    assert done is not None
    assert status_cli._representative(_body(done)) == (
        f"{SOLICITOR} [dim](authorised; authority received {TODAY})[/]"
    )
    gone = _body(done) | {"representative": None}
    assert status_cli._representative(gone).startswith("their details are not kept")
    objection = by_solicitor(
        ctx, RequestType.objection, objection_scope=ObjectionScope.direct_marketing
    ).record
    assert objection is not None
    shown_objection = status_cli._representative(_body(objection))
    assert "the notices go to the subject meanwhile" in shown_objection
    assert "privops request authority" in shown_objection
    closed = _body(objection) | {"state": "cancelled"}
    assert status_cli._representative(closed).endswith("no evidence of authority recorded)[/]")
    scrubbed = _body(done) | {"representative": None, "capacity": None}
    assert status_cli._representative(scrubbed) == (
        f"their details are not kept [dim](capacity not kept; authority received {TODAY})[/]"
    )
    console.begin_capture()
    status_cli.render_status(_body(rec) | {"tasks": [], "history": []})
    shown = console.end_capture()
    assert "made by" in shown
    assert "request authority" in shown


def test_the_cli_sends_the_representation(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[r.Command] = []
    monkeypatch.setattr(submit_cli, "submit", lambda commands, _common: sent.extend(commands))
    out = CliRunner().invoke(
        request_cli.app,
        [
            "erase", "--subject", "C-1", "--received", "2025-03-10", "--verified-now",
            "--representative", f"  {SOLICITOR} ", "--capacity", "Attorney",
            "--authority-received", "2025-03-11", "--no-wait",
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    (submitted,) = sent
    assert isinstance(submitted, r.RequestSubmitted)
    assert (submitted.representative, submitted.capacity) == (SOLICITOR, Capacity.attorney)
    assert submitted.authority_received_on == TODAY + timedelta(days=1)


def test_the_cli_records_the_authority(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[r.Command] = []
    monkeypatch.setattr(follow_up, "publish_one", lambda command, *_args: sent.append(command))
    out = CliRunner().invoke(
        request_cli.app, ["authority", "REQ-AAAAAAAAAAAA", "--on", "2025-03-10", "--no-wait"]
    )
    assert out.exit_code == 0, out.output
    # The day it arrived is asked for, never taken to be today (the clock counts from it).
    unsaid = CliRunner().invoke(request_cli.app, ["authority", "REQ-AAAAAAAAAAAA", "--no-wait"])
    assert unsaid.exit_code == 2
    assert "--on" in unsaid.output
    (recorded,) = sent
    assert isinstance(recorded, r.AuthorityReceived)
    assert (recorded.request_id, recorded.received_on) == ("REQ-AAAAAAAAAAAA", TODAY)


def test_the_summary_says_the_work_waits_for_the_authority() -> None:
    waiting = submit(RequestType.access, representative=SOLICITOR, capacity=Capacity.deputy)
    assert "wait for the evidence of their authority" in submit_cli._summary(waiting)
    given = waiting.model_copy(update={"authority_received_on": TODAY})
    assert f"(deputy; authority received {TODAY})" in submit_cli._summary(given)
    own = submit(RequestType.access)
    assert "representative" not in submit_cli._summary(own)
    objection = submit(
        RequestType.objection,
        objection_scope=ObjectionScope.direct_marketing,
        representative=SOLICITOR,
        capacity=Capacity.authorised,
    )
    assert "the notices go to the subject until" in submit_cli._summary(objection)


def test_the_records_carry_the_representation_through_avro() -> None:
    codec = Codec(contract.schema_dir())
    note = r.SubjectNotification(
        notification_id="N-1",
        request_id="R-1",
        issued_at=NOW,
        subject_id=SUBJECT,
        kind="access_response",
        message="x",
        representative=SOLICITOR,
    )
    for record in (
        submit(
            RequestType.access,
            representative=SOLICITOR,
            capacity=Capacity.parent,
            authority_received_on=TODAY,
        ),
        command(r.AuthorityReceived, received_on=TODAY),
        note,
    ):
        schema = codec.latest[record.fullname()].schema
        assert codec.decode(schema, codec.encode(record)) == record


def test_the_clock_waits_for_a_required_authority() -> None:
    day = TODAY + timedelta(days=2)
    start = deadlines.clock_start
    assert start(TODAY, TODAY, authority_required=True) is None
    assert start(TODAY, TODAY, authority_required=True, authority_received=day) == day
    assert start(TODAY, day, authority_required=True, authority_received=TODAY) == day
    assert start(TODAY, TODAY, authority_received=day) == TODAY  # not required: no effect


@pytest.mark.parametrize(
    "args",
    [
        ["--representative", "Ann Jones", "--capacity", "Ann Jones"],
        ["--representative", "Ann Jones\n12 Acacia Avenue", "--capacity", "parent"],
        ["--representative", "Ann Jones " * 60, "--capacity", "parent"],
    ],
)
def test_the_cli_never_repeats_what_was_typed(args: list[str]) -> None:
    out = CliRunner().invoke(request_cli.app, ["access", "--subject", "C-1", *args, "--no-wait"])
    assert out.exit_code == 2
    assert "Ann" not in out.output
    assert "Acacia" not in out.output


def test_a_refusal_on_identity_after_the_authority_says_nothing_of_it(
    ctx: wf.Context,  # noqa: F811
) -> None:
    """The authority was shown (the details not kept: no key to seal them under), the
    identity not: the refusal is the identity's, not "they did not show they may act"."""
    rec = by_solicitor(
        ctx, representative=WITHHELD, verified=False, authority_received_on=TODAY
    ).record
    assert rec is not None
    refusal = command(
        r.RequestRefused, ground=RefusalGround.identity_not_established, reason="No ID."
    )
    outcome = wf.on_command(rec, refusal, ctx)
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.message.startswith(MADE_FOR_YOU + wf.SUBJECT_UNCONFIRMED)
    assert wf.NO_AUTHORITY_SHOWN not in note.message


def test_the_authority_moves_no_date_of_a_request_that_does_not_wait(
    ctx: wf.Context,  # noqa: F811
) -> None:
    """A complaint's dates are its own (acknowledged within the configured days): its
    representative's authority changes whom it answers, not when."""
    rec = by_solicitor(ctx, RequestType.complaint, verified=False).record
    assert rec is not None
    longer = at(ctx, NOW, complaint_ack_days=ctx.complaint_ack_days + 10)
    shown = authority(rec, longer).record
    assert shown is not None
    assert (shown.clock_start, shown.due_on) == (rec.clock_start, rec.due_on)
