"""The CLI says what is true: exit codes a script can trust, help texts and docs that
match the code, and no personal value repeated back.

Drives the real typer app with CliRunner. Nothing here needs Kafka: the broker is a
closed port, and the worker is a tiny HTTP stub answering what each test needs.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from privops.adapters.settings import get_settings
from privops.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNAVAILABLE
from tests.unit.test_cli_bad_input import run, send_json

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set PRIVOPS_* variables for one test (the broker a closed port); settings are
    re-read around it."""

    def setenv(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"PRIVOPS_{key.upper()}", value)
        get_settings.cache_clear()

    get_settings.cache_clear()
    setenv(kafka_bootstrap="127.0.0.1:1")
    yield setenv
    monkeypatch.undo()
    get_settings.cache_clear()


# --- 1. the worker refusing or failing never exits 1 ("not allowed") ----------------------------


class _Stub(BaseHTTPRequestHandler):
    answer: ClassVar[tuple[int, bytes]] = (200, b"{}")

    def do_GET(self) -> None:
        code, data = self.answer
        send_json(self, code, data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def worker(env: Callable[..., None]) -> Iterator[Callable[[int, dict[str, Any]], None]]:
    """A stub worker on a free loopback port; call it with the status and body to answer."""
    handler: type[_Stub] = type("Handler", (_Stub,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env(web_url=f"http://127.0.0.1:{server.server_address[1]}")

    def answer(code: int, body: dict[str, Any]) -> None:
        handler.answer = (code, json.dumps(body).encode())

    yield answer
    server.shutdown()
    server.server_close()


WORKER_TROUBLE = [
    pytest.param(401, {"error": "unauthenticated"}, EXIT_BAD_INPUT, "refused principal", id="401"),
    pytest.param(403, {"error": "forbidden"}, EXIT_BAD_INPUT, "refused principal", id="403"),
    pytest.param(
        503,
        {"error": "partition moving between workers; retry in a few seconds"},
        EXIT_UNAVAILABLE,
        "could not answer now (503: partition moving",
        id="503",
    ),
    pytest.param(500, {"error": "boom"}, EXIT_UNAVAILABLE, "could not answer now", id="500"),
]
CONSENT_CHECK = ["consent", "check", "C-1", "--purpose", "marketing", "--channel", "sms"]
ASKING = [
    pytest.param(CONSENT_CHECK, id="consent"),
    pytest.param(["request", "status", "REQ-AAAAAAAAAAAA"], id="status"),
]


@pytest.mark.parametrize("args", ASKING)
@pytest.mark.parametrize(("status", "body", "code", "message"), WORKER_TROUBLE)
def test_a_worker_refusing_or_failing_is_never_read_as_not_allowed(
    worker: Callable[[int, dict[str, Any]], None],
    args: list[str],
    status: int,
    body: dict[str, Any],
    code: int,
    message: str,
) -> None:
    worker(status, body)
    out = run(*args)
    assert out.code == code, out.output
    assert out.code != EXIT_FAILED
    assert message in out.flat
    assert out.stdout == ""


def test_consent_not_allowed_still_exits_1(worker: Callable[[int, dict[str, Any]], None]) -> None:
    asked = {"subject_id": "C-1", "purpose": "marketing", "channel": "sms"}
    worker(200, {**asked, "allowed": False, "rule": "no_consent", "reason": "none"})
    out = run(*CONSENT_CHECK)
    assert out.code == EXIT_FAILED
    assert "NOT ALLOWED" in out.flat


def test_a_follow_up_whose_subject_the_worker_does_not_say_is_no_answer(
    worker: Callable[[int, dict[str, Any]], None],
) -> None:
    """A follow-up verb asks the worker whose request it is; an answer without the
    subject exited 1 (a script's "rejected"), though nothing was decided."""
    worker(200, {"request_id": "REQ-1"})
    out = run("request", "cancel", "REQ-1", "--reason", "asked by the subject", "--no-wait")
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert "did not say whose request REQ-1 is" in out.flat


def test_consent_answer_without_a_decision_is_no_answer(
    worker: Callable[[int, dict[str, Any]], None],
) -> None:
    worker(200, {"subject_id": "C-1"})
    out = run(*CONSENT_CHECK)
    assert out.code == EXIT_UNAVAILABLE
    assert "no allowed decision" in out.flat


# --- 2. a malformed JSON-valued setting: one line naming it, never its value ---------------------


@pytest.mark.parametrize(
    ("name", "value", "shape"),
    [
        ("audit_previous_keys", '{1: "s3cret-old-key"}', "a JSON object"),
        ("alert_days_before", "abc", "a JSON list, e.g. [7, 3, 1]"),
        ("pseudonym_previous_keys", "s3cret-old-key", "a JSON list"),
    ],
)
def test_a_malformed_json_setting_exits_2_naming_it_not_its_value(
    env: Callable[..., None], name: str, value: str, shape: str
) -> None:
    env(**{name: value})
    out = run("audit", "verify")
    assert out.code == EXIT_BAD_INPUT, out.output
    assert f"PRIVOPS_{name.upper()}: not valid JSON; give {shape}" in out.flat
    assert "s3cret" not in out.output
    assert "Traceback" not in out.output
    assert out.output.count("error:") == 1


# --- 3. schemas check with nothing to check ----------------------------------------------------


@pytest.mark.parametrize("verb", ["check", "register"])
@pytest.mark.parametrize("made", [False, True], ids=["missing", "empty"])
def test_schemas_check_without_schemas_fails_naming_the_directory(
    env: Callable[..., None], tmp_path: Path, made: bool, verb: str
) -> None:
    """Nothing checked or registered is not success ("0 registered" exited 0)."""
    where = tmp_path / "schemas"
    if made:
        where.mkdir()
    env(schema_dir=str(where))
    out = run("schemas", verb)
    assert out.code == EXIT_BAD_INPUT, out.output
    assert f"no schema files (<namespace>/<Name>.v<N>.avsc) in {where}" in out.flat
    assert "compatible" not in out.flat


def test_schemas_check_on_the_repository_schemas_passes(env: Callable[..., None]) -> None:
    env(schema_dir=str(ROOT / "schemas"))
    out = run("schemas", "check")
    assert out.code == 0, out.output
    assert "all schema versions are BACKWARD compatible" in out.flat


# --- 4, 5. simulate: a data dir that cannot be one; the help says where the default is --------


def test_simulate_refuses_a_file_as_data_dir_before_starting(
    env: Callable[..., None], tmp_path: Path
) -> None:
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0\n")
    env(home=str(tmp_path / "home"))
    out = run("simulate", "--data-dir", str(a_file), "--no-events")
    assert out.code == EXIT_BAD_INPUT, out.output
    assert f"--data-dir {a_file} is a file, not a directory" in out.flat
    assert a_file.read_text() == "root:x:0:0\n"
    out = run("simulate", "--data-dir", str(a_file / "below"), "--no-events")
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "cannot create it" in out.flat


def test_simulate_help_names_the_real_default_data_dir() -> None:
    out = run("simulate", "--help")
    assert "$PRIVOPS_HOME/systems" in out.flat
    assert "$HOME/systems" not in out.flat.replace("$PRIVOPS_HOME/systems", "")


# --- 6. hold place: keyed by the subject id, like every command --------------------------------


def test_hold_place_help_says_the_command_is_keyed_by_the_subject() -> None:
    out = run("request", "hold", "place", "--help")
    assert "keyed by the subject id" in out.flat
    assert "keyed by it" not in out.flat


# --- 8, 9, 11. the docs say what the code does ------------------------------------------------


def test_docs_call_worker_keys_with_its_required_principal() -> None:
    calls = [
        (doc.name, call)
        for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        for call in re.findall(r"worker_keys\([^)]*\)?", " ".join(doc.read_text().split()))
    ]
    assert calls
    assert [c for c in calls if "principal=" not in c[1]] == []


def test_readme_names_only_paths_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`((?:privops|streams|agents|deploy)/[\w/.-]*)`", readme))
    assert "privops/connectors/reference/" in named
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


def test_readme_says_no_wait_follow_ups_still_ask_the_worker() -> None:
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "`--no-wait` only publishes" not in text
    assert "still first ask the worker's HTTP API whose request it is" in text


# --- 12. dsar due-date: --json, and the two kinds of pause add up as documented ------------------


def test_due_date_json_has_the_date_and_the_explanation() -> None:
    out = run(
        "dsar", "due-date", "--start", "2026-03-10", "--paused-days", "2",
        "--paused-from", "2026-03-11", "--paused-to", "2026-03-11", "--json",
    )  # fmt: skip
    assert out.code == 0, out.output
    body = json.loads(out.stdout)
    assert body["due_on"] == "2026-04-13"
    assert body["paused_days_given"] == 2
    assert body["clarifications"] == [
        # days_moved from 0.43: the same but for one asked while the due date was rolled
        {"asked": "2026-03-11", "received": "2026-03-11", "days_counted": 1, "days_moved": 1}
    ]
    assert body["paused_days_total"] == 3
    assert body["explanation"][-1] == "due Monday 2026-04-13 (England and Wales working day)"
    assert "2 days paused as given (--paused-days)" in body["explanation"]


def test_legal_rules_show_the_pause_options_as_adding_up() -> None:
    text = (ROOT / "docs" / "legal-rules.md").read_text()
    assert "[--paused-days N | --paused-from" not in text
    assert "[--paused-days N] [--paused-from D --paused-to D]" in text


# --- 13. an invalid id is not repeated back --------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "show", "ann@example.com"],
        ["request", "status", "ann@example.com"],
        ["consent", "check", "ann@example.com", "--purpose", "marketing", "--channel", "sms"],
        ["request", "erase", "--subject", "Ann Smith", "--verified-now"],
    ],
    ids=["audit-show", "status", "consent", "erase"],
)
def test_an_invalid_id_is_not_repeated(env: Callable[..., None], args: list[str]) -> None:
    env(web_url="http://127.0.0.1:1")
    out = run(*args)
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "not repeated here" in out.flat
    assert "1 to 64 letters, digits and . _ : -" in out.flat
    lowered = out.output.lower()
    assert "ann@example.com" not in lowered
    assert "ann smith" not in lowered
