"""Data portability's second paragraph (UK GDPR Art. 20(2)): the subject may have the
copies sent straight to another organisation, where technically feasible. The request
names it (``privops request port --send-to``, sealed); once the copies are in, the
response waits for the DPO, who sends them and approves with the day sent
(``--sent-on``), or says why it was not feasible (``--not-feasible``): the subject is
told which, with the copies either way. Nothing goes out before."""

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
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.fanout import NOTHING_PORTABLE, REDRESS, TRANSMIT
from privops.core.identity import merge
from privops.core.personal import WITHHELD
from privops.core.vocab import RequestState, RequestType, System
from tests.unit.test_portability import SHIPPED, _tasks_json, port
from tests.unit.test_workflow import (
    NOW,
    SUBJECT,
    TODAY,
    answer,
    answer_all,
    approved,
    at,
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    export_ref,
    of_type,
    start,
    submit,
)

ELSEWHERE = "Bright Energy Ltd, switching@bright.example"
"""The organisation the subject named, in their words."""


def held(
    context: wf.Context, crm_shows_others: bool = False, **submitted: Any
) -> tuple[wf.RequestRecord, wf.Outcome]:
    """A portability request naming ``ELSEWHERE`` once every portable system sent its
    copy (the CRM's showing others when ``crm_shows_others``)."""
    rec = port(context, send_to=ELSEWHERE, **submitted).record
    assert rec is not None
    results = {
        t.system.value: answer(
            rec,
            t.system,
            export=export_ref(t.system).model_copy(
                update={"shows_others": crm_shows_others and t.system is System.crm}
            ),
        )
        for t in rec.tasks.values()
    }
    return answer_all(rec, context, **results)


def approve(rec: wf.RequestRecord, context: wf.Context, **kw: Any) -> wf.Outcome:
    return wf.on_command(rec, command(r.AccessResponseApproved, **kw), context)


def audited(outcome: wf.Outcome, action: str) -> list[wf.AuditStep]:
    return [step for step in outcome.audit if step.action == action]


def test_the_response_waits_for_the_dpo_to_send_the_copies(ctx: wf.Context) -> None:  # noqa: F811
    rec, last = held(ctx)
    assert rec.send_to == ELSEWHERE
    assert rec.state is RequestState.awaiting_review
    assert of_type(last, r.SubjectNotification) == []  # nothing goes out meanwhile
    (step,) = audited(last, "transmission_required")
    assert step.after == ",".join(sorted(s.value for s in SHIPPED))
    assert "Art. 20(2)" in (step.reason or "")
    assert ELSEWHERE not in repr(last.audit)  # the subject's words stay off the audit
    assert audited(last, "response_review_required") == []  # no copy shows others


def test_sent_the_subject_is_told_the_day_with_the_copies(ctx: wf.Context) -> None:  # noqa: F811
    rec, _ = held(ctx)
    outcome = approve(rec, ctx, transmitted_on=TODAY)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.state is RequestState.completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.kind == "portability_response"
    assert note.message.startswith(f"On {TODAY.isoformat()} we sent a copy of the personal")
    assert "(UK GDPR Art. 20(2))" in note.message
    assert TRANSMIT not in note.message  # not offered again: it was done
    assert ELSEWHERE not in note.message  # the notice's text is not sealed
    assert "kept until" in note.message
    assert len(note.exports) == len(SHIPPED)  # the subject may fetch them too
    kept = outcome.record.manifest
    assert kept is not None
    assert kept["transmission"] == {
        "systems": sorted(s.value for s in SHIPPED),
        "sent_on": TODAY.isoformat(),
        "not_feasible": False,
        "why_not": None,
        "pending": [],
    }
    (step,) = audited(outcome, "response_approved")
    assert f"sent on {TODAY.isoformat()}" in (step.after or "")


