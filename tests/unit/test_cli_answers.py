"""Every command the CLI publishes is answered: the verdict on an answer and the reader.

No Kafka: the verdict is a pure function (table-tested) and the reader is driven by a
fake fetcher. The verbs themselves are in test_cli_request_waits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from privops.cli.common import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE
from privops.cli.request.answers import (
    REASONS,
    Outcome,
    Verdict,
    exit_code,
    judge,
    reason_words,
)
from privops.cli.request.reader import AnswerReader
from privops.cli.request.submit import date_order_problem
from privops.core.errors import DecodeError
from privops.core.records import (
    Command,
    CommandAccepted,
    CommandRejected,
    DeadlineExtended,
    Record,
    RequestSubmitted,
)
from privops.core.vocab import RequestState, RequestType

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BOOTSTRAP = "127.0.0.1:19092"


def command(request_id: str = "REQ-1", command_id: str = "c-1") -> Command:
    return DeadlineExtended(
        command_id=command_id,
        request_id=request_id,
        issued_at=NOW,
        actor="dpo",
        reason="complex",
        notified_on=date(2026, 3, 2),
    )


def accepted(
    cmd: Command, state: RequestState | None = RequestState.in_progress, **fields: Any
) -> CommandAccepted:
    return CommandAccepted(
        command_id=cmd.command_id,
        request_id=cmd.request_id,
        command_type=type(cmd).__name__,
        answered_at=NOW,
        request_state=state,
        **fields,
    )


def rejected(cmd: Command, reason: str, message: str = "", **fields: Any) -> CommandRejected:
    return CommandRejected(
        command_id=cmd.command_id,
        request_id=cmd.request_id,
        command_type=type(cmd).__name__,
        answered_at=NOW,
        reason=reason,
        message=message,
        **fields,
    )


# --- the verdict ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "code", "words"),
    [
        ("unknown_request", EXIT_NOT_FOUND, "the worker knows no request with this id"),
        ("unknown_subject", EXIT_NOT_FOUND, "no system has reported this subject"),
        ("duplicate", EXIT_FAILED, "already submitted"),
        ("invalid_command", EXIT_FAILED, "the command is not valid"),
        ("invalid_transition", EXIT_FAILED, "current state does not allow it"),
        ("unknown_task", EXIT_FAILED, "no such task"),
        ("not_restricted", EXIT_FAILED, "the restriction named is not in force"),
        ("restriction_not_named", EXIT_FAILED, "name the one this lift ends with --restriction"),
        ("already_extended", EXIT_FAILED, "an extension is allowed once"),
        ("request_finished", EXIT_FAILED, "the request is already finished"),
        ("dates_out_of_order", EXIT_FAILED, "the dates are out of order"),
        ("brand_new_rule", EXIT_FAILED, "the worker refused it"),  # unknown code: generic
    ],
)  # fmt: skip
def test_a_rejection_gives_its_exit_code_and_reason_in_words(
    reason: str, code: int, words: str
) -> None:
    cmd = command()
    verdict = judge(cmd, rejected(cmd, reason, "worker detail"), wait=10, bootstrap=BOOTSTRAP)
    assert verdict.outcome is Outcome.rejected
    assert verdict.exit_code == code
    assert words in verdict.text
    assert f"[{reason}]" in verdict.text  # the code too, for scripts and searching the docs
    assert "worker detail" in verdict.text
    assert "DeadlineExtended for REQ-1 rejected" in verdict.text


def test_a_submission_is_named_by_its_type_and_a_repeated_message_said_once() -> None:
    submitted = RequestSubmitted(
        command_id="c-1", request_id="REQ-1", issued_at=NOW, actor="dpo",
        request_type=RequestType.erasure, subject_id="C-9", received_on=date(2026, 3, 2),
    )  # fmt: skip
    answer = rejected(submitted, "unknown_subject", "no system has reported this subject")
    text = judge(submitted, answer, wait=10, bootstrap=BOOTSTRAP).text
    assert text.startswith("erasure request REQ-1 rejected: no system has reported")
    assert text.count("no system has reported this subject") == 1


def test_every_known_reason_has_words_of_its_own() -> None:
    assert all(reason_words(code) == words for code, words in REASONS.items())
    assert len(set(REASONS.values())) == len(REASONS)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({}, "accepted, state in_progress"),
        ({"due_on": date(2026, 4, 2)}, "accepted, state in_progress, due 2026-04-02"),
        (
            {"due_on": date(2026, 6, 2), "message": "extended to three months"},
            "accepted, state in_progress, due 2026-06-02 (extended to three months)",
        ),
        ({"request_state": None}, "accepted"),
    ],
)
def test_an_acceptance_says_what_the_worker_said(fields: dict[str, Any], text: str) -> None:
    cmd = command()
    state = fields.pop("request_state", RequestState.in_progress)
    verdict = judge(cmd, accepted(cmd, state, **fields), wait=10, bootstrap=BOOTSTRAP)
    assert (verdict.outcome, verdict.exit_code, verdict.text) == (Outcome.accepted, 0, text)


def test_no_answer_in_time_exits_3_saying_what_to_check() -> None:
    verdict = judge(command(), None, wait=2.5, bootstrap=BOOTSTRAP)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.no_answer, EXIT_UNAVAILABLE)
    for hint in ("within 2.5 s", "privops worker", "privops local status", BOOTSTRAP, "--wait"):
        assert hint in verdict.text


def test_not_waiting_is_success_without_an_answer() -> None:
    verdict = judge(command(), None, wait=None, bootstrap=BOOTSTRAP)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.not_waited, 0)
    assert "--no-wait" in verdict.text


def test_the_unknown_ids_get_a_hint() -> None:
    cmd = command()
    text = judge(cmd, rejected(cmd, "unknown_subject"), wait=1, bootstrap=BOOTSTRAP).text
    assert "check the subject id" in text


def test_a_release_of_a_hold_the_subject_does_not_have_points_at_the_subjects_holds() -> None:
    """It said "no request with this id" and pointed at `audit show`: no request is
    involved, and the usual cause is the wrong --subject (review, session 43)."""
    from privops.core.records import LegalHoldReleased

    cmd = LegalHoldReleased(
        command_id="c-9",
        request_id="HOLD-7",
        issued_at=NOW,
        actor="dpo",
        hold_id="HOLD-7",
        subject_id="C-2",
    )
    answer = rejected(cmd, "unknown_request", "no active hold HOLD-7")
    verdict = judge(cmd, answer, wait=10, bootstrap=BOOTSTRAP)
    assert verdict.exit_code == EXIT_NOT_FOUND
    assert "the subject C-2 has no active hold with this id [unknown_request]" in verdict.text
    assert "`privops request hold list --subject C-2` lists their holds" in verdict.text
    assert "request with this id" not in verdict.text
    assert "audit show" not in verdict.text


def _v(code: int) -> Verdict:
    return Verdict(Outcome.accepted, code, "")


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], 0),
        ([0], 0),
        ([0, EXIT_FAILED], EXIT_FAILED),
        ([EXIT_FAILED, EXIT_NOT_FOUND], EXIT_NOT_FOUND),
        ([EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_FAILED], EXIT_UNAVAILABLE),
    ],
)
def test_several_commands_exit_with_the_gravest(codes: list[int], expected: int) -> None:
    assert exit_code(_v(c) for c in codes) == expected


def test_verdict_json_carries_the_answer() -> None:
    cmd = command()
    answer = rejected(cmd, "already_extended", "once", request_state=RequestState.in_progress)
    row = judge(cmd, answer, wait=1, bootstrap=BOOTSTRAP).as_json()
    assert row["outcome"] == "rejected"
    assert row["exit_code"] == EXIT_FAILED
    assert row["reason"] == "already_extended"
    assert row["request_state"] == "in_progress"
    assert row["due_on"] is None
    done = judge(cmd, accepted(cmd, due_on=date(2026, 4, 2)), wait=1, bootstrap=BOOTSTRAP)
    assert done.as_json()["due_on"] == "2026-04-02"


# --- dates out of order ---------------------------------------------------------------------

D = date.fromisoformat


@pytest.mark.parametrize(
    ("received", "verified", "information", "problem"),
    [
        ("2026-03-02", None, None, None),
        ("2026-03-02", "2026-03-02", None, None),
        ("2026-03-02", "2026-03-05", "2026-03-04", None),
        ("2026-03-02", "2026-03-05", "2026-02-20", None),  # information before receipt: fine
        ("2026-03-02", None, "2026-03-04", None),  # arrived, not yet checked
        (
            "2026-03-02", "2026-03-01", None,
            "--identity-verified 2026-03-01 is before --received 2026-03-02",
        ),
        (
            "2026-03-02", "2026-03-03", "2026-03-04",
            "--identity-received 2026-03-04 is after --identity-verified 2026-03-03",
        ),
    ],
)  # fmt: skip
def test_date_order(
    received: str, verified: str | None, information: str | None, problem: str | None
) -> None:
    found = date_order_problem(
        D(received), D(verified) if verified else None, D(information) if information else None
    )
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


# --- the reader -----------------------------------------------------------------------------


@dataclass
class FakeFetcher:
    """Hands out one prepared batch per poll, then nothing (time passes)."""

    batches: list[list[bytes | None]]
    polls: int = 0
    timeouts_ms: list[int] = field(default_factory=list)
    keys: dict[bytes | None, bytes] = field(default_factory=dict)  # a value's key, if not S-1

    async def getmany(self, *_partitions: Any, timeout_ms: int = 0) -> dict[Any, Any]:
        self.polls += 1
        self.timeouts_ms.append(timeout_ms)
        if not self.batches:
            return {}
        batch = self.batches.pop(0)
        return {"tp": [SimpleNamespace(key=self.keys.get(v, b"S-1"), value=v) for v in batch]}


def _decoder(records: dict[bytes, Record]) -> Callable[[bytes | None], Any]:
    async def decode(raw: bytes | None) -> Record:
        if raw is None or raw not in records:
            raise DecodeError("undecodable", "not ours")
        return records[raw]

    return decode


async def test_reader_matches_by_command_id_and_skips_the_rest() -> None:
    mine, other = command(command_id="c-mine"), command(command_id="c-other")
    records: dict[bytes, Record] = {
        b"other": accepted(other),
        b"mine": rejected(mine, "duplicate"),
        b"not-an-answer": mine,
    }
    fetcher = FakeFetcher([[b"other", b"garbage", None], [b"not-an-answer", b"mine"]])
    found = await AnswerReader(fetcher, _decoder(records)).collect({"c-mine": b"S-1"}, 5)
    assert list(found) == ["c-mine"]
    assert isinstance(found["c-mine"], CommandRejected)
    assert fetcher.polls == 2  # stopped as soon as everything was answered


async def test_reader_gives_up_at_the_deadline() -> None:
    fetcher = FakeFetcher([])
    found = await AnswerReader(fetcher, _decoder({})).collect({"c-1": b"S-1"}, 0.05)
    assert found == {}
    assert fetcher.polls >= 1
    assert all(0 < t <= 50 for t in fetcher.timeouts_ms)  # never polls past the deadline


async def test_reader_keeps_the_first_answer_to_a_command() -> None:
    cmd = command()
    records: dict[bytes, Record] = {b"a": accepted(cmd), b"b": rejected(cmd, "duplicate")}
    fetcher = FakeFetcher([[b"a", b"b"]])
    found = await AnswerReader(fetcher, _decoder(records)).collect({"c-1": b"S-1"}, 5)
    assert isinstance(found["c-1"], CommandAccepted)


async def test_reader_takes_only_the_answer_under_the_commands_own_key() -> None:
    """A copy of the command put on the topic under another key is rejected wrong_key
    with the same command id. Taken first, that rejection told the DPO their accepted
    command was refused, and they sent it again (review, session 44)."""
    cmd = command()
    records: dict[bytes, Record] = {b"copy": rejected(cmd, "wrong_key"), b"real": accepted(cmd)}
    fetcher = FakeFetcher([[b"copy"], [b"real"]], keys={b"copy": b"S-OTHER"})
    found = await AnswerReader(fetcher, _decoder(records)).collect({"c-1": b"S-1"}, 5)
    assert isinstance(found["c-1"], CommandAccepted)
    assert fetcher.polls == 2


@pytest.mark.parametrize("reason", ["wrong_key", "bad_signature"])
async def test_a_rejection_a_copy_provokes_gives_way_to_the_commands_own_answer(
    reason: str,
) -> None:
    """A copy under the same key on another partition (wrong_key), or altered
    (bad_signature), is rejected with the real command's id, and may be answered first
    (review of session 44's fix). The command's own answer wins; with none, the
    rejection is told once the wait is over."""
    cmd = command()
    records: dict[bytes, Record] = {b"copy": rejected(cmd, reason), b"real": accepted(cmd)}
    fetcher = FakeFetcher([[b"copy"], [b"real"]])
    found = await AnswerReader(fetcher, _decoder(records)).collect({"c-1": b"S-1"}, 5)
    assert isinstance(found["c-1"], CommandAccepted)
    alone = await AnswerReader(FakeFetcher([[b"copy"]]), _decoder(records)).collect(
        {"c-1": b"S-1"}, 0.3
    )
    assert isinstance(alone["c-1"], CommandRejected)
    assert alone["c-1"].reason == reason
    # Told as it may be: the DPO's own command did not draw it by itself.
    text = judge(cmd, alone["c-1"], wait=0.3, bootstrap=BOOTSTRAP).text
    assert "a copy of this command put on the topic by someone else" in text
    assert "`privops request status ID` before sending it again" in text
