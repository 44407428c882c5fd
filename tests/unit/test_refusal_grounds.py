"""A refusal names its ground (UK GDPR Art. 12(4), 12(5); Art. 5(2) accountability).

Before 0.37 a refusal carried only the DPO's letter: free text, which an erasure of the
subject scrubs, so the controller could no longer show on what ground it had refused,
and the subject's notice said "we cannot act" whatever the ground."""

from __future__ import annotations

from typing import Any

import pytest

from privops.core import records as r
from privops.core import shredding
from privops.core import workflow as wf
from privops.core.fanout import REDRESS
from privops.core.vocab import RefusalGround, RequestState, RequestType
from tests.unit.test_audit_report import DAY, MARCH, closed, received, report, step
from tests.unit.test_workflow import (
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    of_type,
    submit,
)


def _unverified(context: wf.Context) -> wf.RequestRecord:
    outcome = wf.on_command(None, submit(RequestType.erasure, verified=False), context)
    assert outcome.record is not None
    return outcome.record


def _refuse(rec: wf.RequestRecord, context: wf.Context, **kw: Any) -> wf.Outcome:
    return wf.on_command(rec, command(r.RequestRefused, reason="letter REF-77", **kw), context)


@pytest.mark.parametrize("ground", list(RefusalGround))
def test_the_ground_is_told_kept_and_audited(ctx: wf.Context, ground: RefusalGround) -> None:  # noqa: F811
    outcome = _refuse(_unverified(ctx), ctx, ground=ground)
    rec = outcome.record
    assert outcome.rejected is None, outcome.message
    assert rec is not None
    assert (rec.state, rec.refusal_ground) == (RequestState.refused, ground)
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.message == f"{wf.REFUSAL_NOTICES[ground]} {REDRESS}"
    assert note.document == "letter REF-77"
    steps = [(a.action, a.after) for a in outcome.audit]
    assert ("request_refused", ground.value) in steps


def test_every_ground_says_its_article_or_its_law() -> None:
    assert set(wf.REFUSAL_NOTICES) == set(RefusalGround)
    for ground, notice in wf.REFUSAL_NOTICES.items():
        assert (
            "Article" in notice
            or "Act 2018" in notice
            or ground is RefusalGround.right_does_not_apply
        )
        assert "letter" in notice


def test_a_refusal_without_a_ground_is_refused(ctx: wf.Context) -> None:  # noqa: F811
    """What a CLI of before 0.37 sends: the answer says to give one and to upgrade."""
    rec = _unverified(ctx)
    outcome = _refuse(rec, ctx)
    assert outcome.rejected == "invalid_command"
    assert "--ground" in (outcome.message or "")
    assert "upgrade" in (outcome.message or "")
    assert of_type(outcome, r.SubjectNotification) == []


def test_identity_not_established_is_no_ground_once_it_was_verified(ctx: wf.Context) -> None:  # noqa: F811
    verified = wf.on_command(None, submit(RequestType.access, verified=True), ctx).record
    assert verified is not None
    assert verified.identity_verified_on is not None
    verified = verified.model_copy(update={"tasks": {}})  # before the work went out
    outcome = _refuse(verified, ctx, ground=RefusalGround.identity_not_established)
    assert outcome.rejected == "invalid_command"
    assert f"verified on {verified.identity_verified_on}" in (outcome.message or "")


def test_the_ground_outlives_the_erasure_of_the_letter(ctx: wf.Context) -> None:  # noqa: F811
    refused = _refuse(_unverified(ctx), ctx, ground=RefusalGround.excessive).record
    assert refused is not None
    scrubbed = shredding.scrubbed(refused)
    assert scrubbed is not None
    assert scrubbed.reason is None
    assert scrubbed.refusal_ground is RefusalGround.excessive


def test_a_record_without_a_ground_is_stored_as_before(ctx: wf.Context) -> None:  # noqa: F811
    """A rollback to 0.36 reads a record that never was refused on a ground."""
    assert "refusal_ground" not in _unverified(ctx).model_dump(mode="json")


def test_the_accountability_report_counts_refusals_by_ground() -> None:
    events = [
        received("E-1", "erasure"),
        step("E-1", "request_refused", MARCH + DAY, after="manifestly_unfounded"),
        closed("E-1", "refused", MARCH + DAY),
        received("E-2", "erasure"),
        step("E-2", "request_refused", MARCH + DAY, after="manifestly_unfounded"),
        closed("E-2", "refused", MARCH + DAY),
        received("A-1", "access"),
        step("A-1", "request_refused", MARCH + DAY, after="exemption"),
        closed("A-1", "refused", MARCH + DAY),
        received("A-2", "access"),  # refused by a worker of before 0.37: no ground
        closed("A-2", "refused", MARCH + 2 * DAY),
    ]
    out = report(events)
    total = out["total"]
    assert total["refused"] == 4
    assert total["refused_manifestly_unfounded"] == 2
    assert total["refused_exemption"] == 1
    assert total["refused_ground_unrecorded"] == 1
    assert total["refused_excessive"] == 0
    kinds = {row["request_type"]: row for row in out["by_type"]}
    assert kinds["access"]["refused_exemption"] == 1


def test_the_cli_sends_the_ground(monkeypatch: pytest.MonkeyPatch) -> None:
    from privops.cli.request import follow_up

    sent: list[r.Command] = []
    monkeypatch.setattr(follow_up, "publish_one", lambda cmd, *_a, **_k: sent.append(cmd))
    from tests.unit.test_cli_bad_input import run

    out = run("request", "refuse", "REQ-1", "--ground", "exemption", "--reason", "Sch. 2 para 2")
    assert out.code == 0, out.output
    (cmd,) = sent
    assert isinstance(cmd, r.RequestRefused)
    assert cmd.ground is RefusalGround.exemption
