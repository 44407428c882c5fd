"""The request verbs wait for the worker's answer and exit with its verdict.

No Kafka: the verbs run against a fake producer and answer reader that answer each
command as a test's worker would (the verdict itself is table-tested in test_cli_answers).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from typer.testing import CliRunner

from privops.adapters.settings import get_settings
from privops.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE
from privops.cli.main import app
from privops.cli.request import publish as publish_module
from privops.cli.request import sealing as sealing_module
from privops.core.errors import RegistryUnreachable
from privops.core.fieldcrypt import DataKey, is_encrypted, parse_field, seal_fields, split_key_id
from privops.core.records import (
    Command,
    CommandAnswer,
    IdentityVerified,
    Record,
    RequestSubmitted,
)
from privops.core.vocab import RequestType
from tests.unit.test_cli_answers import BOOTSTRAP, accepted, rejected

# --- the verbs, against a fake broker ---------------------------------------------------------

Respond = Callable[[Command], CommandAnswer | None]
FAKE_CLUSTER = "fake-cluster-id"  # what the fake broker says its cluster's id is


@dataclass
class FakeBroker:
    """Stands in for the producer, the registry and the answer topic: records what the CLI
    did, in order, and answers each command with `respond`."""

    respond: Respond = lambda cmd: accepted(cmd)
    events: list[str] = field(default_factory=list)
    sent: list[Command] = field(default_factory=list)
    waited: list[float] = field(default_factory=list)
    refuse: Exception | None = None  # what the broker raises on a send, if anything
    refuse_after: int = 0  # ... once this many were sent
    unreadable: Exception | None = None  # what reading the answers raises, if anything
    keys: dict[str, bytes] = field(default_factory=dict)  # what each answer is awaited under


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBroker]:
    fake = FakeBroker()

    class Serde:
        @classmethod
        def for_settings(cls, _cfg: Any) -> Serde:
            return cls()

        def register_all(self) -> int:
            return 0

        def encode(self, record: Command) -> bytes:
            fake.sent.append(record)
            return b"x"

        async def decode_async(self, _raw: bytes | None) -> Record:
            raise AssertionError("the fake reader does not decode")

    class Producer:
        async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
            assert (topic, value) == ("privacy.commands", b"x")
            sent = sum(event.startswith("sent ") for event in fake.events)
            if fake.refuse is not None and sent >= fake.refuse_after:
                raise fake.refuse
            fake.events.append(f"sent {key.decode()}")

    class Reader:
        async def collect(self, ids: dict[str, bytes], wait: float) -> dict[str, CommandAnswer]:
            fake.waited.append(wait)
            fake.keys.update(ids)
            if fake.unreadable is not None:
                raise fake.unreadable
            answers = {c.command_id: fake.respond(c) for c in fake.sent}
            return {i: a for i, a in answers.items() if i in ids and a is not None}

    @asynccontextmanager
    async def producer(_bootstrap: str) -> AsyncIterator[Producer]:
        yield Producer()

    @asynccontextmanager
    async def answer_reader(client: dict[str, Any], _decode: Any) -> AsyncIterator[Reader]:
        fake.events.append(f"noted the end of the answers on {client['bootstrap_servers']}")
        yield Reader()

    monkeypatch.setenv("PRIVOPS_KAFKA_BOOTSTRAP", BOOTSTRAP)
    monkeypatch.setenv("PRIVOPS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")  # a fake, no SASL
    get_settings.cache_clear()
    monkeypatch.setattr(publish_module, "Serde", Serde)
    monkeypatch.setattr(publish_module, "producer", producer)
    monkeypatch.setattr(publish_module, "answer_reader", answer_reader)

    async def cluster_id(client: dict[str, Any]) -> str:
        assert client["bootstrap_servers"] == BOOTSTRAP  # the cluster the commands go to
        return FAKE_CLUSTER

    monkeypatch.setattr(publish_module, "cluster_id", cluster_id)

    def worker_json(path: str, *, not_found: str) -> dict[str, Any]:
        """The worker's /requests/{id}: every REQ-* request is subject C-9's here."""
        fake.events.append(f"asked the worker {path}")
        assert path.startswith("/requests/REQ-"), not_found
        return {"subject_id": "C-9"}

    monkeypatch.setattr(publish_module, "worker_json", worker_json)

    def seal(subject_id: str, fields: dict[str, str], _new_key: bool) -> dict[str, str]:
        """The worker's key service, sealing with the real field crypto."""
        fake.events.append(f"sealed {sorted(fields)} for {subject_id}")
        return seal_fields(DataKey.generate(subject_id), subject_id, fields)

    monkeypatch.setattr(sealing_module, "key_service_seal", seal)
    yield fake
    monkeypatch.undo()
    get_settings.cache_clear()


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def flat(self) -> str:
        return " ".join((self.stdout + self.stderr).split())


