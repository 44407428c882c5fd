"""Signed DPO commands (DESIGN.md section 8): canonical bytes, signing, verification, the
signer registry, and the workflow's check that runs before any decision."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from privops.adapters.avro import Codec
from privops.adapters.datamap_file import load_datamap
from privops.adapters.settings import get_settings
from privops.core import admission
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.errors import ConfigError
from privops.core.request import FOLLOWUP_ACTOR, Reason, Refused
from privops.core.signing import (
    SignatureInvalid,
    SignatureProblem,
    SignerKey,
    Signers,
    SigningKey,
    canonical_bytes,
    parse_signature,
)
from privops.core.vocab import Category, RequestType

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
KEY = SigningKey.derive(b"unit tests", "dpo key")
OTHER = SigningKey.derive(b"unit tests", "someone else's key")
SIGNERS = Signers().with_key(KEY.entry("dpo", NOW))
C = TypeVar("C", bound=r.Command)
CLUSTER = "k5xKNSBiQy2mZ7Fh0t9yBw"  # the Kafka cluster's id the commands are signed for


def sign(key: SigningKey, command: C, deployment: str | None = CLUSTER) -> C:
    """``command`` signed by ``key`` for ``deployment`` (None: for none, as an older CLI
    signed)."""
    return key.sign(command, deployment=deployment)


def erasure(**kw: Any) -> r.RequestSubmitted:
    fields: dict[str, Any] = {
        "command_id": "cmd-1",
        "request_id": "R-1",
        "issued_at": NOW,
        "actor": "dpo",
        "request_type": RequestType.rectification,
        "subject_id": "S-1",
        "received_on": date(2026, 3, 1),
        "rectification": {"name": "Jane", "postcode": "AB1 2CD"},
    }
    fields.update(kw)
    return r.RequestSubmitted(**fields)


# --- canonical bytes ---------------------------------------------------------------------


def test_canonical_bytes_are_sorted_compact_json_with_the_type_and_no_signature() -> None:
    data = canonical_bytes(erasure(signature="whatever"))
    assert data.startswith(b'{"@type":"privops.commands.RequestSubmitted","actor":"dpo",')
    assert b"signature" not in data
    assert b" " not in data.replace(b"AB1 2CD", b"")


@pytest.mark.parametrize(
    "same",
    [
        pytest.param(lambda: erasure(issued_at=NOW.astimezone(timezone(timedelta(hours=1)))),
                     id="other-timezone"),
        pytest.param(lambda: erasure(rectification={"postcode": "AB1 2CD", "name": "Jane"}),
                     id="other-key-order"),
        pytest.param(lambda: erasure(linked_request_id=None, reason=None), id="explicit-defaults"),
        pytest.param(lambda: erasure(signature=f"{KEY.key_id}:xyz"), id="with-a-signature"),
    ],
)  # fmt: skip
def test_canonical_bytes_do_not_depend_on_representation(same: Callable[[], r.Command]) -> None:
    assert canonical_bytes(same()) == canonical_bytes(erasure())


def test_naive_times_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign(KEY, erasure(issued_at=NOW.replace(tzinfo=None)))


def test_a_signed_command_verifies_after_an_avro_round_trip() -> None:
    codec = Codec(get_settings().schema_dir)
    signed = sign(KEY, erasure())
    fullname = r.RequestSubmitted.fullname()
    decoded = codec.decode(codec.schema_text(fullname), codec.encode(signed))
    assert isinstance(decoded, r.RequestSubmitted)
    assert SIGNERS.verify(decoded, CLUSTER).owner == "dpo"


# --- verification: one reason per way a signature fails ------------------------------------


def _swapped() -> r.Command:
    cancel = sign(KEY, r.RequestCancelled(command_id="c", request_id="R-1", issued_at=NOW,
                                         actor="dpo", reason="dup"))  # fmt: skip
    return r.RequestRefused(**cancel.model_dump())


def _other_key_under_trusted_id() -> r.Command:
    _, signature = (sign(OTHER, erasure()).signature or "").split(":")
    return erasure(signature=f"{KEY.key_id}:{signature}")


def _revoked() -> tuple[Signers, r.Command]:
    return SIGNERS.revoked(KEY.key_id, NOW), sign(KEY, erasure())


def _sig(value: str) -> Callable[[], r.Command]:
    return lambda: erasure(signature=value)


GOOD_SIG = base64.b64encode(bytes(64)).decode()
FAILURES: list[Any] = [
    pytest.param(_sig(""), SignatureProblem.unsigned, id="empty"),
    pytest.param(erasure, SignatureProblem.unsigned, id="none"),
    pytest.param(_sig("no-separator"), SignatureProblem.bad_signature, id="no-key-id"),
    pytest.param(_sig(f"DPO:{GOOD_SIG}"), SignatureProblem.bad_signature, id="key-id-not-hex"),
    pytest.param(_sig(f"{KEY.key_id}:not base64!"), SignatureProblem.bad_signature,
                 id="not-base64"),
    pytest.param(_sig(f"{KEY.key_id}:{GOOD_SIG[:-4]}"), SignatureProblem.bad_signature,
                 id="too-short"),
    pytest.param(_sig(f"{KEY.key_id}:{GOOD_SIG}"), SignatureProblem.bad_signature,
                 id="zero-signature"),
    pytest.param(lambda: sign(KEY, erasure()).model_copy(update={"subject_id": "S-2"}),
                 SignatureProblem.bad_signature, id="tampered-field"),
    pytest.param(lambda: sign(KEY, erasure()).model_copy(update={"issued_at": NOW + timedelta(1)}),
                 SignatureProblem.bad_signature, id="tampered-time"),
    pytest.param(lambda: sign(KEY, erasure()).model_copy(
        update={"rectification": {"name": "Eve"}}), SignatureProblem.bad_signature,
                 id="tampered-map"),
    pytest.param(_swapped, SignatureProblem.bad_signature, id="other-command-type"),
    pytest.param(_other_key_under_trusted_id, SignatureProblem.bad_signature,
                 id="other-key-under-trusted-id"),
    pytest.param(lambda: sign(OTHER, erasure()), SignatureProblem.unknown_signer, id="other-key"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "problem"), FAILURES)
def test_verification_fails_with_its_reason(
    make: Callable[[], r.Command], problem: SignatureProblem
) -> None:
    with pytest.raises(SignatureInvalid) as exc:
        SIGNERS.verify(make(), CLUSTER)
    assert exc.value.problem is problem


def test_a_revoked_key_is_refused_even_for_commands_it_signed_before() -> None:
    signers, command = _revoked()
    backdated = sign(KEY, erasure(issued_at=NOW - timedelta(days=30)))
    for cmd in (command, backdated):
        with pytest.raises(SignatureInvalid) as exc:
            signers.verify(cmd, CLUSTER)
        assert exc.value.problem is SignatureProblem.revoked_key


def test_revoking_twice_keeps_the_first_time() -> None:
    once = SIGNERS.revoked(KEY.key_id, NOW)
    assert once.revoked(KEY.key_id, NOW + timedelta(days=1)) is once
    assert once.root[KEY.key_id].revoked_at == NOW
    assert SIGNERS.root[KEY.key_id].revoked_at is None  # the registry is a value


def test_parse_signature_returns_key_id_and_bytes() -> None:
    signed = sign(KEY, erasure())
    kid, raw = parse_signature(signed.signature)
    assert (kid, len(raw)) == (KEY.key_id, 64)


# --- keys and the registry ---------------------------------------------------------------


def test_derived_keys_are_the_same_for_the_same_secret_and_purpose() -> None:
    assert SigningKey.derive(b"unit tests", "dpo key").key_id == KEY.key_id
    assert len({KEY.key_id, OTHER.key_id, SigningKey.generate().key_id}) == 3


def test_private_key_pem_round_trip() -> None:
    again = SigningKey.from_pem(KEY.to_pem(), "test")
    assert again.key_id == KEY.key_id
    assert SIGNERS.verify(sign(again, erasure()), CLUSTER).owner == "dpo"


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"not a key", "not an unencrypted PEM private key"),
        (b"", "not an unencrypted PEM private key"),
    ],
)
def test_a_bad_private_key_file_is_a_config_error(pem: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SigningKey.from_pem(pem, "the key file")


def test_signers_file_round_trip() -> None:
    assert Signers.parse(SIGNERS.dump(), "f") == SIGNERS
    assert Signers.parse(b"", "f") == Signers()


def _entry(**kw: Any) -> dict[str, Any]:
    entry: dict[str, Any] = KEY.entry("dpo", NOW).model_dump(mode="json")
    entry.update(kw)
    return entry


BAD_FILES: list[Any] = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"[]", id="not-a-mapping"),
    pytest.param(b'{"0123456789abcdef": %s}' % SignerKey(**_entry()).model_dump_json().encode(),
                 id="id-not-the-fingerprint"),
    pytest.param(b'{"%s": {"owner": "dpo"}}' % KEY.key_id.encode(), id="missing-fields"),
    pytest.param(
        b'{"%s": {"owner": "dpo", "public_key": "AAAA", "created_at": "2026-01-01T00:00:00Z"}}'
        % KEY.key_id.encode(), id="short-public-key"),
    pytest.param(
        b'{"%s": {"owner": "dpo", "public_key": "%s", "created_at": "2026-01-01T00:00:00"}}'
        % (KEY.key_id.encode(), _entry()["public_key"].encode()), id="naive-time"),
]  # fmt: skip


@pytest.mark.parametrize("raw", BAD_FILES)
def test_a_bad_signers_file_is_a_config_error_naming_it(raw: bytes) -> None:
    with pytest.raises(ConfigError, match="the signers file X is not a valid signers file"):
        Signers.parse(raw, "the signers file X")


# --- the check before any decision --------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (erasure(), Reason.unsigned),
        (sign(OTHER, erasure()), Reason.unknown_signer),
        (sign(KEY, erasure()).model_copy(update={"reason": "x"}), Reason.bad_signature),
        (sign(KEY, erasure(actor="auditor")), Reason.signer_mismatch),
    ],
)
def test_authenticate_refuses_with_the_reason(command: r.Command, reason: Reason) -> None:
    with pytest.raises(Refused) as exc:
        admission.authenticate(command, SIGNERS, CLUSTER)
    assert exc.value.reason is reason


def test_authenticate_returns_the_keys_owner() -> None:
    assert admission.authenticate(sign(KEY, erasure()), SIGNERS, CLUSTER) == "dpo"


def test_signature_problems_are_rejection_reasons() -> None:
    assert {p.value for p in SignatureProblem} <= {r.value for r in Reason}


@pytest.fixture(scope="module")
def ctx() -> wf.Context:
    datamap = load_datamap(get_settings().datamap)
    return wf.Context(now=NOW, today=NOW.date(), datamap=datamap, subject_ref="")


@pytest.mark.parametrize(
    "command",
    [
        erasure(),
        r.LegalHoldPlaced(command_id="c", request_id="H-1", issued_at=NOW, actor="dpo",
                          hold_id="H-1", subject_id="S-1", categories=[Category.cctv],
                          reason="investigation"),
    ],
)  # fmt: skip
def test_workflow_rejects_an_unsigned_command_with_an_answer_and_nothing_else(
    command: r.Command, ctx: wf.Context
) -> None:
    outcome = wf.authenticate(command, SIGNERS, ctx, CLUSTER)
    assert outcome is not None
    assert (outcome.record, outcome.out, outcome.rejected) == (None, [], Reason.unsigned)
    assert isinstance(outcome.answer, r.CommandRejected)
    assert (outcome.answer.command_id, outcome.answer.reason) == (command.command_id, "unsigned")
    assert outcome.answer.request_state is None
    assert [step.action for step in outcome.audit] == ["command_rejected"]
    assert (outcome.audit[0].reason or "").startswith("unsigned: ")


def test_workflow_lets_a_signed_command_through(ctx: wf.Context) -> None:
    assert wf.authenticate(sign(KEY, erasure()), SIGNERS, ctx, CLUSTER) is None


# --- the deployment a command is signed for ---------------------------------------------


def test_canonical_bytes_name_the_deployment_when_given() -> None:
    bound = canonical_bytes(erasure(), CLUSTER)
    assert b'"@deployment":"k5xKNSBiQy2mZ7Fh0t9yBw"' in bound
    assert canonical_bytes(erasure(), "another") != bound != canonical_bytes(erasure())


def test_a_command_signed_for_another_cluster_is_refused_naming_this_one() -> None:
    """A command signed for a staging cluster, or for another group company's privops
    under the same DPO's key, names a subject id that may be someone else here."""
    elsewhere = sign(KEY, erasure(), "staging-cluster-id")
    with pytest.raises(SignatureInvalid) as exc:
        SIGNERS.verify(elsewhere, CLUSTER)
    assert exc.value.problem is SignatureProblem.bad_signature
    assert f"signed for this deployment (Kafka cluster {CLUSTER})" in exc.value.message
    assert SIGNERS.verify(elsewhere, "staging-cluster-id").owner == "dpo"


def test_a_command_signed_for_no_deployment_is_refused_saying_to_sign_it_again() -> None:
    unbound = sign(KEY, erasure(), None)
    with pytest.raises(Refused) as exc:
        admission.authenticate(unbound, SIGNERS, CLUSTER)
    assert exc.value.reason is Reason.unbound_signature
    assert "older than this worker" in exc.value.message


def test_the_workers_own_follow_up_signed_for_no_deployment_is_taken() -> None:
    """A follow-up erasure an older worker signed just before the upgrade must not be
    lost; the workflow acts on one only as the follow-up its request issued."""
    worker = SigningKey.derive(b"unit tests", "worker key")
    signers = SIGNERS.with_key(worker.entry(FOLLOWUP_ACTOR, NOW))
    followup = sign(worker, erasure(actor=FOLLOWUP_ACTOR), None)
    assert admission.authenticate(followup, signers, CLUSTER) == FOLLOWUP_ACTOR
    elsewhere = sign(worker, erasure(actor=FOLLOWUP_ACTOR), "another")
    with pytest.raises(Refused) as exc:
        admission.authenticate(elsewhere, signers, CLUSTER)
    assert exc.value.reason is Reason.bad_signature