def test_not_feasible_the_subject_gets_the_copies_why_and_redress(ctx: wf.Context) -> None:  # noqa: F811
    rec, _ = held(ctx)
    why = "Bright Energy takes no files from other companies."
    outcome = approve(rec, ctx, not_feasible=why)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.state is RequestState.partially_completed  # 20(2) not done
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.message.startswith("We could not send your copy to the organisation you named")
    assert "technically feasible" in note.message
    assert why not in note.message  # the DPO's words go in the letter (sealed)
    assert note.document == why
    assert note.message.count("Information Commissioner") == 1
    assert len(note.exports) == len(SHIPPED)
    kept = outcome.record.manifest
    assert kept is not None
    assert kept["transmission"] == {
        "systems": [],  # none sent on
        "sent_on": None,
        "not_feasible": True,
        "why_not": why,
        "pending": [],
    }
    (step,) = audited(outcome, "response_approved")
    assert "transmission not feasible" in (step.after or "")
    assert why not in (step.after or "")


def test_not_feasible_with_a_copy_left_out_gives_both_reasons_and_one_redress(
    ctx: wf.Context,  # noqa: F811
) -> None:
    rec, last = held(ctx, crm_shows_others=True)
    assert [s.action for s in last.audit if s.action.endswith("_required")] == [
        "response_review_required",
        "transmission_required",
    ]
    outcome = approve(
        rec, ctx, withheld=[System.crm], reason="A neighbour is in it.", not_feasible="No way in."
    )
    assert outcome.rejected is None, outcome.message
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.document == "A neighbour is in it.\n\nNo way in."
    assert note.message.count(REDRESS) == 1
    assert export_ref(System.crm).location not in {e.location for e in note.exports}
    assert outcome.record is not None
    assert outcome.record.manifest is not None
    assert "crm" not in outcome.record.manifest["transmission"]["systems"]


def test_the_record_names_the_copies_sent_on_not_one_left_out(ctx: wf.Context) -> None:  # noqa: F811
    rec, _ = held(ctx, crm_shows_others=True)
    outcome = approve(rec, ctx, withheld=[System.crm], reason="Others.", transmitted_on=TODAY)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.manifest is not None
    sent = outcome.record.manifest["transmission"]["systems"]
    assert sent == sorted(s.value for s in SHIPPED if s is not System.crm)


def test_a_redacted_copy_goes_on_with_one_redress(ctx: wf.Context) -> None:  # noqa: F811
    rec, _ = held(ctx, crm_shows_others=True)
    redacted = export_ref(System.crm, "R-1/redacted.json")
    outcome = wf.on_command(rec, command(r.ExportRedacted, system=System.crm, export=redacted), ctx)
    assert outcome.record is not None
    done = approve(outcome.record, ctx, reason="A neighbour is cut.", not_feasible="No way in.")
    assert done.rejected is None, done.message
    (note,) = of_type(done, r.SubjectNotification)
    assert note.message.count(REDRESS) == 1
    assert "we redacted the copy from crm" in note.message
    assert redacted.location in {e.location for e in note.exports}


def test_a_no_break_space_is_a_space(ctx: wf.Context) -> None:  # noqa: F811
    outcome = port(ctx, send_to="Bright\u00a0Energy Ltd")
    assert outcome.record is not None
    assert outcome.record.send_to == "Bright\u00a0Energy Ltd"


def test_with_every_copy_unmade_the_subject_is_told_it_follows(ctx: wf.Context) -> None:  # noqa: F811
    rec = port(ctx, send_to=ELSEWHERE).record
    assert rec is not None
    results = {
        t.system.value: answer(rec, t.system, r.TaskFailed, reason="down", retryable=False)
        for t in rec.tasks.values()
    }
    done, last = answer_all(rec, ctx, **results)
    assert done.state is RequestState.partially_completed  # nothing to send: nothing waits
    (note,) = of_type(last, r.SubjectNotification)
    assert note.message.startswith("We could not yet make your copy")
    assert "We will send what is not yet made to the organisation you named" in note.message
    assert "sent nothing" not in note.message
    assert done.manifest is not None
    assert done.manifest["transmission"]["pending"] == sorted(s.value for s in SHIPPED)


