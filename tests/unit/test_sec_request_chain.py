"""A command whose request id names another audit chain (a subject's ``sr_...`` or the
system's ``privops``) is rejected whole by the workflow: nothing stored, sent or
notified, and its rejection not audited under that chain (review, session 34)."""

from __future__ import annotations

from typing import Any

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.vocab import Category, RequestType
from tests.unit.test_workflow import NOW, SUBJECT, TODAY, cmd_id, identity_map

CHAIN_NAMES = ["sr_" + "ab" * 12, "privops"]


@pytest.fixture(scope="module")
def ctx() -> wf.Context:
    return wf.Context(
        now=NOW,
        today=TODAY,
        datamap=load_datamap(),
        subject_ref="sr_rules",
        identity=identity_map(),
    )


def envelope(request_id: str) -> dict[str, Any]:
    return {"command_id": cmd_id(), "request_id": request_id, "issued_at": NOW, "actor": "dpo"}


@pytest.mark.parametrize("request_id", CHAIN_NAMES)
def test_a_request_named_like_another_chain_is_rejected_whole(
    ctx: wf.Context, request_id: str
) -> None:
    cmd = r.RequestSubmitted(
        **envelope(request_id),
        request_type=RequestType.erasure,
        subject_id=SUBJECT,
        received_on=TODAY,
        identity_verified_on=TODAY,
    )
    outcome = wf.on_command(None, cmd, ctx)
    assert outcome.rejected == "invalid_command"
    assert outcome.record is None
    assert outcome.out == []
    assert [a.action for a in outcome.audit] == ["command_rejected"]


@pytest.mark.parametrize("request_id", CHAIN_NAMES)
def test_a_hold_named_like_another_chain_is_rejected(ctx: wf.Context, request_id: str) -> None:
    """The CLI sends a hold with its hold id as the request id, which its audit chains
    under: checked alike."""
    cmd = r.LegalHoldPlaced(
        **envelope(request_id),
        hold_id=request_id,
        subject_id=SUBJECT,
        categories=[Category.contact],
        reason="litigation",
    )
    outcome = wf.on_hold(cmd, ctx)
    assert outcome.rejected == "invalid_command"
    assert outcome.holds is None
    assert outcome.out == []
    assert [a.action for a in outcome.audit] == ["command_rejected"]
