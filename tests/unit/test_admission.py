"""Table tests of privops.core.admission: names the audit can keep, records on their topic."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from privops.core import records as r
from privops.core.admission import (
    INVALID_ACTOR,
    MAX_COMMAND_AGE,
    admit_workflow,
    audited_actor,
    audited_request_id,
    check_fresh,
    check_names,
    is_plain_id,
    is_principal_name,
    names_another_chain,
)
from privops.core.audit import SYSTEM_CHAIN, chain_key
from privops.core.errors import WrongTopic
from privops.core.identity import subject_ref
from privops.core.request import FOLLOWUP_ACTOR, Reason, Refused
from privops.core.topics import COMMANDS, REQUEST_TICKS, SUBJECT_DIRECTIVES, task_results_topic
from privops.core.vocab import Category, RequestType, System

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("actor", "ok"),
    [
        ("dpo", True),
        ("system-crm", True),
        ("privops-scheduler", True),
        ("jane.dpo", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("jane.dpo@example.com", False),
        ("Jane Doe", False),
        ("dpo\t", False),
        ("", False),
        ("-dpo", False),
        ("07700900123", False),  # a UK phone number, even as a bare word
        ("dpo:jane", False),
    ],
)
def test_actor_must_be_a_principal_name(actor: str, ok: bool) -> None:
    assert is_principal_name(actor) is ok
    assert audited_actor(actor) == (actor if ok else INVALID_ACTOR)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("REQ-DEADBEEF0000", True),
        ("R-agent-1:submit", True),
        ("REQ-1-F1", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("jane@example.com", False),
        ("07700 900123", False),
        ("07700900123", False),
        ("a/b", False),
        ("", False),
    ],
)
def test_request_ids_the_audit_can_keep(value: str, ok: bool) -> None:
    assert is_plain_id(value) is ok
    assert audited_request_id(value) == (value if ok else None)


def _submitted() -> r.Record:
    return r.RequestSubmitted(
        command_id="c",
        request_id="R",
        issued_at=NOW,
        actor="dpo",
        request_type=RequestType.erasure,
        subject_id="s",
        received_on=date(2026, 3, 2),
    )


def _hold() -> r.Record:
    return r.LegalHoldPlaced(
        command_id="c",
        request_id="H",
        issued_at=NOW,
        actor="dpo",
        hold_id="H",
        subject_id="s",
        categories=[Category.contact],
        reason="litigation",
    )


def _released() -> r.Record:
    return r.LegalHoldReleased(
        command_id="c", request_id="H", issued_at=NOW, actor="dpo", hold_id="H", subject_id="s"
    )


def _result() -> r.Record:
    return r.TaskCompleted(
        task_id="R:crm:erase", request_id="R", system=System.crm, answered_at=NOW
    )


def _result_of_another_system() -> r.Record:
    return r.TaskCompleted(task_id="t", request_id="R", system=System.marketing, answered_at=NOW)


RESULTS = task_results_topic(System.crm)


def _tick() -> r.Record:
    return r.RequestTick(request_id="R", kind="followup", at=NOW)


def _answer() -> r.Record:
    return r.CommandAccepted(
        command_id="c", request_id="R", command_type="RequestSubmitted", answered_at=NOW
    )


def _directive() -> r.Record:
    return r.SubjectDirective(
        directive_id="d", subject_id="s", request_id="R", kind="restricted", occurred_at=NOW
    )


@pytest.mark.parametrize(
    ("topic", "make", "ok"),
    [
        (COMMANDS, _submitted, True),
        (COMMANDS, _hold, True),
        (RESULTS, _result, True),
        # issue 13: an answer counts only on its own system's results topic
        (RESULTS, _result_of_another_system, False),
        (task_results_topic(System.marketing), _result, False),
        (REQUEST_TICKS, _tick, True),
        # what an attacker with write access to one topic would try (issue 13)
        (RESULTS, _submitted, False),
        (RESULTS, _hold, False),
        (REQUEST_TICKS, _submitted, False),
        (COMMANDS, _result, False),
        (COMMANDS, _tick, False),
        (RESULTS, _tick, False),
        (REQUEST_TICKS, _result, False),
        (COMMANDS, _answer, False),
        (COMMANDS, _directive, False),
        (SUBJECT_DIRECTIVES, _submitted, False),
        ("crm.events", _result, False),
    ],
)
def test_workflow_takes_each_record_type_only_from_its_own_topic(
    topic: str, make: Callable[[], r.Record], ok: bool
) -> None:
    record = make()
    if ok:
        assert admit_workflow(topic, record) is record
        return
    with pytest.raises(WrongTopic, match=f"{type(record).__name__} does not belong on") as err:
        admit_workflow(topic, record)
    assert err.value.reason == "wrong_topic"


@pytest.mark.parametrize(
    ("issued", "refused"),
    [
        pytest.param(NOW, None, id="now"),
        pytest.param(NOW + timedelta(minutes=4), None, id="a-clock-minutes-ahead"),
        pytest.param(NOW + timedelta(minutes=6), "ahead of privops' clock", id="beyond-the-skew"),
        pytest.param(NOW + timedelta(days=3650), "ahead of privops' clock", id="ten-years-ahead"),
        pytest.param(NOW - MAX_COMMAND_AGE, None, id="fourteen-days-old"),
        pytest.param(
            NOW - MAX_COMMAND_AGE - timedelta(minutes=1),
            "signed more than 14 days ago",
            id="older",
        ),
    ],
)
def test_a_command_is_acted_on_only_within_its_window(
    issued: datetime, refused: str | None
) -> None:
    """A command dated ahead would have its fourteen days start only at its date: before,
    one dated ten years ahead was acted on, and could be replayed for ten years more."""
    cmd = r.RequestCancelled(
        command_id="c-1", request_id="R-1", issued_at=issued, actor="dpo", reason="withdrawn"
    )
    if refused is None:
        check_fresh(cmd, NOW)
        return
    with pytest.raises(Refused) as caught:
        check_fresh(cmd, NOW)
    assert caught.value.reason is Reason.invalid_command
    assert refused in caught.value.message


# A subject ref as the audit names its chain (identity.subject_ref: "sr_" + 24 hex digits).
SUBJECT_CHAIN = "sr_" + "0123456789abcdef01234567"


@pytest.mark.parametrize(
    "request_id",
    [SUBJECT_CHAIN, "sr_theirs", "SR_" + "0123456789ABCDEF01234567", "privops", "PRIVOPS"],
)
@pytest.mark.parametrize("make", [_submitted, _hold], ids=lambda m: m.__name__)
def test_a_request_id_naming_another_audit_chain_is_refused(
    request_id: str, make: Callable[[], r.Record]
) -> None:
    """A request's audit steps chain under ``<app>/<request id>`` (audit.chain_key), a
    subject's under their ref, the rest under ``privops``: a request named like one
    appended its steps to that chain (review, session 34). A legal hold chains under its
    command's request id (the CLI's hold id), so it is checked alike."""
    cmd = make().model_copy(update={"request_id": request_id})
    assert isinstance(cmd, r.Command)
    assert is_plain_id(request_id)  # nothing else refused it
    with pytest.raises(Refused) as caught:
        check_names(cmd)
    assert caught.value.reason is Reason.invalid_command
    assert "name the audit's system and subject chains" in caught.value.message
    if request_id != SYSTEM_CHAIN:
        assert request_id not in caught.value.message  # never echoed
    assert audited_request_id(request_id) is None


@pytest.mark.parametrize(
    "make",
    [
        _released,
        lambda: r.IdentityVerified(
            command_id="c", request_id="R", issued_at=NOW, actor="dpo", verified_on=NOW.date()
        ),
        lambda: _submitted().model_copy(update={"actor": FOLLOWUP_ACTOR}),
    ],
    ids=["hold-released", "follow-up-command", "the-workers-follow-up-erasure"],
)
def test_a_request_stored_under_such_an_id_before_still_takes_its_commands(
    make: Callable[[], r.Record],
) -> None:
    """Only a new id is refused: one stored before the rule (and the follow-up erasure the
    worker issues for it, ``<id>-F1``) must still be verified, cancelled, released and
    erased by age; its steps are audited apart (second review, session 34)."""
    cmd = make().model_copy(update={"request_id": SUBJECT_CHAIN})
    assert isinstance(cmd, r.Command)
    check_names(cmd)  # nothing raised
    assert audited_request_id(SUBJECT_CHAIN) is None


def test_the_ids_refused_are_those_that_would_join_another_chain() -> None:
    sref = subject_ref(b"pseudonym-key", "S-1")
    assert chain_key(sref, None, "app") == chain_key(None, sref, "app")
    assert chain_key(SYSTEM_CHAIN, None, "app") == chain_key(None, None, "app")
    assert names_another_chain(sref)
    assert names_another_chain(SYSTEM_CHAIN)


@pytest.mark.parametrize("request_id", ["REQ-DEADBEEF0000", "privops-1", "sr-1", "x_sr_1", "R"])
def test_request_ids_near_a_chain_name_are_taken(request_id: str) -> None:
    for make in (_submitted, _hold):
        cmd = make().model_copy(update={"request_id": request_id})
        assert isinstance(cmd, r.Command)
        check_names(cmd)
    assert audited_request_id(request_id) == request_id