def test_a_system_that_failed_leaves_its_copy_to_the_dpo(ctx: wf.Context) -> None:  # noqa: F811
    """Orders failed for good: the others' copies wait to be sent on; the subject is told
    which system is not done, and the record which copies went out."""
    rec = port(ctx, send_to=ELSEWHERE).record
    assert rec is not None
    results = {
        t.system.value: (
            answer(rec, t.system, r.TaskFailed, reason="down", retryable=False)
            if t.system is System.orders
            else answer(rec, t.system, export=export_ref(t.system))
        )
        for t in rec.tasks.values()
    }
    rec, last = answer_all(rec, ctx, **results)
    assert rec.state is RequestState.awaiting_review
    (step,) = audited(last, "transmission_required")
    assert "orders" not in (step.after or "")
    outcome = approve(rec, ctx, transmitted_on=TODAY)
    assert outcome.record is not None
    assert outcome.record.state is RequestState.partially_completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert "could not yet complete it in: orders" in note.message
    assert "We will send what is not yet made to the organisation you named" in note.message
    assert outcome.record.manifest is not None
    assert "orders" not in outcome.record.manifest["transmission"]["systems"]
    assert outcome.record.manifest["transmission"]["pending"] == ["orders"]
    assert outcome.record.manifest["missing_exports"] == ["orders"]


def test_the_organisation_is_in_no_unsealed_output(ctx: wf.Context) -> None:  # noqa: F811
    """Every record a decision sends, but the notice's sealed letter, and the audit."""
    submitted = port(ctx, send_to=ELSEWHERE)
    rec, last = held(ctx)
    done = approve(rec, ctx, not_feasible=f"{ELSEWHERE} takes no files")
    for outcome in (submitted, last, done):
        shown = [
            o.record.model_copy(update={"document": None})
            if isinstance(o.record, r.SubjectNotification)
            else o.record
            for o in outcome.out
        ]
        assert "Bright Energy" not in repr(shown) + repr(outcome.audit) + (outcome.message or "")


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({}, "send them, then approve with the day sent (--sent-on)"),
        ({"transmitted_on": TODAY, "not_feasible": "x"}, "both: say one"),
        ({"not_feasible": "  "}, "--not-feasible is empty"),
        ({"not_feasible": "x" * 2_001}, "2001 characters: at most 2000"),
        ({"transmitted_on": TODAY + timedelta(days=1)}, "is after today"),
        ({"transmitted_on": TODAY - timedelta(days=1)}, "earlier than"),  # received today
    ],
)
def test_the_approval_must_say_what_became_of_the_transmission(
    ctx: wf.Context,  # noqa: F811
    kw: dict[str, Any],
    says: str,
) -> None:
    rec, _ = held(ctx)
    outcome = approve(rec, ctx, **kw)
    assert outcome.rejected is not None
    assert says in (outcome.message or "")
    assert of_type(outcome, r.SubjectNotification) == []


def test_the_copies_are_not_sent_before_they_were_ready(ctx: wf.Context) -> None:  # noqa: F811
    earlier = TODAY - timedelta(days=5)
    rec, _ = held(ctx, received_on=earlier, identity_verified_on=earlier)
    outcome = approve(rec, ctx, transmitted_on=TODAY - timedelta(days=2))
    assert outcome.rejected is not None
    assert "before the copies were ready to send" in (outcome.message or "")
    assert approve(rec, ctx, transmitted_on=TODAY).rejected is None


