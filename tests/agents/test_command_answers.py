"""Every command is answered on privacy.command-results; a rejected one does nothing else.

Each test drives the workflow agent on faust's test_context. ``Driver.send`` puts one
record on a topic, then a probe command (an IdentityVerified for a request nobody
submitted, always rejected); the agent handles its input in order, so everything sent
before the probe's answer is what the record caused. Commands are signed with the test
key the agent is made to trust (tests.agents.signers), unless a test says otherwise.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import agents.ingest as agents_ingest
from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.core import consent as rules
from privops.core import records as r
from privops.core.facts import directive_fact
from privops.core.holds import LegalHold
from privops.core.signing import SigningKey
from privops.core.topics import (
    AUDIT,
    COMMAND_RESULTS,
    COMMANDS,
    DEADLETTER,
    REQUEST_TICKS,
    SUBJECT_DIRECTIVES,
    legal_holds_topic,
    task_results_topic,
)
from privops.core.vocab import Category, Purpose, RequestState, RequestType, System
from streams.context import collaborators
from streams.state import state
from streams.tables import consent, legal_holds, requests
from tests.agents.conftest import Outbox, Sent, put_on, subject_key, wait_for
from tests.agents.signers import CREATED, OWNER, TEST_KEY, sign, signers_file, trust
from tests.agents.test_workflow_agent import SUBJECT, TASKED, known_subject

TODAY = collaborators().clock.today()
NOW = collaborators().clock.now()
_ids = itertools.count(1)


def envelope(request_id: str, actor: str = "dpo") -> dict[str, Any]:
    return {
        "command_id": f"cmd-{next(_ids)}",
        "request_id": request_id,
        "issued_at": NOW,
        "actor": actor,
    }


def submit(request_id: str, kind: RequestType = RequestType.erasure, **kw: Any) -> r.Command:
    fields: dict[str, Any] = {
        "request_type": kind,
        "subject_id": SUBJECT,
        "received_on": TODAY,
        "identity_verified_on": TODAY,
    }
    fields.update(kw)
    return sign(r.RequestSubmitted(**envelope(request_id), **fields))


def command(model: type[r.Command], request_id: str, **kw: Any) -> r.Command:
    return sign(model(**envelope(request_id), **kw))


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The signers file the agent trusts in this test: the test key's, for `dpo`."""
    return trust(monkeypatch, tmp_path)


@dataclass
class Driver:
    agent: Any
    serde: Serde
    outbox: Outbox
    probes: itertools.count[int] = field(default_factory=itertools.count)

    async def send(
        self, record: r.Record, topic: str = COMMANDS, key: bytes | None = None
    ) -> list[Sent]:
        """What the agent sent in response to `record` put on `topic` (under `key`, by
        default the key the CLI gives it)."""
        start = len(self.outbox.sent)
        key = subject_key(record) if key is None else key
        await put_on(self.agent, topic, key, self.serde.encode(record))
        probe = command(r.IdentityVerified, f"R-probe-{next(self.probes)}", verified_on=TODAY)
        await put_on(self.agent, COMMANDS, subject_key(probe), self.serde.encode(probe))

        def probe_answered() -> bool:
            return any(answer.command_id == probe.command_id for answer in self.answers())

        await wait_for(probe_answered)
        await state.settle()  # the tables hold what was answered (stored once delivered)
        caused = self.outbox.sent[start:]
        end = next(
            i
            for i, s in enumerate(caused)
            if isinstance(s.record, r.CommandAnswer) and s.record.command_id == probe.command_id
        )
        return caused[:end]

    def answers(self) -> list[r.CommandAnswer]:
        return self.outbox.of(COMMAND_RESULTS, r.CommandAnswer)


@pytest.fixture
async def driver(serde: Serde, outbox: Outbox) -> AsyncIterator[Driver]:
    known_subject()
    async with workflow.test_context() as agent:
        yield Driver(agent, serde, outbox)


def answers(sent: list[Sent]) -> list[r.CommandAnswer]:
    return [s.record for s in sent if isinstance(s.record, r.CommandAnswer)]


def effects(sent: list[Sent]) -> list[Sent]:
    """Everything but the answer and the audit: tasks, notices, directives, dead letters."""
    return [s for s in sent if s.topic not in (COMMAND_RESULTS, AUDIT)]


