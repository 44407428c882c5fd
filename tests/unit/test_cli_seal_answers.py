"""How the CLI reads the key service's answers when it seals a command's text
(privops.cli.request.sealing.key_service_seal), against a stand-in worker over real HTTP:
the real key service's answers are tests/integration/test_api_auth.py's and
test_crypto_shredding.py's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import typer

from privops.cli.request.sealing import key_service_seal
from privops.core.fieldcrypt import DataKey, seal_fields
from privops.tools.command_sealing import NothingToSealUnder
from tests.unit.test_cli_bad_input import env, send_json, stand_in_worker  # noqa: F401

ANN = "C-ann"
Answer = tuple[int, str, bytes]  # status, content type, body


class StandIn:
    """Answers each POST with the next scripted answer, and keeps what was asked."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.asked: list[tuple[str, Any]] = []


@pytest.fixture
def worker(env: Callable[..., None]) -> Iterator[StandIn]:  # noqa: F811
    stand_in = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            stand_in.asked.append((self.path, json.loads(self.rfile.read(length))))
            status, kind, body = stand_in.answers.pop(0)
            if kind == "application/json":
                send_json(self, status, body)
                return
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with stand_in_worker(Handler, env):
        yield stand_in


def sealed_answer(subject_id: str, fields: dict[str, str]) -> Answer:
    key = DataKey.generate(subject_id)
    body = {"subject_id": subject_id, "key_id": key.key_id}
    body["fields"] = seal_fields(key, subject_id, fields)  # type: ignore[assignment]
    return 200, "application/json", json.dumps(body).encode()


def error(status: int, name: str) -> Answer:
    return status, "application/json", json.dumps({"error": name, "reason": "..."}).encode()


def test_a_moving_partition_is_asked_again_and_the_ciphertexts_taken(worker: StandIn) -> None:
    fields = {"reason": "Ann's solicitor"}
    worker.answers = [error(503, "partition moving"), sealed_answer(ANN, fields)]
    out = key_service_seal(ANN, fields, True)
    assert out.keys() == fields.keys()
    assert "Ann" not in out["reason"]
    assert (
        worker.asked
        == [
            ("/subject-keys/C-ann/seal", {"fields": fields, "new_key": True}),
        ]
        * 2
    )


@pytest.mark.parametrize(
    ("answer", "new_key", "erased"),
    [(error(410, "subject erased"), True, True), (error(404, "no key"), False, False)],
    ids=["erased", "no-key"],
)
def test_nothing_to_seal_under_is_said_so(
    worker: StandIn, answer: Answer, new_key: bool, erased: bool
) -> None:
    worker.answers = [answer]
    with pytest.raises(NothingToSealUnder) as raised:
        key_service_seal(ANN, {"reason": "x"}, new_key)
    assert raised.value.erased is erased


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ((404, "text/plain", b"404: Not Found"), "older than this CLI; upgrade it first"),
        (sealed_answer("C-bob", {"reason": "x"}), "same privops version"),
        ((200, "application/json", b'{"fields": {"reason": "x"}}'), "same privops version"),
    ],
    ids=["older-worker", "another-subjects-key", "not-sealed"],
)
def test_an_answer_that_is_no_seal_stops_the_command(
    worker: StandIn, answer: Answer, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    worker.answers = [answer]
    with pytest.raises(typer.Exit) as raised:
        key_service_seal(ANN, {"reason": "x"}, True)
    assert raised.value.exit_code == 3
    assert says in " ".join(capsys.readouterr().err.split())