def test_a_copy_is_not_sent_on_before_its_redaction(ctx: wf.Context) -> None:  # noqa: F811
    """Sent before the DPO recorded the redacted copy, the system's own went out: an
    approval saying so is refused (Art. 20(4))."""
    earlier = TODAY - timedelta(days=5)
    rec, _ = held(ctx, crm_shows_others=True, received_on=earlier, identity_verified_on=earlier)
    redacted = export_ref(System.crm, "R-1/redacted.json")
    later = at(ctx, NOW + timedelta(days=2))
    outcome = wf.on_command(
        rec, command(r.ExportRedacted, system=System.crm, export=redacted), later
    )
    assert outcome.record is not None
    kw: dict[str, Any] = {"reason": "A neighbour is cut."}
    too_soon = approve(outcome.record, later, transmitted_on=TODAY + timedelta(days=1), **kw)
    assert too_soon.rejected is not None
    assert "any redaction recorded" in (too_soon.message or "")
    assert (
        approve(outcome.record, later, transmitted_on=TODAY + timedelta(days=2), **kw).rejected
        is None
    )


def test_a_transmission_is_said_only_where_one_was_asked(ctx: wf.Context) -> None:  # noqa: F811
    """A portability response held for review whose subject named no organisation, and
    one whose every copy was left out: a day sent would be a false record."""
    plain = port(ctx).record
    assert plain is not None
    results = {
        t.system.value: answer(
            plain,
            t.system,
            export=export_ref(t.system).model_copy(update={"shows_others": True}),
        )
        for t in plain.tasks.values()
    }
    plain, _ = answer_all(plain, ctx, **results)
    every = [t.system for t in plain.tasks.values()]
    outcome = approve(plain, ctx, disclosed=every, transmitted_on=TODAY)
    assert outcome.rejected is not None
    assert "asked for no copy to be sent" in (outcome.message or "")

    rec, _ = held(ctx, crm_shows_others=True)
    left_out = approve(rec, ctx, withheld=every, reason="Others.", transmitted_on=TODAY)
    assert left_out.rejected is not None
    assert "nothing to send" in (left_out.message or "")
    outcome = approve(rec, ctx, withheld=every, reason="Others.")
    assert outcome.rejected is None, outcome.message
    (note,) = of_type(outcome, r.SubjectNotification)
    assert "So we have sent nothing to the organisation you named." in note.message


def test_with_nothing_portable_nothing_waits_and_the_subject_is_told(ctx: wf.Context) -> None:  # noqa: F811
    identity = merge(None, SUBJECT, System.cctv, {"camera_ref": "cam-3:2025-03-01"}, NOW)
    outcome = port(at(ctx, NOW, identity=identity), send_to=ELSEWHERE)
    assert outcome.record is not None
    assert outcome.record.state is RequestState.completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.message == (
        NOTHING_PORTABLE.removesuffix(REDRESS)
        + "So we have sent nothing to the organisation you named. "
        + REDRESS
    )


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"request_type": RequestType.access}, "only a portability request's copies"),
        ({"send_to": "   "}, "send_to is empty"),
        ({"send_to": "x" * (wf.MAX_LINE_CHARS + 1)}, "at most 500"),
        ({"send_to": "Bright\n\x1b[2J Energy"}, "control character or line break"),
        ({"send_to": "Bright Energy \u202egnp.exe"}, "control character or line break"),
        ({"send_to": WITHHELD}, "could not be sealed"),
    ],
)
def test_send_to_is_refused_where_it_cannot_be_acted_on(
    ctx: wf.Context,  # noqa: F811
    kw: dict[str, Any],
    says: str,
) -> None:
    fields = {"request_type": RequestType.portability, "send_to": ELSEWHERE} | kw
    outcome = wf.on_command(None, submit(**fields), ctx)
    assert outcome.rejected is wf.Reason.invalid_command
    assert says in (outcome.message or "")
    assert outcome.record is None