def audited(sent: list[Sent]) -> list[r.AuditEvent]:
    return [s.record for s in sent if isinstance(s.record, r.AuditEvent)]


def restrict_subject() -> None:
    """The subject's consent state as the ingest agent leaves it after a restriction."""
    directive = r.SubjectDirective(
        directive_id="d-1", subject_id=SUBJECT, request_id="R-r", kind="restricted", occurred_at=NOW
    )
    state, _ = rules.apply_all(None, SUBJECT, [directive_fact(directive)])
    assert state is not None
    assert state.restricted
    consent.data[SUBJECT] = state.model_dump(mode="json")


# --- accepted -------------------------------------------------------------------------------


async def test_accepted_command_is_answered_once_with_the_state_before_its_effects(
    driver: Driver,
) -> None:
    cmd = submit("R-ok")
    sent = await driver.send(cmd)

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandAccepted)
    assert (answer.command_id, answer.request_id) == (cmd.command_id, "R-ok")
    assert answer.command_type == "RequestSubmitted"
    assert answer.request_state is RequestState.awaiting_systems
    assert answer.due_on is not None
    assert answer.message == f"{len(TASKED)} task(s) sent"
    assert sent[0].topic == COMMAND_RESULTS
    assert sent[0].key == SUBJECT.encode()  # under the command's own key: its subject's id
    assert len([s for s in sent if s.topic.startswith("privacy.tasks.")]) == len(TASKED)


async def test_lift_of_a_restricted_subject_is_accepted(driver: Driver) -> None:
    restrict_subject()
    sent = await driver.send(submit("R-lift", RequestType.restriction_lift))
    [answer] = answers(sent)
    assert isinstance(answer, r.CommandAccepted), answer


async def test_a_lift_ends_the_restriction_it_names_and_lifts_with_the_last(
    driver: Driver,
) -> None:
    """Two restrictions stand: a lift must name one, ends it alone (no system told to
    resume, the consent state left restricted), and the lift of the other lifts. The
    records are read from the workflow's own tables (review, session 44)."""
    for rid in ("R-a", "R-b"):
        sent = await driver.send(submit(rid, RequestType.restriction))
        assert isinstance(answers(sent)[0], r.CommandAccepted)
    restrict_subject()
    (unnamed,) = answers(await driver.send(submit("L-0", RequestType.restriction_lift)))
    assert isinstance(unnamed, r.CommandRejected)
    assert unnamed.reason == "restriction_not_named"
    assert "R-a, R-b" in (unnamed.message or "")
    one = await driver.send(submit("L-1", RequestType.restriction_lift, linked_request_id="R-a"))
    assert isinstance(answers(one)[0], r.CommandAccepted)
    assert answers(one)[0].request_state is RequestState.completed
    assert not [s for s in one if s.topic.startswith("privacy.tasks.")]
    assert not [s for s in one if s.topic == SUBJECT_DIRECTIVES]
    last = await driver.send(submit("L-2", RequestType.restriction_lift, linked_request_id="R-b"))
    assert isinstance(answers(last)[0], r.CommandAccepted)
    assert len([s for s in last if s.topic.startswith("privacy.tasks.")]) == len(TASKED)
    assert [s.record.kind for s in last if isinstance(s.record, r.SubjectDirective)] == [
        "restriction_lifted"
    ]


# --- rejected: one answer with the reason, an audit step, nothing else -----------------------


async def _finished(driver: Driver, request_id: str) -> None:
    """A request that completed at once: a consent withdrawal sends no task (the consent
    state is how systems learn it)."""
    sent = await driver.send(
        submit(request_id, RequestType.consent_withdrawal, withdrawn_purpose=Purpose.profiling)
    )
    assert answers(sent)[0].request_state is RequestState.completed


async def _extended(driver: Driver, request_id: str) -> None:
    await driver.send(submit(request_id, RequestType.access))
    sent = await driver.send(
        command(r.DeadlineExtended, request_id, reason="complex", notified_on=TODAY)
    )
    assert isinstance(answers(sent)[0], r.CommandAccepted)


async def _submitted(driver: Driver, request_id: str) -> None:
    await driver.send(submit(request_id, identity_verified_on=None))


