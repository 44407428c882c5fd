"""The DPO's free text is sealed before it goes on privacy.commands: what the key service
checks and seals (privops.core.fieldcrypt.sealable/seal_fields) and how the CLI and the demo
put the ciphertexts in a command (privops.tools.command_sealing). The round trip through a real
worker is tests/integration/test_legal_holds.py's; the workflow opening them,
tests/agents/test_sealed_state.py's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from privops.connectors.encryption import decrypt_record
from privops.core.fieldcrypt import (
    MAX_SEALED_CHARS,
    MAX_SEALED_FIELDS,
    DataKey,
    TamperedField,
    decrypt_field,
    encrypt_field,
    is_encrypted,
    seal_fields,
    sealable,
)
from privops.core.personal import WITHHELD
from privops.core.records import (
    ClarificationRequested,
    IdentityVerified,
    LegalHoldPlaced,
    RequestRefused,
    RequestSubmitted,
)
from privops.core.vocab import Category, RequestType
from privops.tools.command_sealing import (
    NothingToSealUnder,
    ciphertexts,
    seal_command,
    withheld,
)

ANN = "C-ann"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


class Keys:
    """A key source holding the keys the fake service sealed under."""

    def __init__(self) -> None:
        self.keys: dict[str, DataKey] = {}
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.new_keys: list[bool] = []

    def seal(self, subject_id: str, fields: dict[str, str], new_key: bool) -> dict[str, str]:
        self.asked.append((subject_id, dict(fields)))
        self.new_keys.append(new_key)
        key = DataKey.generate(subject_id)
        self.keys[key.key_id] = key
        return seal_fields(key, subject_id, sealable(fields))

    def key(self, key_id: str) -> DataKey | None:
        return self.keys.get(key_id)

    def current_key(self, subject_id: str, scope: str) -> DataKey:
        raise AssertionError("not used")


def hold(reason: str) -> LegalHoldPlaced:
    return LegalHoldPlaced(
        command_id="c1",
        request_id="H-1",
        issued_at=NOW,
        actor="dpo",
        hold_id="H-1",
        subject_id=ANN,
        categories=[Category.cctv],
        reason=reason,
    )


def rectification(**changes: str) -> RequestSubmitted:
    return RequestSubmitted(
        command_id="c2",
        request_id="R-1",
        issued_at=NOW,
        actor="dpo",
        request_type=RequestType.rectification,
        subject_id=ANN,
        received_on=NOW.date(),
        rectification=changes,
        reason="by phone, Ann Jones",
    )


def test_every_marked_value_is_sealed_in_its_own_field_and_opens_again() -> None:
    keys = Keys()
    command = rectification(name="Ann Jones", **{"statement:credit": "disputed"})
    out = seal_command(command, ANN, None, keys.seal)
    assert keys.asked == [
        (
            ANN,
            {
                "rectification{name}": "Ann Jones",
                "rectification{statement:credit}": "disputed",
                "reason": "by phone, Ann Jones",
            },
        )
    ]
    assert all(is_encrypted(v) for v in [*out.rectification.values(), out.reason or ""])
    assert out.model_copy(update={"rectification": {}, "reason": None}) == command.model_copy(
        update={"rectification": {}, "reason": None}
    )
    assert decrypt_record(out, keys) == command  # each value in its own field's label


def test_a_value_cannot_be_moved_into_another_field() -> None:
    keys = Keys()
    out = seal_command(rectification(name="Ann Jones"), ANN, None, keys.seal)
    moved = out.model_copy(update={"reason": out.rectification["name"]})
    with pytest.raises(TamperedField):
        decrypt_record(moved, keys)


def test_a_command_without_text_is_not_sent_to_be_sealed() -> None:
    keys = Keys()
    command = rectification().model_copy(update={"reason": None})
    assert seal_command(command, ANN, None, keys.seal) is command
    sealed_already = hold(encrypt_field(DataKey.generate(ANN), ANN, "reason", "x"))
    assert seal_command(sealed_already, ANN, None, keys.seal) is sealed_already
    assert keys.asked == []


def test_an_erased_subject_gets_the_text_withheld_not_sent() -> None:
    def erased(subject_id: str, _fields: dict[str, str], _new_key: bool) -> dict[str, str]:
        raise NothingToSealUnder(subject_id, erased=True)

    with pytest.raises(NothingToSealUnder):
        seal_command(hold("Ann Jones's solicitor"), ANN, None, erased)
    out = withheld(rectification(name="Ann Jones"))
    assert out.reason == WITHHELD
    assert out.rectification == {"name": WITHHELD}
    refused = RequestRefused(
        command_id="c3", request_id="R-1", issued_at=NOW, actor="dpo", reason="Ann, again"
    )
    assert withheld(refused).reason == WITHHELD


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (None, "object of 1 to"),
        ([], "object of 1 to"),
        ({}, "object of 1 to"),
        ({f"f{n}": "x" for n in range(MAX_SEALED_FIELDS + 1)}, "object of 1 to"),
        ({"": "x"}, "field path is 1 to"),
        ({"a\nb": "x"}, "field path is 1 to"),
        ({"p" * 201: "x"}, "field path is 1 to"),
        ({"reason": 3}, "reason: a value is a string"),
        ({"reason": "x" * (MAX_SEALED_CHARS + 1)}, "reason: a value is a string"),
        ({"reason": encrypt_field(DataKey.generate(ANN), ANN, "reason", "x")}, "sealed already"),
    ],
)
def test_the_key_service_refuses_a_bad_body_saying_what_is_wrong(fields: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        sealable(fields)


def test_the_key_service_seals_each_value_under_its_path() -> None:
    key = DataKey.generate(ANN)
    out = seal_fields(key, ANN, sealable({"reason": "Ann", "rectification{name}": "Ann J"}))
    assert decrypt_field(out["reason"], ANN, "reason", {key.key_id: key}.get) == "Ann"
    assert (
        decrypt_field(out["rectification{name}"], ANN, "rectification{name}", {key.key_id: key}.get)
        == "Ann J"
    )


def test_the_cli_takes_only_ciphertexts_of_each_field_under_the_subjects_key() -> None:
    asked = {"reason": "Ann"}
    own = seal_fields(DataKey.generate(ANN), ANN, asked)
    assert ciphertexts(own, asked, ANN) == own
    for answer in (
        None,
        {},
        {"reason": "Ann"},  # not sealed
        {"reason": 1},
        seal_fields(DataKey.generate("C-bob"), "C-bob", asked),  # another subject's key
        {**own, "extra": own["reason"]},
    ):
        with pytest.raises(ValueError, match="did not answer a ciphertext"):
            ciphertexts(answer, asked, ANN)


def test_a_key_is_made_only_where_the_workflow_keeps_the_text() -> None:
    """Sealing must not make a key for someone no system has reported unless the workflow
    keeps their text: a legal hold (placed before any system reports them), a complaint
    and its follow-ups (anyone may complain; the answer is their letter). Anything else
    about such a subject is refused, or an access request's is answered without it."""
    keys = Keys()
    refused = RequestRefused(
        command_id="c6", request_id="R-1", issued_at=NOW, actor="dpo", reason="Ann, again"
    )
    access = rectification().model_copy(
        update={"request_type": RequestType.access, "rectification": {}}
    )
    complaint = access.model_copy(update={"request_type": RequestType.complaint})
    for command, kind in (
        (access, RequestType.access),
        (complaint, RequestType.complaint),
        (hold("Ann's solicitor"), None),
        (rectification(name="Ann Jones"), RequestType.rectification),
        (refused, RequestType.complaint),
        (refused, RequestType.access),
        (refused, None),  # a worker that did not say
    ):
        seal_command(command, ANN, kind, keys.seal)
    assert keys.new_keys == [False, True, True, False, True, False, False]


def test_free_text_of_verify_and_clarify_is_sealed_but_a_default_is_not() -> None:
    keys = Keys()
    verified = IdentityVerified(
        command_id="c4", request_id="R-1", issued_at=NOW, actor="dpo", verified_on=NOW.date()
    )
    assert seal_command(verified, ANN, None, keys.seal) is verified  # "documents": privops' word
    typed = verified.model_copy(update={"method": "passport 123456789"})
    assert is_encrypted(seal_command(typed, ANN, None, keys.seal).method)
    asked = ClarificationRequested(
        command_id="c5",
        request_id="R-1",
        issued_at=NOW,
        actor="dpo",
        asked_on=NOW.date(),
        question_ref="email to ann.jones@example.com",
    )
    assert is_encrypted(seal_command(asked, ANN, None, keys.seal).question_ref or "")
    assert [sorted(fields) for _, fields in keys.asked] == [["method"], ["question_ref"]]
