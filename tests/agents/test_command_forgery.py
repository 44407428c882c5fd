"""Commands that prove less than they claim (an independent review, session 26).

The worker signs its own follow-up erasures with a key derived from the audit key, and
the DPO's audit tools hold that key too: whatever else that key signs is refused, so an
audit-key holder cannot order an erasure (or anything) as the worker, and revoking
every DPO key stops every DPO command. A follow-up signed just before an audit-key
rotation is still the worker's after it. A command answered once, rejected ones too, is
answered the same when its signed bytes come again, instead of decided afresh once
circumstances changed; legal holds' commands age out like any other, and none is taken
from a clock running ahead.

Driven on the workflow agent as tests.agents.test_command_answers does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.adapters.signing_keys import SignersWatch
from privops.core import records as r
from privops.core import shredding
from privops.core import workflow as wf
from privops.core.holds import LegalHold
from privops.core.request import stable_id
from privops.core.signing import SigningKey, canonical_bytes, parse_signature
from privops.core.ticks import Tick, TickKind
from privops.core.topics import COMMANDS, REQUEST_TICKS
from privops.core.vocab import Category, RequestState, RequestType, System
from streams.app import settings
from streams.context import WORKER_KEY_CONTEXT, build, collaborators, worker_keys
from streams.state import state
from streams.tables import legal_holds, requests
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.signers import CREATED, OWNER, TEST_KEY, sign, signers_file, trust
from tests.agents.test_command_answers import (
    NOW,
    TODAY,
    Driver,
    answers,
    audited,
    command,
    effects,
    envelope,
    restrict_subject,
    submit,
)
from tests.agents.test_workflow_agent import SUBJECT, known_subject

AUDIT_KEY_HOLDER = SigningKey.derive(settings.audit_key.encode(), WORKER_KEY_CONTEXT)
"""What anyone holding PRIVOPS_AUDIT_KEY (`privops audit verify` needs it) derives: the
worker's own key."""
PARENT = "R-P"
CHILD = f"{PARENT}-F1"


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return trust(monkeypatch, tmp_path)


@pytest.fixture
async def driver(serde: Serde, outbox: Outbox) -> AsyncIterator[Driver]:
    known_subject()
    async with workflow.test_context() as agent:
        yield Driver(agent, serde, outbox)


def seed_parent(due_in: timedelta = -timedelta(hours=1)) -> None:
    """R-P: an erasure of the subject, done but for the orders' payment records, whose
    retention ends ``due_in`` from now; its follow-up tick then issues R-P-F1."""
    closed = NOW - timedelta(days=30)
    rec = wf.RequestRecord(
        request_id=PARENT,
        request_type=RequestType.erasure,
        subject_id=SUBJECT,
        actor=OWNER,
        state=RequestState.partially_completed,
        received_on=TODAY - timedelta(days=40),
        created_at=NOW - timedelta(days=40),
        closed_at=closed,
        history=[
            wf.HistoryItem(
                at=closed, event=shredding.KEYS_SHREDDED, state=RequestState.partially_completed
            )
        ],
        followups=[
            wf.FollowupItem(
                system=System.orders, categories=[Category.payment], due_at=NOW + due_in
            )
        ],
    )
    requests.data[PARENT] = rec.model_dump(mode="json")


async def issue_followup(driver: Driver) -> r.RequestSubmitted:
    """R-P's follow-up erasure as the worker publishes it when R-P's tick comes."""
    start, parent = len(driver.outbox.sent), requests.data.get(PARENT)
    tick = Tick(request_id=PARENT, kind=TickKind.followup, at=NOW).to_record()
    await put_on(driver.agent, REQUEST_TICKS, SUBJECT.encode(), driver.serde.encode(tick))
    await wait_for(lambda: any(s.topic == COMMANDS for s in driver.outbox.sent[start:]))
    # A flush stores its tables once its outputs are delivered: R-P's record (the
    # follow-up marked issued) lands just after the command is seen. Waited for, so a
    # test comparing the requests table before and after its next input compares that
    # input's effect only (a race the clean-clone CI met once under load).
    await wait_for(lambda: requests.data.get(PARENT) != parent)
    [followup] = [s.record for s in driver.outbox.sent[start:] if s.topic == COMMANDS]
    assert isinstance(followup, r.RequestSubmitted)
    return followup


def forged_followup(request_id: str = CHILD, **kw: Any) -> r.RequestSubmitted:
    """R-P-F1 as the worker would issue it, signed outside the worker."""
    fields: dict[str, Any] = {
        **envelope(request_id, actor=wf.SCHEDULER),
        "command_id": stable_id(request_id, "submitted"),
        "request_type": RequestType.erasure,
        "subject_id": SUBJECT,
        "received_on": TODAY,
        "identity_verified_on": TODAY,
        "linked_request_id": request_id.rsplit("-F", 1)[0],
    }
    fields.update(kw)
    return sign(r.RequestSubmitted(**fields), AUDIT_KEY_HOLDER)