async def _nothing(_driver: Driver, _request_id: str) -> None:
    return None


SetUp = Any
REJECTIONS: list[Any] = [
    pytest.param(
        _nothing,
        lambda rid: submit(rid, subject_id="nobody"),
        "unknown_subject",
        id="unknown-subject",
    ),
    pytest.param(
        _nothing,
        lambda rid: submit(rid, RequestType.restriction_lift),
        "not_restricted",
        id="lift-never-restricted",
    ),
    pytest.param(
        _extended,
        lambda rid: command(r.DeadlineExtended, rid, reason="more", notified_on=TODAY),
        "already_extended",
        id="second-extension",
    ),
    pytest.param(
        _finished,
        lambda rid: command(r.RequestCancelled, rid, reason="changed mind"),
        "request_finished",
        id="cancel-finished",
    ),
    pytest.param(
        _finished,
        lambda rid: command(r.RequestRefused, rid, reason="excessive", ground="excessive"),
        "request_finished",
        id="refuse-finished",
    ),
    pytest.param(
        _finished,
        lambda rid: command(r.RequestAnswered, rid, reason="done"),
        "request_finished",
        id="answer-finished",
    ),
    pytest.param(
        _nothing,
        lambda rid: command(r.IdentityVerified, rid, verified_on=TODAY),
        "unknown_request",
        id="verify-unknown-request",
    ),
    pytest.param(
        _nothing,
        lambda rid: submit(rid, received_on=TODAY, identity_verified_on=TODAY - timedelta(days=2)),
        "dates_out_of_order",
        id="verified-before-received",
    ),
    pytest.param(
        _submitted,
        lambda rid: command(
            r.IdentityVerified,
            rid,
            verified_on=TODAY,
            information_received_on=TODAY + timedelta(days=1),
        ),
        "dates_out_of_order",
        id="information-after-verification-and-today",
    ),
    pytest.param(
        _nothing,
        lambda rid: submit(rid, received_on=TODAY + timedelta(days=3), identity_verified_on=None),
        "dates_out_of_order",
        id="received-in-the-future",
    ),
    pytest.param(
        _nothing,
        lambda rid: command(r.LegalHoldReleased, rid, hold_id="H-none", subject_id=SUBJECT),
        "unknown_request",
        id="release-of-no-active-hold",
    ),
    pytest.param(
        _nothing,  # refused before any request is looked up
        lambda rid: TEST_KEY.sign(
            r.RequestCancelled(**envelope(rid), reason="withdrawn"), deployment="staging-cluster"
        ),
        "bad_signature",
        id="signed-for-another-cluster",
    ),
    pytest.param(
        _nothing,  # refused before any request is looked up
        lambda rid: unbound(r.RequestCancelled(**envelope(rid), reason="withdrawn")),
        "unbound_signature",
        id="signed-for-no-cluster",
    ),
]


def unbound(cmd: r.Command) -> r.Command:
    """``cmd`` signed as a CLI older than the deployment binding signed it."""
    return TEST_KEY.sign(cmd, deployment=None)


@pytest.mark.parametrize(("setup", "make", "reason"), REJECTIONS)
async def test_rejected_command_is_answered_with_its_reason_and_has_no_effect(
    driver: Driver, setup: SetUp, make: Any, reason: str
) -> None:
    request_id = f"R-{reason}"
    await setup(driver, request_id)
    before = requests.data.get(request_id)
    cmd = make(request_id)
    sent = await driver.send(cmd)

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandRejected)
    assert (answer.command_id, answer.reason) == (cmd.command_id, reason)
    assert answer.message
    assert effects(sent) == []
    assert [a.action for a in audited(sent)] == ["command_rejected"]
    stored = requests.data.get(request_id)
    if before is None:
        assert stored is None
    else:
        assert stored is not None
        assert stored["state"] == before["state"]
        assert answer.request_state == RequestState(before["state"])


