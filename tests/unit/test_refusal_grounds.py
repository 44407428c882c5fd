"""A refusal names its ground (UK GDPR Art. 12(4), 12(5); Art. 5(2) accountability).

Before 0.37 a refusal carried only the DPO's letter: free text, which an erasure of the
subject scrubs, so the controller could no longer show on what ground it had refused,
and the subject's notice said "we cannot act" whatever the ground."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from privops.core import records as r
from privops.core import shredding
from privops.core import workflow as wf
from privops.core.fanout import REDRESS
from privops.core.vocab import ObjectionScope, RefusalGround, RequestState, RequestType
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


SAID = {
    RefusalGround.manifestly_unfounded: "manifestly unfounded (UK GDPR Article 12(5))",
    RefusalGround.excessive: "manifestly excessive (UK GDPR Article 12(5))",
    RefusalGround.identity_not_established: "could not confirm who you are",
    RefusalGround.right_does_not_apply: "the right you asked to exercise does not apply",
    RefusalGround.exemption: "what we can tell you about why",
}


@pytest.mark.parametrize("ground", list(RefusalGround))
def test_each_ground_is_told_in_its_own_words(ground: RefusalGround) -> None:
    assert SAID[ground] in wf.REFUSAL_NOTICES[ground]
    assert "letter" in wf.REFUSAL_NOTICES[ground]


def test_an_exemption_is_not_named_to_the_subject() -> None:
    """Saying an exemption applies may itself tip someone off (crime and taxation)."""
    told = wf.REFUSAL_NOTICES[RefusalGround.exemption].lower()
    assert "exemption" not in told
    assert "act 2018" not in told


G = RefusalGround
T = RequestType


@pytest.mark.parametrize(
    ("changes", "allowed"),
    [
        ({"request_type": T.erasure}, set(G)),
        (
            {"request_type": T.erasure, "identity_verified_on": date(2025, 3, 1)},
            set(G) - {G.identity_not_established},
        ),
        ({"request_type": T.access}, set(G) - {G.right_does_not_apply}),
        ({"request_type": T.restriction}, set(G)),
        ({"request_type": T.rectification}, set(G)),
        (
            {"request_type": T.objection, "objection_scope": ObjectionScope.legitimate_interest},
            {G.manifestly_unfounded, G.excessive, G.exemption},
        ),
        ({"request_type": T.objection, "objection_scope": ObjectionScope.direct_marketing}, set()),
        ({"request_type": T.consent_withdrawal}, set()),
        ({"request_type": T.complaint}, set()),
        ({"request_type": T.restriction_lift}, set()),
    ],
    ids=lambda v: "-".join(str(x) for x in v.values()) if isinstance(v, dict) else "",
)
def test_the_grounds_each_request_may_be_refused_on(
    ctx: wf.Context,  # noqa: F811
    changes: dict[str, Any],
    allowed: set[RefusalGround],
) -> None:
    rec = _unverified(ctx).model_copy(update=changes)
    for ground in RefusalGround:
        outcome = _refuse(rec, ctx, ground=ground)
        refused = outcome.rejected is None
        assert refused is (ground in allowed), (ground, outcome.message)


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"request_type": T.complaint}, "a complaint is answered"),
        ({"request_type": T.consent_withdrawal}, "always acted on (Art. 7(3))"),
        (
            {"request_type": T.objection, "objection_scope": ObjectionScope.direct_marketing},
            "absolute",
        ),
        (
            {"request_type": T.objection, "objection_scope": ObjectionScope.legitimate_interest},
            "decide-objection --refuse",
        ),
        ({"request_type": T.access}, "access is not refused on right_does_not_apply"),
    ],
)
def test_a_ground_a_request_cannot_be_refused_on_says_why(
    ctx: wf.Context,  # noqa: F811
    changes: dict[str, Any],
    said: str,
) -> None:
    rec = _unverified(ctx).model_copy(update=changes)
    outcome = _refuse(rec, ctx, ground=RefusalGround.right_does_not_apply)
    assert outcome.rejected == "invalid_command"
    assert said in (outcome.message or "")


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
    assert "identity_not_established" not in (outcome.message or "").split("(")[-1]


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