# --- the worker's own key -------------------------------------------------------------------


async def test_a_followup_its_request_issued_is_signed_with_the_worker_key_and_accepted_once(
    driver: Driver,
) -> None:
    """A follow-up erasure goes out on privacy.commands and comes back to the workflow:
    the worker signs it with its own key, and takes it as the follow-up R-P issued."""
    seed_parent()
    followup = await issue_followup(driver)
    assert (followup.request_id, followup.linked_request_id) == (CHILD, PARENT)
    assert (followup.signature or "").startswith(f"{collaborators().worker_key.key_id}:")

    # Signed for no cluster (review, session 30): a worker of another version or on a
    # cluster migrated to a new id takes it too; a refused one would be lost for good.
    _, raw = parse_signature(followup.signature)
    worker = Ed25519PublicKey.from_public_bytes(collaborators().worker_key.public_raw)
    worker.verify(raw, canonical_bytes(followup))

    first = await driver.send(followup)
    [accepted] = answers(first)
    assert isinstance(accepted, r.CommandAccepted), accepted
    assert {event.actor for event in audited(first)} == {wf.SCHEDULER}
    assert requests.data[CHILD]["state"] == RequestState.awaiting_systems.value

    again = await driver.send(followup)  # redelivered: its request remembers the answer
    assert [a.model_dump(exclude={"answered_at"}) for a in answers(again)] == [
        accepted.model_dump(exclude={"answered_at"})
    ]
    assert effects(again) == []
    assert audited(again) == []


async def _erasure_of_anyone(_driver: Driver) -> r.Command:
    return sign(
        r.RequestSubmitted(
            **envelope("R-forged", actor=wf.SCHEDULER),
            request_type=RequestType.erasure,
            subject_id=SUBJECT,
            received_on=TODAY,
            identity_verified_on=TODAY,
        ),
        AUDIT_KEY_HOLDER,
    )


async def _followup_of_no_request(_driver: Driver) -> r.Command:
    return forged_followup("R-none-F1")


async def _followup_not_due(_driver: Driver) -> r.Command:
    seed_parent(due_in=timedelta(days=365))
    return forged_followup()


async def _followup_under_another_command_id(driver: Driver) -> r.Command:
    seed_parent()
    await issue_followup(driver)  # issued, not delivered yet
    return forged_followup(command_id="cmd-forged", received_on=TODAY - timedelta(days=40))


async def _access_in_place_of_the_followup(driver: Driver) -> r.Command:
    seed_parent()
    await issue_followup(driver)
    return forged_followup(request_type=RequestType.access)


async def _followup_of_another_subject(driver: Driver) -> r.Command:
    seed_parent()
    await issue_followup(driver)
    return forged_followup(subject_id="S-someone-else")


async def _cancel_a_dpo_request(driver: Driver) -> r.Command:
    await driver.send(submit("R-dpo", identity_verified_on=None))  # awaiting identity
    return sign(
        r.RequestCancelled(**envelope("R-dpo", actor=wf.SCHEDULER), reason="forged"),
        AUDIT_KEY_HOLDER,
    )


async def _legal_hold(_driver: Driver) -> r.Command:
    return sign(
        r.LegalHoldPlaced(
            **envelope("H-forged", actor=wf.SCHEDULER),
            hold_id="H-forged",
            subject_id=SUBJECT,
            categories=[Category.contact],
            reason="forged",
        ),
        AUDIT_KEY_HOLDER,
    )


FORGED: list[Any] = [
    pytest.param(_erasure_of_anyone, id="erasure-of-any-subject"),
    pytest.param(_followup_of_no_request, id="followup-of-no-request"),
    pytest.param(_followup_not_due, id="followup-its-request-did-not-issue"),
    pytest.param(_followup_under_another_command_id, id="followup-under-another-command-id"),
    pytest.param(_access_in_place_of_the_followup, id="access-in-place-of-the-followup"),
    pytest.param(_followup_of_another_subject, id="followup-of-another-subject"),
    pytest.param(_cancel_a_dpo_request, id="cancel-a-dpo-request"),
    pytest.param(_legal_hold, id="legal-hold"),
]