@pytest.mark.parametrize("follow_up", [False, True], ids=["submission", "follow-up"])
async def test_command_not_keyed_by_its_subject_is_rejected_before_it_is_decided(
    driver: Driver, follow_up: bool
) -> None:
    """Under another key the command would land on another subject's partition, decided
    without its subject's state: it is answered wrong_key, and nothing else happens."""
    cmd = submit("R-misrouted")
    if follow_up:
        await driver.send(cmd)
        before = requests.data["R-misrouted"]
        cmd = command(r.RequestCancelled, "R-misrouted", reason="withdrawn")
    sent = await driver.send(cmd, key=b"R-misrouted")

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandRejected)
    assert answer.reason == "wrong_key"
    assert effects(sent) == []
    assert [a.action for a in audited(sent)] == ["command_rejected"]
    assert requests.data.get("R-misrouted") == (before if follow_up else None)


async def test_command_off_its_keys_partition_is_rejected_before_it_is_opened(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyed by its subject's id but not on the partition that key lands on (S1: 3 of
    four; ``Driver.send`` puts it on 0), as a producer partitioning otherwise than
    murmur2 would: decided here it would be stored where neither the subject's state nor
    its keys are. It is answered wrong_key, saying how to partition, and nothing else
    happens."""
    monkeypatch.setattr(agents_ingest, "PARTITIONS", 4)
    sent = await driver.send(submit("R-elsewhere", subject_id="S1"))

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandRejected)
    assert answer.reason == "wrong_key"
    assert "murmur2" in (answer.message or "")
    assert effects(sent) == []
    assert [a.action for a in audited(sent)] == ["command_rejected"]
    assert requests.data.get("R-elsewhere") is None


@pytest.mark.parametrize(
    ("actor", "request_id", "reason", "audited_as"),
    [
        # No key is any email address's: signed with dpo's key, it is not dpo's command.
        pytest.param(
            "jane.dpo@example.com",
            "R-jane",
            "signer_mismatch",
            ("unauthenticated", "R-jane"),
            id="actor",
        ),
        pytest.param("dpo", "jane@example.com", "invalid_command", ("dpo", None), id="request-id"),
    ],
)
async def test_contact_details_as_names_are_rejected_before_anything_is_stored_or_sent(
    driver: Driver, actor: str, request_id: str, reason: str, audited_as: tuple[str, str | None]
) -> None:
    """`--actor jane.dpo@example.com` once stored the request, sent a task, then crashed
    the agent in the audit (which refuses contact details), leaving no audit event."""
    cmd = sign(
        r.RequestSubmitted(
            **envelope(request_id, actor=actor),
            request_type=RequestType.erasure,
            subject_id=SUBJECT,
            received_on=TODAY,
            identity_verified_on=TODAY,
        )
    )
    sent = await driver.send(cmd)

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandRejected)
    assert answer.reason == reason
    assert "example.com" not in answer.message
    assert effects(sent) == []
    assert requests.data.get(request_id) is None
    [event] = audited(sent)
    assert (event.action, event.actor, event.request_id) == ("command_rejected", *audited_as)
    # The agent is still alive: the next command is answered and acted on.
    assert isinstance(answers(await driver.send(submit("R-after")))[0], r.CommandAccepted)


# --- signatures: who issued the command, checked before anything else ------------------------

OTHER_KEY = SigningKey.derive(b"someone else's secret", "a key nobody trusts")


def _swapped(rid: str) -> r.Command:
    """A signed cancellation passed off as a refusal: the same fields, another command."""
    cancel = command(r.RequestCancelled, rid, reason="duplicate request")
    return r.RequestRefused(**cancel.model_dump())


SIGNATURE_REJECTIONS: list[Any] = [
    pytest.param(lambda rid: submit(rid).model_copy(update={"signature": None}), "unsigned",
                 id="unsigned"),
    pytest.param(lambda rid: submit(rid).model_copy(update={"signature": ""}), "unsigned",
                 id="empty-signature"),
    pytest.param(lambda rid: submit(rid).model_copy(update={"signature": "dpo"}),
                 "bad_signature", id="malformed"),
    pytest.param(lambda rid: submit(rid).model_copy(update={"subject_id": "S-someone-else"}),
                 "bad_signature", id="tampered-field"),
    pytest.param(lambda rid: submit(rid).model_copy(update={"actor": "auditor"}),
                 "bad_signature", id="tampered-actor"),
    pytest.param(_swapped, "bad_signature", id="other-command-type"),
    pytest.param(lambda rid: sign(submit(rid), OTHER_KEY), "unknown_signer", id="unknown-key"),
    pytest.param(lambda rid: sign(submit(rid).model_copy(update={"actor": "auditor"})),
                 "signer_mismatch", id="actor-not-the-key-owner"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "reason"), SIGNATURE_REJECTIONS)
async def test_command_not_proven_by_a_trusted_key_is_rejected_before_anything_else(
    driver: Driver, make: Any, reason: str
) -> None:
    request_id = f"R-sig-{reason}"
    cmd = make(request_id)
    sent = await driver.send(cmd)

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandRejected)
    assert (answer.command_id, answer.reason) == (cmd.command_id, reason)
    assert answer.request_state is None  # nothing about the request is told
    assert effects(sent) == []  # no task, notice or directive
    [event] = audited(sent)
    assert (event.action, event.actor, event.request_id) == (
        "command_rejected",
        "unauthenticated",
        request_id,
    )
    assert event.reason is not None
    assert event.reason.startswith(f"{reason}: ")
    assert requests.data.get(request_id) is None


async def test_signed_command_is_accepted_and_audited_as_the_keys_owner(driver: Driver) -> None:
    sent = await driver.send(submit("R-signed"))

    assert isinstance(answers(sent)[0], r.CommandAccepted)
    assert {event.actor for event in audited(sent)} == {OWNER}


async def test_a_revoked_key_is_refused_from_the_next_command_on(
    driver: Driver, signers_path: Path
) -> None:
    assert isinstance(answers(await driver.send(submit("R-before")))[0], r.CommandAccepted)
    revoked = TEST_KEY.entry(OWNER, CREATED).model_copy(update={"revoked_at": NOW})
    signers_file(signers_path, revoked)  # what `privops keys revoke` writes; no restart

    cmd = command(r.RequestCancelled, "R-before", reason="changed mind")
    sent = await driver.send(cmd)

    [answer] = answers(sent)
    assert isinstance(answer, r.CommandRejected)
    assert answer.reason == "revoked_key"
    assert effects(sent) == []
    assert requests.data["R-before"]["state"] == RequestState.awaiting_systems.value


async def test_a_forged_command_does_not_take_the_answer_of_the_real_one(driver: Driver) -> None:
    """A rejected signature leaves nothing behind, not even the memory of its answer, so
    a forgery sent first under a real command's id cannot pre-empt that command."""
    await _submitted(driver, "R-held")  # awaiting identity: cancellable
    real = command(r.RequestCancelled, "R-held", reason="changed mind")
    forged = real.model_copy(update={"reason": "forged"})

    [refused] = answers(await driver.send(forged))
    assert isinstance(refused, r.CommandRejected)
    assert refused.reason == "bad_signature"
    assert requests.data["R-held"]["state"] == RequestState.identity_unverified.value

    [accepted] = answers(await driver.send(real))
    assert isinstance(accepted, r.CommandAccepted)
    assert accepted.request_state is RequestState.cancelled


