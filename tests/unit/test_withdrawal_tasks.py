"""A consent withdrawal told to the DPO sends its directive, and no task.

The consent state is how every system learns it: each consults it before each use
(``GET /consent/{id}``, ``privops consent check``; DESIGN.md). A withdrawal (UK GDPR Art.
7(3)) is no objection (Art. 21): for a while it went out as Restrict tasks, a marketing
objection at the systems that market, which stopped every channel and which no later
consent could clear, and a plain restriction of the customer's whole web account, which
no lift could free (review, session 27). An objection still stops marketing with tasks.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.identity import IdentityMap, merge
from privops.core.topics import SUBJECT_DIRECTIVES
from privops.core.vocab import Channel, ObjectionScope, Purpose, RequestState, RequestType, System

NOW = datetime(2026, 7, 20, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
SUBJECT = "subj-w"
EMAIL = "ann@example.com"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def identity(systems: dict[System, dict[str, str]]) -> IdentityMap:
    found: IdentityMap | None = None
    for system, ids in systems.items():
        found = merge(found, SUBJECT, system, ids, NOW - timedelta(days=30))
    assert found is not None
    return found


CUSTOMER = identity(
    {
        System.orders: {"customer_id": "C-1", "email": EMAIL},
        System.crm: {"contact_id": "K-1", "email": EMAIL},
        System.marketing: {"email": EMAIL},
    }
)


def context(dm: DataMap) -> wf.Context:
    return wf.Context(now=NOW, today=TODAY, datamap=dm, subject_ref="sr_w", identity=CUSTOMER)


def withdraw(purpose: Purpose | None = None, channel: Channel | None = None) -> r.RequestSubmitted:
    return r.RequestSubmitted(
        command_id=f"c-{next(_ids)}",
        request_id="R-w",
        issued_at=NOW,
        actor="dpo",
        request_type=RequestType.consent_withdrawal,
        subject_id=SUBJECT,
        received_on=TODAY,
        withdrawn_purpose=purpose,
        withdrawn_channel=channel,
    )


def tasks(outcome: wf.Outcome) -> list[r.Task]:
    return [o.record for o in outcome.out if isinstance(o.record, r.Task)]


@pytest.mark.parametrize(
    ("purpose", "channel", "words"),
    [
        (Purpose.marketing, Channel.email, "to marketing by email"),
        (Purpose.marketing, None, "to marketing"),
        (Purpose.analytics, None, "to analytics"),
        (Purpose.profiling, None, "to profiling"),
        (None, Channel.post, "to everything by post"),
        (None, None, ""),
    ],
    ids=["marketing-by-email", "marketing", "analytics", "profiling", "by-post", "every"],
)
def test_a_withdrawal_sends_its_directive_and_no_task(
    dm: DataMap, purpose: Purpose | None, channel: Channel | None, words: str
) -> None:
    outcome = wf.on_command(None, withdraw(purpose, channel), context(dm))
    assert outcome.rejected is None, outcome.message
    assert tasks(outcome) == []
    (directive,) = [o.record for o in outcome.out if o.topic == SUBJECT_DIRECTIVES]
    assert isinstance(directive, r.SubjectDirective)
    assert (directive.kind, directive.purpose, directive.channel) == ("withdrawn", purpose, channel)
    rec = outcome.record
    assert rec is not None
    assert (rec.state, rec.tasks) == (RequestState.completed, {})
    (note,) = [o.record for o in outcome.out if isinstance(o.record, r.SubjectNotification)]
    assert note.message == f"We recorded that you withdrew your consent {words}".rstrip() + "."


def test_an_objection_to_direct_marketing_still_stops_it_at_every_system_that_markets(
    dm: DataMap,
) -> None:
    objection = withdraw().model_copy(
        update={
            "request_id": "R-o",
            "request_type": RequestType.objection,
            "objection_scope": ObjectionScope.direct_marketing,
        }
    )
    sent = {t.system: t for t in tasks(wf.on_command(None, objection, context(dm)))}
    assert set(sent) == {System.crm, System.marketing}
    assert all(isinstance(t, r.Restrict) and t.marketing_objection for t in sent.values())