@pytest.mark.parametrize("forge", FORGED)
async def test_the_worker_key_signs_nothing_but_a_followup_its_request_issued(
    driver: Driver, signers_path: Path, forge: Callable[[Driver], Awaitable[r.Command]]
) -> None:
    """Before, the worker's key was trusted for any command: an audit-key holder could
    order an erasure of any subject as `privops-scheduler`, with every DPO key revoked."""
    forged = await forge(driver)
    revoked = TEST_KEY.entry(OWNER, CREATED).model_copy(update={"revoked_at": NOW})
    signers_file(signers_path, revoked)
    before = {rid: dict(raw) for rid, raw in requests.data.items()}

    sent = await driver.send(forged)

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandRejected), answer
    assert answer.reason == "unknown_signer"
    assert "follow-up" in answer.message
    assert effects(sent) == []
    assert [event.action for event in audited(sent)] == ["command_rejected"]
    assert {rid: dict(raw) for rid, raw in requests.data.items()} == before
    assert legal_holds.data.get(SUBJECT) is None


async def test_a_followup_turned_away_before_its_request_issued_it_is_taken_when_issued_again(
    driver: Driver,
) -> None:
    """A crash after the follow-up went out but before R-P's write landed: the command
    comes back first and is turned away, the tick is replayed and issues it again under
    the same command id. The rejection is not remembered, so the re-issue is taken."""
    seed_parent()
    first = await issue_followup(driver)
    await state.settle()  # R-P's write with the follow-up issued is stored, then ...
    seed_parent()  # ... R-P as stored before the crash: its follow-up not issued
    state.forget()  # read from the store, not a decoded copy of the newer write
    [early] = answers(await driver.send(first))
    assert isinstance(early, r.CommandRejected)
    assert early.reason == "unknown_signer"

    again = await issue_followup(driver)
    assert again.command_id == first.command_id
    [taken] = answers(await driver.send(again))
    assert isinstance(taken, r.CommandAccepted), taken


def test_the_worker_trusts_the_keys_of_the_audit_keys_a_rotation_replaced() -> None:
    rotated = settings.model_copy(
        update={
            "audit_key": "the audit key after rotation",
            "audit_key_version": 2,
            "audit_previous_keys": {1: settings.audit_key},
        }
    )
    current, previous = worker_keys(rotated)
    assert (
        current.key_id
        == SigningKey.derive(b"the audit key after rotation", WORKER_KEY_CONTEXT).key_id
    )
    assert previous.key_id == AUDIT_KEY_HOLDER.key_id
    built = build(rotated)
    assert built.worker_key.key_id == current.key_id  # it signs
    assert {k.key_id for k in built.signers.builtin} == {current.key_id, previous.key_id}