# --- redelivery -----------------------------------------------------------------------------


async def test_redelivered_accepted_command_gets_the_same_answer_and_no_second_effect(
    driver: Driver,
) -> None:
    cmd = submit("R-again")
    first = await driver.send(cmd)
    again = await driver.send(cmd)

    [one], [two] = answers(first), answers(again)
    assert isinstance(two, r.CommandAccepted)
    assert two.model_dump(exclude={"answered_at"}) == one.model_dump(exclude={"answered_at"})
    assert effects(again) == []
    assert audited(again) == []


async def test_redelivered_rejected_command_gets_the_same_answer(driver: Driver) -> None:
    await _extended(driver, "R-ext")
    cmd = command(r.DeadlineExtended, "R-ext", reason="more", notified_on=TODAY)
    first = await driver.send(cmd)
    again = await driver.send(cmd)

    [one], [two] = answers(first), answers(again)
    assert isinstance(one, r.CommandRejected)
    assert isinstance(two, r.CommandRejected)
    assert (two.reason, two.message) == (one.reason, one.message)
    assert effects(again) == []
    assert audited(again) == []  # audited once, when it was decided


async def test_legal_hold_is_answered_forwarded_once_and_its_redelivery_answered_again(
    driver: Driver,
) -> None:
    place = sign(
        r.LegalHoldPlaced(
            **envelope("H-1"),
            hold_id="H-1",
            subject_id=SUBJECT,
            categories=[Category.contact],
            reason="litigation",
        )
    )
    first = await driver.send(place)
    assert [type(a) for a in answers(first)] == [r.CommandAccepted]
    # Forwarded to the ingest agent, and each system holding contact data told (its
    # deletion by age: tests/agents/test_legal_hold_states.py).
    holdings = collaborators().datamap.holdings().items()
    holding = sorted(legal_holds_topic(s) for s, c in holdings if Category.contact in c)
    assert [s.topic for s in effects(first)] == ["privops.internal.subject-directives", *holding]
    assert [a.action for a in audited(first)] == ["legal_hold_placed"]

    # The ingest agent stores what was forwarded; then the command is redelivered.
    hold = LegalHold(
        hold_id="H-1",
        subject_id=SUBJECT,
        categories=(Category.contact,),
        reason="litigation",
        placed_at=place.issued_at,
    )
    legal_holds.data[SUBJECT] = [hold.model_dump(mode="json")]
    again = await driver.send(place)
    assert answers(again)[0].model_dump(exclude={"answered_at"}) == answers(first)[0].model_dump(
        exclude={"answered_at"}
    )
    assert effects(again) == []
    assert audited(again) == []