def run(*args: str, env: dict[str, str] | None = None) -> Run:
    result = CliRunner().invoke(app, ["request", *args], env={"COLUMNS": "200", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def test_answers_are_read_from_where_the_topic_ended_before_publishing(
    broker: FakeBroker,
) -> None:
    out = run("erase", "--subject", "C-1", "--verified-now")
    assert out.code == 0, out.flat
    rid = broker.sent[0].request_id
    assert rid.startswith("REQ-")
    # Keyed by the subject's id: the request lives on its subject's partition.
    assert broker.events == [f"noted the end of the answers on {BOOTSTRAP}", "sent C-1"]
    assert broker.waited == [10.0]


@pytest.mark.parametrize(
    ("refusal", "code", "words"),
    [
        (
            UnknownTopicOrPartitionError(),
            EXIT_UNAVAILABLE,
            "privacy.commands was not found on the Kafka broker at",
        ),
        (KafkaTimeoutError(), EXIT_UNAVAILABLE, "it may have been written all the same"),
        (
            TopicAuthorizationFailedError(),
            EXIT_BAD_INPUT,
            "does not let this client write privacy.commands",
        ),
        (KafkaConnectionError(), EXIT_UNAVAILABLE, "could not send to privacy.commands"),
    ],
)
def test_a_send_the_broker_refuses_is_one_line_and_the_right_exit(
    broker: FakeBroker, refusal: Exception, code: int, words: str
) -> None:
    """Before, a traceback and exit 1, which a script reads as "the worker refused it"
    (review, session 43: ``--no-wait`` before any topic was created)."""
    broker.refuse = refusal
    out = run("erase", "--subject", "C-1", "--verified-now", "--no-wait")
    assert out.code == code, out.flat
    assert words in out.flat
    assert "Traceback" not in out.flat
    if isinstance(refusal, KafkaTimeoutError):  # named, to check before running it again
        assert f"`privops request status {broker.sent[0].request_id}` says" in out.flat


def test_a_send_refused_after_the_first_of_two_names_what_was_sent(broker: FakeBroker) -> None:
    """A complaint with its restriction is two commands: the first was on the topic when
    the second failed, and the message said only "could not send", so a retry made a
    second complaint (review of session 43's first mapping)."""
    broker.refuse, broker.refuse_after = KafkaConnectionError(), 1
    out = run("complain", "--subject", "C-1", "--verified-now", "--restrict-while-investigating",
              "--no-wait")  # fmt: skip
    assert out.code == EXIT_UNAVAILABLE, out.flat
    first = broker.sent[0].request_id
    assert f"sent before it, not to send again: {first}" in out.flat


@pytest.mark.parametrize(
    "failure",
    [TopicAuthorizationFailedError(), KafkaConnectionError(), RegistryUnreachable("registry down")],
    ids=["answers-not-readable", "broker-gone", "registry-down"],
)
def test_answers_that_cannot_be_read_exit_3_naming_what_was_sent(
    broker: FakeBroker, failure: Exception
) -> None:
    """The command went out, then reading the answers failed. Before, a broker error was
    a traceback and exit 1 (read by a script as "refused"), and a registry error did not
    say the command was sent, so a DPO sent it again and made a second request (review,
    session 44). Now exit 3, naming the request to check."""
    broker.unreadable = failure
    out = run("erase", "--subject", "C-1", "--verified-now", "--wait", "3")
    assert out.code == EXIT_UNAVAILABLE, out.flat
    rid = broker.sent[0].request_id
    assert f"sent {rid} to privacy.commands, but the worker's answer could not be read" in out.flat
    assert "before sending it again" in out.flat
    assert "Traceback" not in out.flat
    assert broker.keys == {broker.sent[0].command_id: b"C-1"}  # awaited under the subject's key


def test_accepted_submission_prints_the_id_then_what_the_worker_said(
    broker: FakeBroker,
) -> None:
    broker.respond = lambda cmd: accepted(cmd, due_on=date(2026, 4, 2))
    out = run("erase", "--subject", "C-1", "--verified-now", "--wait", "3")
    assert out.code == 0, out.flat
    rid = broker.sent[0].request_id
    assert out.stdout.splitlines()[0] == rid
    assert "accepted, state in_progress, due 2026-04-02" in out.flat
    assert f"privops request status {rid}" in out.flat
    assert broker.waited == [3.0]


@pytest.mark.parametrize(
    ("reason", "code", "words"),
    [
        ("unknown_subject", EXIT_NOT_FOUND, "no system has reported this subject"),
        ("duplicate", EXIT_FAILED, "already submitted"),
        ("whatever_next", EXIT_FAILED, "the worker refused it"),
    ],
)
def test_rejected_submission_exits_with_the_reason(
    broker: FakeBroker, reason: str, code: int, words: str
) -> None:
    broker.respond = lambda cmd: rejected(cmd, reason, "no such customer")
    out = run("erase", "--subject", "C-1", "--verified-now")
    assert out.code == code
    assert out.stdout.strip() == broker.sent[0].request_id  # published, so its id is shown
    assert words in out.stderr.replace("\n", " ")
    assert "request status" not in out.flat  # no "follow it" for a rejected request


def test_quiet_prints_only_the_id_and_the_exit_code_carries_the_verdict(
    broker: FakeBroker,
) -> None:
    out = run("erase", "--subject", "C-1", "--verified-now", "-q")
    assert (out.code, out.stdout) == (0, broker.sent[0].request_id + "\n")
    broker.respond = lambda cmd: rejected(cmd, "unknown_subject")
    out = run("erase", "--subject", "C-1", "--verified-now", "-q")
    assert (out.code, out.stdout) == (EXIT_NOT_FOUND, broker.sent[1].request_id + "\n")
    assert "unknown_subject" in out.stderr  # why, on stderr, even when quiet


def test_no_answer_exits_3_naming_what_to_check(broker: FakeBroker) -> None:
    broker.respond = lambda _cmd: None
    out = run("verify", "REQ-1", "--wait", "0.5")
    assert out.code == EXIT_UNAVAILABLE
    assert out.stdout.strip() == "REQ-1"
    for hint in ("within 0.5 s", "privops worker", "privops local status", BOOTSTRAP):
        assert hint in out.flat


def test_no_wait_only_publishes(broker: FakeBroker) -> None:
    broker.respond = lambda _cmd: None
    out = run("extend", "REQ-1", "--reason", "complex", "--no-wait")
    assert out.code == 0, out.flat
    # Keyed by the request's subject (asked of the worker); the answer topic is not
    # even looked at.
    assert broker.events == [
        "asked the worker /requests/REQ-1",
        "sealed ['reason'] for C-9",
        "sent C-9",
    ]
    assert broker.waited == []
    assert "not awaited" in out.flat
    # Nothing is said to have happened that the worker may still refuse (review,
    # session 35): "extension requested" only as sent, not yet accepted.
    assert "sent, not yet accepted: REQ-1: extension requested" in out.flat


@pytest.mark.parametrize(
    "args",
    [
        ["hold", "place", "--subject", "C-1", "--category", "cctv", "--reason", "L-7"],
        ["approve", "REQ-1", "--disclose", "cctv"],
        ["decide-objection", "REQ-1", "--accept", "--reason", "x"],
    ],
    ids=lambda a: a[0],
)
def test_no_wait_never_says_it_was_done(broker: FakeBroker, args: list[str]) -> None:
    """A legal hold "placed", a response "approved and sent", an objection "upheld":
    claims a DPO acts on, said when only published (review, session 35)."""
    broker.respond = lambda _cmd: None
    out = run(*args, "--no-wait")
    assert out.code == 0, out.flat
    assert "sent, not yet accepted: " in out.flat
    assert "privops request status" in out.flat


@pytest.mark.usefixtures("broker")
@pytest.mark.parametrize("wait", ["0", "-1"])
def test_wait_must_be_positive(wait: str) -> None:
    out = run("cancel", "REQ-1", "--reason", "withdrawn", "--wait", wait)
    assert out.code == EXIT_BAD_INPUT
    assert "must be more than 0 seconds" in out.flat


def test_the_default_wait_comes_from_the_environment(broker: FakeBroker) -> None:
    """An operator on a slow cluster sets PRIVOPS_COMMAND_WAIT once; --wait still wins."""
    wait = {"PRIVOPS_COMMAND_WAIT": "45"}
    assert run("erase", "--subject", "C-1", "--verified-now", env=wait).code == 0
    assert run("verify", "REQ-1", "--wait", "2", env=wait).code == 0
    assert broker.waited == [45.0, 2.0]


@pytest.mark.usefixtures("broker")
@pytest.mark.parametrize(
    ("value", "said"),
    [("soon", "PRIVOPS_COMMAND_WAIT"), ("0", "PRIVOPS_COMMAND_WAIT, its default) must be more")],
)
def test_a_bad_default_wait_in_the_environment_is_named(value: str, said: str) -> None:
    out = run("cancel", "REQ-1", "--reason", "withdrawn", env={"PRIVOPS_COMMAND_WAIT": value})
    assert out.code == EXIT_BAD_INPUT
    assert said in out.flat


def test_follow_up_rejection_exits_1_with_the_reason(broker: FakeBroker) -> None:
    broker.respond = lambda cmd: rejected(cmd, "already_extended", "allowed once")
    out = run("extend", "REQ-1", "--reason", "complex")
    assert out.code == EXIT_FAILED
    assert "an extension is allowed once" in out.flat
    broker.respond = lambda cmd: rejected(cmd, "unknown_request", "no request REQ-1")
    assert run("extend", "REQ-1", "--reason", "complex").code == EXIT_NOT_FOUND


def test_complaint_with_its_restriction_waits_for_both(broker: FakeBroker) -> None:
    def respond(cmd: Command) -> CommandAnswer:
        assert isinstance(cmd, RequestSubmitted)
        if cmd.request_type is RequestType.restriction:
            return rejected(cmd, "unknown_subject")
        return accepted(cmd)

    broker.respond = respond
    out = run("complain", "--subject", "C-1", "--restrict-while-investigating", "--verified-now")
    assert out.code == EXIT_NOT_FOUND
    assert out.stdout.splitlines()[:2] == [c.request_id for c in broker.sent]
    assert "complaint request" in out.flat  # the accepted one is still reported


def test_json_carries_the_answer_and_the_exit_code_the_verdict(broker: FakeBroker) -> None:
    broker.respond = lambda cmd: rejected(cmd, "not_restricted", "nothing to lift")
    out = run("lift", "--subject", "C-1", "--verified-now", "--reason", "checked", "--json")
    assert out.code == EXIT_FAILED
    row = json.loads(out.stdout)
    assert row["answer"]["outcome"] == "rejected"
    assert row["answer"]["reason"] == "not_restricted"
    out = run("hold", "place", "--subject", "C-1", "--category", "cctv", "--reason", "x", "--json")
    assert json.loads(out.stdout)["answer"]["reason"] == "not_restricted"


def test_a_lift_names_the_restriction_it_ends(broker: FakeBroker) -> None:
    out = run("lift", "--subject", "C-1", "--reason", "checked", "--restriction", "R-7")
    assert out.code == 0, out.flat
    (sent,) = broker.sent
    assert isinstance(sent, RequestSubmitted)
    assert (sent.request_type, sent.linked_request_id) == (RequestType.restriction_lift, "R-7")
    out = run("lift", "--subject", "C-1", "--reason", "checked", "--restriction", "R 7")
    assert out.code == EXIT_BAD_INPUT
    assert "--restriction request id" in out.flat


def test_holds_wait_too(broker: FakeBroker) -> None:
    out = run("hold", "place", "--subject", "C-1", "--category", "cctv", "--reason", "L-7")
    assert out.code == 0, out.flat
    assert "legal hold" in out.flat
    assert "accepted" in out.flat
    broker.respond = lambda cmd: rejected(cmd, "invalid_command", "no such hold")
    out = run("hold", "release", "HOLD-1", "--subject", "C-1")
    assert out.code == EXIT_FAILED
    assert "no such hold" in out.flat


# --- identity dates ----------------------------------------------------------------------------


@pytest.mark.usefixtures("broker")
@pytest.mark.parametrize(
    ("args", "names"),
    [
        (
            ["--received", "2026-03-02", "--identity-verified", "2026-03-01"],
            ["--identity-verified 2026-03-01", "--received 2026-03-02"],
        ),
        (
            ["--received", "2026-03-02", "--identity-verified", "2026-03-03",
             "--identity-received", "2026-03-04"],
            ["--identity-received 2026-03-04", "--identity-verified 2026-03-03"],
        ),
        (
            ["--received", "2026-03-02", "--verified-now", "--identity-received", "2026-03-04"],
            ["--identity-received 2026-03-04", "--verified-now"],
        ),
        (["--identity-received", "2026-3-4"], ["invalid date '2026-3-4' for --identity-received"]),
    ],
)  # fmt: skip
def test_dates_out_of_order_are_refused_before_publishing(
    args: list[str], names: list[str]
) -> None:
    out = run("access", "--subject", "C-1", *args)
    assert out.code == EXIT_BAD_INPUT
    for name in names:
        assert name in out.flat
    assert out.stdout == ""


def test_identity_received_reaches_the_records(broker: FakeBroker) -> None:
    out = run(
        "access", "--subject", "C-1", "--received", "2026-03-02",
        "--identity-received", "2026-03-04", "--identity-verified", "2026-03-06",
    )  # fmt: skip
    assert out.code == 0, out.flat
    submitted = broker.sent[0]
    assert isinstance(submitted, RequestSubmitted)
    assert submitted.identity_received_on == date(2026, 3, 4)
    assert submitted.identity_verified_on == date(2026, 3, 6)

    out = run("verify", "REQ-1", "--on", "2026-03-06", "--identity-received", "2026-03-04")
    assert out.code == 0, out.flat
    verified = broker.sent[1]
    assert isinstance(verified, IdentityVerified)
    assert verified.information_received_on == date(2026, 3, 4)

    out = run("verify", "REQ-1", "--on", "2026-03-03", "--identity-received", "2026-03-04")
    assert out.code == EXIT_BAD_INPUT
    assert "--identity-received 2026-03-04 is after --on 2026-03-03" in out.flat


@pytest.mark.parametrize(
    ("args", "subject", "personal"),
    [
        (["extend", "REQ-1", "--reason", "Ann Jones's file is long"], "C-9", "reason"),
        (["answer", "REQ-1", "--reason", "Ann Jones: no further action"], "C-9", "reason"),
        (["cancel", "REQ-1", "--reason", "Ann Jones withdrew it"], "C-9", "reason"),
        (
            ["refuse", "REQ-1", "--ground", "excessive", "--reason", "Ann Jones asked 40 times"],
            "C-9",
            "reason",
        ),
        (
            ["decide-objection", "REQ-1", "--accept", "--reason", "Ann Jones's grounds"],
            "C-9",
            "reason",
        ),
        (
            ["hold", "place", "--subject", "C-1", "--category", "cctv", "--reason", "Ann Jones"],
            "C-1",
            "reason",
        ),
        (["complain", "--subject", "C-1", "--reason", "Ann Jones, by phone"], "C-1", "reason"),
        (["rectify", "--subject", "C-1", "--set", "name=Ann Jones"], "C-1", "rectification"),
    ],
    ids=lambda a: a[0] if isinstance(a, list) else None,
)
def test_free_text_goes_out_sealed_under_its_subjects_key(
    broker: FakeBroker, args: list[str], subject: str, personal: str
) -> None:
    """What the DPO types about a person would stay on privacy.commands for its
    retention: it is sealed (by the worker's key service) under the subject the command
    is keyed by, before it is signed and sent; nothing else of the command changes."""
    out = run(*args, "--no-wait")
    assert out.code == 0, out.flat
    assert f"sent {subject}" in broker.events
    assert any(e.startswith("sealed") and e.endswith(f"for {subject}") for e in broker.events)
    (sent,) = broker.sent
    value = getattr(sent, personal)
    texts = list(value.values()) if isinstance(value, dict) else [value]
    assert texts
    for text in texts:
        assert is_encrypted(text), text
        assert split_key_id(parse_field(text)[0])[0] == subject
    assert "Ann Jones" not in sent.model_dump_json()
    assert sent.signature  # signed after sealing: over the ciphertext