async def test_a_followup_signed_before_an_audit_key_rotation_is_taken_after_it(
    driver: Driver, signers_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, only the current audit key's worker key was trusted: a follow-up still on
    privacy.commands when the key was rotated was rejected (`unknown_signer`) and lost."""
    seed_parent()
    in_flight = await issue_followup(driver)  # signed under audit key version 1
    rotated = build(
        settings.model_copy(
            update={
                "audit_key": "the audit key after rotation",
                "audit_key_version": 2,
                "audit_previous_keys": {1: settings.audit_key},
            }
        )
    )
    monkeypatch.setattr(collaborators(), "worker_key", rotated.worker_key)
    monkeypatch.setattr(
        collaborators(), "signers", SignersWatch(signers_path, rotated.signers.builtin)
    )

    [answer] = answers(await driver.send(in_flight))
    assert isinstance(answer, r.CommandAccepted), answer
    # The old key is still the worker's only for what the worker issued.
    [refused] = answers(await driver.send(await _erasure_of_anyone(driver)))
    assert isinstance(refused, r.CommandRejected)
    assert refused.reason == "unknown_signer"


# --- remembered answers ---------------------------------------------------------------------


async def test_a_refused_submission_put_on_the_topic_again_gets_its_first_answer(
    driver: Driver,
) -> None:
    """Before, only a request's record remembered answers: a lift refused because the
    subject was not restricted was accepted when its signed bytes came again after they
    were (within the fourteen days a command is acted on)."""
    lift = submit("R-lift-early", RequestType.restriction_lift)
    [refused] = answers(await driver.send(lift))
    assert isinstance(refused, r.CommandRejected)
    assert refused.reason == "not_restricted"
    restrict_subject()

    again = await driver.send(lift)

    [answer] = answers(again)
    assert isinstance(answer, r.CommandRejected), answer
    assert (answer.reason, answer.message) == (refused.reason, refused.message)
    assert effects(again) == []
    assert audited(again) == []  # audited once, when it was decided
    assert requests.data.get("R-lift-early") is None
    # Issued again (a new command), it is decided afresh.
    [accepted] = answers(await driver.send(submit("R-lift-early", RequestType.restriction_lift)))
    assert isinstance(accepted, r.CommandAccepted), accepted


async def test_a_command_for_a_request_not_there_yet_is_answered_the_same_once_it_is(
    driver: Driver,
) -> None:
    cancel = command(r.RequestCancelled, "R-later", reason="changed mind")
    [refused] = answers(await driver.send(cancel, key=SUBJECT.encode()))
    assert isinstance(refused, r.CommandRejected)
    assert refused.reason == "unknown_request"
    await driver.send(submit("R-later", identity_verified_on=None))  # cancellable now

    again = await driver.send(cancel, key=SUBJECT.encode())

    [answer] = answers(again)
    assert isinstance(answer, r.CommandRejected), answer
    assert answer.reason == "unknown_request"
    assert effects(again) == []
    assert requests.data["R-later"]["state"] == RequestState.identity_unverified.value


async def test_a_command_dated_ahead_of_the_clock_is_refused(driver: Driver) -> None:
    """Its fourteen days would start only at its date: before, a command dated ten years
    ahead was acted on, and could be put on the topic again for ten years."""
    ahead = sign(
        r.RequestSubmitted(
            **{**envelope("R-ahead"), "issued_at": NOW + timedelta(days=3650)},
            request_type=RequestType.erasure,
            subject_id=SUBJECT,
            received_on=TODAY,
            identity_verified_on=TODAY,
        )
    )
    sent = await driver.send(ahead)

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandRejected), answer
    assert answer.reason == "invalid_command"
    assert "ahead of privops' clock" in answer.message
    assert effects(sent) == []
    assert requests.data.get("R-ahead") is None


# --- legal holds ----------------------------------------------------------------------------


def place(hold_id: str = "H-1", **kw: Any) -> r.LegalHoldPlaced:
    fields: dict[str, Any] = {
        **envelope(hold_id),
        "hold_id": hold_id,
        "subject_id": SUBJECT,
        "categories": [Category.cctv],
        "reason": "litigation",
    }
    fields.update(kw)
    return sign(r.LegalHoldPlaced(**fields))


async def test_a_legal_hold_placement_signed_long_ago_is_refused(driver: Driver) -> None:
    """Before, a hold's commands were acted on however old: a placement signed 400 days
    ago, put on the topic after its hold was released and dropped, placed it again."""
    sent = await driver.send(place("H-old", issued_at=NOW - timedelta(days=400)))

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandRejected), answer
    assert answer.reason == "invalid_command"
    assert "signed more than 14 days ago" in answer.message
    assert effects(sent) == []
    assert legal_holds.data.get(SUBJECT) is None


async def test_a_legal_hold_placement_replayed_after_its_release_places_nothing(
    driver: Driver,
) -> None:
    placement = place()
    [placed] = answers(await driver.send(placement))
    assert isinstance(placed, r.CommandAccepted)
    # The ingest agent stores the hold; it is released; the erasure drops it, released.
    hold = LegalHold(
        hold_id="H-1",
        subject_id=SUBJECT,
        categories=(Category.cctv,),
        reason="litigation",
        placed_at=placement.issued_at,
    )
    legal_holds.data[SUBJECT] = [hold.model_dump(mode="json")]
    release = sign(r.LegalHoldReleased(**envelope("H-1"), hold_id="H-1", subject_id=SUBJECT))
    assert isinstance(answers(await driver.send(release))[0], r.CommandAccepted)
    legal_holds.data.pop(SUBJECT)

    again = await driver.send(placement)

    [answer] = answers(again)
    assert answer.model_dump(exclude={"answered_at"}) == placed.model_dump(exclude={"answered_at"})
    assert effects(again) == []  # no directive: the hold is not placed again
    assert audited(again) == []


KAFKA_RECORD_LIMIT = 1_048_576


@pytest.mark.parametrize("field", ["request_id", "command_id"])
async def test_an_unsigned_command_with_an_id_past_any_bound_is_dead_lettered_unanswered(
    driver: Driver, field: str
) -> None:
    """Anyone who may write privacy.commands, no signing key needed: an unsigned command
    is answered before its names are checked, its ids copied into the answer (and with
    no key, keyed by its request id). A 600 kB id made an answer over Kafka's limit; the
    failed flush stopped the worker, and every worker that took the partition after it
    (review, session 44). The id is now refused where the command is read."""
    fields = {**envelope("R-huge"), field: "A" * 600_000}
    huge = r.IdentityVerified.model_construct(**fields, verified_on=TODAY, signature=None)
    value = driver.serde.encode(huge)
    assert len(value) < KAFKA_RECORD_LIMIT  # a record the broker takes
    sent = await driver.send(huge, key=b"")

    [letter] = [s.record for s in sent if isinstance(s.record, r.DeadLetter)]
    assert letter.reason == "invalid_record"
    assert "AAAA" not in letter.error
    assert answers(sent) == []
    assert all(len(s.value) + len(s.key or b"") < KAFKA_RECORD_LIMIT for s in sent)
    assert state.failure is None