# --- topic discipline -----------------------------------------------------------------------


WRONG_TOPIC: list[Any] = [
    pytest.param(task_results_topic(System.crm), lambda: submit("R-wt"), id="command-on-results"),
    pytest.param(REQUEST_TICKS, lambda: submit("R-wt"), id="command-on-ticks"),
    pytest.param(
        COMMANDS,
        lambda: r.TaskCompleted(
            task_id="R-wt:crm:erase", request_id="R-wt", system=System.crm, answered_at=NOW
        ),
        id="answer-on-commands",
    ),
    pytest.param(
        COMMANDS,
        lambda: r.RequestTick(request_id="R-wt", kind="followup", at=NOW),
        id="tick-on-commands",
    ),
    pytest.param(
        task_results_topic(System.crm),
        lambda: r.RequestTick(request_id="R-wt", kind="followup", at=NOW),
        id="tick-on-results",
    ),
    pytest.param(
        task_results_topic(System.marketing),
        lambda: r.TaskCompleted(
            task_id="R-wt:crm:erase", request_id="R-wt", system=System.crm, answered_at=NOW
        ),
        id="crm-answer-on-marketing-results",
    ),
    pytest.param(
        COMMANDS,
        lambda: r.CommandAccepted(
            command_id="c", request_id="R-wt", command_type="RequestSubmitted", answered_at=NOW
        ),
        id="answer-to-a-command-on-commands",
    ),
]


@pytest.mark.parametrize(("topic", "make"), WRONG_TOPIC)
async def test_record_on_the_wrong_topic_is_dead_lettered_and_audited(
    driver: Driver, topic: str, make: Any
) -> None:
    sent = await driver.send(make(), topic)

    [letter] = [s.record for s in sent if isinstance(s.record, r.DeadLetter)]
    assert (letter.reason, letter.original_topic) == ("wrong_topic", topic)
    assert [s.topic for s in effects(sent)] == [DEADLETTER]
    assert answers(sent) == []
    assert [a.action for a in audited(sent)] == ["dead_lettered"]
    assert requests.data.get("R-wt") is None


async def test_an_answered_command_redelivered_with_an_older_clis_signature_gets_its_answer(
    driver: Driver,
) -> None:
    """An older worker accepted a command an older CLI signed for no cluster; after the
    upgrade it is redelivered (its offset was not committed yet). It was done: the new
    worker answers it the same, not "sign it again" (review, session 30)."""
    submitted = submit("R-unbound")
    first = await driver.send(submitted)  # here as the record of its first answer
    [accepted] = answers(first)
    assert isinstance(accepted, r.CommandAccepted)

    again = await driver.send(unbound(submitted.model_copy(update={"signature": None})))
    [answer] = answers(again)
    assert isinstance(answer, r.CommandAccepted)
    assert effects(again) == []
    assert audited(again) == []