def test_an_access_response_takes_no_transmission(ctx: wf.Context) -> None:  # noqa: F811
    rec = start(RequestType.access, ctx)
    results = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system))
        for t in rec.tasks.values()
    }
    rec, _ = answer_all(rec, ctx, **results)
    assert rec.state is RequestState.awaiting_review  # cctv's footage
    outcome = approve(rec, ctx, disclosed=[System.cctv], not_feasible="x")
    assert outcome.rejected is not None
    assert "asked for no copy to be sent" in (outcome.message or "")
    done, _ = approved(rec, ctx)
    assert done.state is RequestState.completed


def test_the_status_names_the_organisation_and_what_became_of_it(ctx: wf.Context) -> None:  # noqa: F811
    rec, _ = held(ctx)
    body: dict[str, Any] = {"state": "awaiting_review", "send_to": rec.send_to, "manifest": None}
    assert status_cli._send_to(body) == f"{ELSEWHERE} [dim](not sent yet)[/]"
    assert "--sent-on YYYY-MM-DD" in status_cli.review_hint("R-1", send_on=True)
    outcome = approve(rec, ctx, transmitted_on=TODAY)
    assert outcome.record is not None
    body = {
        "state": outcome.record.state.value,
        "send_to": outcome.record.send_to,
        "manifest": outcome.record.manifest,
        "tasks": _tasks_json(outcome.record),
    }
    assert status_cli._send_to(body) == f"{ELSEWHERE} [dim](sent on {TODAY.isoformat()})[/]"
    not_sent = approve(rec, ctx, not_feasible="No way in.").record
    assert not_sent is not None
    body |= {"manifest": not_sent.manifest}
    assert status_cli._send_to(body).endswith("(not technically feasible: No way in.)[/]")
    body |= {"manifest": {"transmission": {"systems": [], "sent_on": None, "not_feasible": False}}}
    assert status_cli._send_to(body).endswith("(nothing sent)[/]")
    body["manifest"]["transmission"]["pending"] = ["orders"]
    assert status_cli._send_to(body).endswith("(nothing sent; still to send once made: orders)[/]")
    console.begin_capture()
    status_cli.render_status({**body, "request_id": "R-1", "state": "awaiting_review"})
    shown = console.end_capture()
    assert ELSEWHERE in shown
    assert "--sent-on YYYY-MM-DD" in shown


# --- the DPO's CLI ------------------------------------------------------------------------------


def test_port_sends_the_organisation_named(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[r.Command] = []
    monkeypatch.setattr(submit_cli, "submit", lambda commands, _common: sent.extend(commands))
    out = CliRunner().invoke(
        request_cli.app, ["port", "--subject", "C-1", "--send-to", f"  {ELSEWHERE} ", "--no-wait"]
    )
    assert out.exit_code == 0, out.output
    (submitted,) = sent
    assert isinstance(submitted, r.RequestSubmitted)
    assert (submitted.request_type, submitted.send_to) == (RequestType.portability, ELSEWHERE)


def test_approve_sends_the_day_sent_or_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[r.Command] = []
    monkeypatch.setattr(follow_up, "publish_one", lambda command, *_args: sent.append(command))
    for args in (["--sent-on", "2025-03-10"], ["--not-feasible", " No way in. "]):
        out = CliRunner().invoke(
            request_cli.app, ["approve", "REQ-AAAAAAAAAAAA", *args, "--no-wait"]
        )
        assert out.exit_code == 0, out.output
    first, second = sent
    assert isinstance(first, r.AccessResponseApproved)
    assert isinstance(second, r.AccessResponseApproved)
    assert (first.transmitted_on, first.not_feasible) == (TODAY, None)
    assert (second.transmitted_on, second.not_feasible) == (None, "No way in.")


def test_the_commands_carry_the_transmission_through_avro() -> None:
    codec = Codec(contract.schema_dir())
    for cmd in (
        submit(RequestType.portability, send_to=ELSEWHERE),
        command(r.AccessResponseApproved, transmitted_on=TODAY),
        command(r.AccessResponseApproved, not_feasible="No way in."),
    ):
        schema = codec.latest[cmd.fullname()].schema
        assert codec.decode(schema, codec.encode(cmd)) == cmd
