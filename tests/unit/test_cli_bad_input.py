"""The DPO's CLI on bad input and missing services: messages and exit codes.

Drives the real typer apps with CliRunner. Nothing here needs Kafka: the broker is a
closed port, and the worker is either a closed port or a tiny fake HTTP server that
answers with the worker's JSON shapes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from privops.adapters import kafka as kafka_adapter
from privops.adapters.settings import get_settings
from privops.cli import audit as audit_cli
from privops.cli import consent as consent_cli
from privops.cli import dsar as dsar_cli
from privops.cli import request as request_cli
from privops.cli import ropa as ropa_cli
from privops.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE
from privops.cli.main import app as main_app
from privops.core.deadlines import due_date

REAL_DATAMAP = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"


def _root() -> typer.Typer:
    """privops.cli.main.app, plus any of this module's sub-apps it does not register yet."""
    registered: dict[str, Any] = getattr(get_command(main_app), "commands", {})
    if {"request", "consent", "dsar", "audit", "ropa"} <= set(registered):
        return main_app
    root = typer.Typer(pretty_exceptions_enable=False)
    root.registered_groups = list(main_app.registered_groups)
    root.registered_commands = list(main_app.registered_commands)
    for name, sub in (
        ("request", request_cli.app),
        ("consent", consent_cli.app),
        ("dsar", dsar_cli.app),
        ("audit", audit_cli.app),
    ):
        if name not in registered:
            root.add_typer(sub, name=name)
    if "ropa" not in registered:
        root.command("ropa")(ropa_cli.ropa)
    return root


APP = _root()
runner = CliRunner()


class Out:
    def __init__(self, code: int, stdout: str, output: str) -> None:
        self.code = code
        self.stdout = stdout
        self.output = output
        self.flat = " ".join(output.split())  # rich wraps long messages


def run(*args: str) -> Out:
    result = runner.invoke(APP, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Out(result.exit_code, result.stdout, result.output)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set PRIVOPS_* variables for one test; settings are re-read around it."""

    def setenv(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"PRIVOPS_{key.upper()}", value)
        get_settings.cache_clear()

    get_settings.cache_clear()
    yield setenv
    monkeypatch.undo()
    get_settings.cache_clear()


# --- a fake worker ---

STATUS = {
    "request_id": "REQ-AAAAAAAAAAAA",
    "request_type": "erasure",
    "subject_ref": "sr_0123456789abcdef01234567",
    "state": "partially_completed",
    "received_on": "2026-01-31",
    "clock_start": "2026-01-31",
    "due_on": "2026-03-02",
    "days_left": -2,
    "paused_days": 0,
    "extended": False,
    "extension_reason": None,
    "tasks": [
        {
            "task_id": "t-1",
            "system": "orders",
            "action": "erase",
            "state": "retained",
            "attempts": 2,
            "categories": ["contact", "purchases"],
            "keep": [
                {"category": "purchases", "ground": "legal_obligation", "until": "2032-03-02"}
            ],
            "answered_at": "2026-02-01T10:00:00+00:00",
            "outcome_reason": "invoices kept 6 years",
        }
    ],
    "retained": [
        {"system": "orders", "category": "purchases", "ground": "legal_obligation", "until": None}
    ],
    "history": [{"at": "2026-01-31T09:00:00+00:00", "event": "submitted", "state": "received"}],
}


SEARCHED = {
    **STATUS,
    "request_id": "REQ-EEEEEEEEEEEE",
    "request_type": "access",
    "state": "awaiting_review",
    "search": {"date": "2026-01-20", "times": "14:00-15:30", "location": "[b]trade counter"},
    "preserved": ["cctv"],
}
"""An access request with search details (privops.core.search), what they find kept
at CCTV (records.SearchPreserved)."""

REFUSED = {**STATUS, "request_id": "REQ-FFFFFFFFFFFF", "state": "refused"}
REFUSED["refusal_ground"] = "manifestly_unfounded"


MISSHAPEN: dict[str, dict[str, object]] = {
    "REQ-BBBBBBBBBBBB": {},
    "REQ-CCCCCCCCCCCC": {"request_id": "REQ-CCCCCCCCCCCC", "state": "in_progress", "tasks": "x"},
    "REQ-DDDDDDDDDDDD": {**STATUS, "request_id": "REQ-AAAAAAAAAAAA"},
}
"""What a worker of another version, or another server, might answer for a request."""


def consent_body(subject: str, purpose: str, channel: str) -> dict[str, Any]:
    allowed = channel == "post"
    return {
        "subject_id": subject,
        "purpose": purpose,
        "channel": channel,
        "allowed": allowed,
        "rule": "legitimate_interest" if allowed else "no_consent",
        "reason": "post is allowed unless objected" if allowed else "no consent for email",
        "evidence": None
        if not allowed
        else {
            "event_id": "e-1",
            "source": "crm",
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "basis": "legitimate_interest",
            "reference": None,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        body: dict[str, object]
        code, body = 404, {"error": "not found"}
        if parts[0] == "requests":
            if parts[1] == STATUS["request_id"]:
                code, body = 200, STATUS
            elif parts[1] == SEARCHED["request_id"]:
                code, body = 200, SEARCHED
            elif parts[1] == REFUSED["request_id"]:
                code, body = 200, REFUSED
            elif parts[1] in MISSHAPEN:
                code, body = 200, MISSHAPEN[parts[1]]
            else:
                code, body = 404, {"error": "unknown request", "request_id": parts[1]}
        elif parts[0] == "consent":
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if parts[1] == "C-1":
                code, body = 200, consent_body(parts[1], q["purpose"], q["channel"])
            elif parts[1] == "C-2":  # answers another question than was asked
                code, body = 200, consent_body(parts[1], "marketing", "sms")
            else:
                code, body = 404, {"error": "unknown subject"}
        send_json(self, code, json.dumps(body).encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


def send_json(handler: BaseHTTPRequestHandler, code: int, data: bytes) -> None:
    """A stub worker's answer: ``data`` as a JSON body with ``code``."""
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def stand_in_worker(
    handler: type[BaseHTTPRequestHandler], env: Callable[..., None]
) -> Iterator[int]:
    """``handler`` serving on a loopback port the CLI is pointed at (PRIVOPS_WEB_*)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env(web_host="127.0.0.1", web_port=str(port))
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_worker(env: Callable[..., None]) -> Iterator[int]:
    with stand_in_worker(_Handler, env) as port:
        yield port


# --- --help everywhere ------------------------------------------------------------------------

VERBS = [
    ["request"],
    *[
        ["request", v]
        for v in (
            "erase", "restrict", "lift", "rectify", "object", "access", "complain", "verify",
            "fee-received", "clarify", "clarified", "extend", "cancel", "refuse",
            "decide-objection", "redact", "approve", "status", "list", "hold",
        )
    ],
    ["request", "hold", "place"],
    ["request", "hold", "release"],
    ["request", "hold", "list"],
    ["consent"],
    ["consent", "check"],
    ["dsar"],
    ["dsar", "due-date"],
    ["audit"],
    ["audit", "show"],
    ["audit", "verify"],
    ["audit", "report"],
    ["ropa"],
]  # fmt: skip


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v))
def test_help_on_every_verb(verb: list[str]) -> None:
    out = run(*verb, "--help")
    assert out.code == 0, out.output
    assert "Usage" in out.output


def test_every_option_has_help() -> None:
    # typer vendors its own click: walk commands and parameters by shape, not by class.
    def walk(cmd: Any, path: str) -> Iterator[tuple[str, Any]]:
        subs: dict[str, Any] | None = getattr(cmd, "commands", None)
        if subs is not None:
            for name, sub in subs.items():
                if name in {"request", "consent", "dsar", "audit", "ropa"} or path:
                    yield from walk(sub, f"{path} {name}".strip())
        else:
            assert cmd.help, f"{path} has no help text"
            yield from ((path, p) for p in cmd.params)

    missing = [
        f"{path} {param.name}"
        for path, param in walk(get_command(APP), "")
        if param.param_type_name == "option" and not param.help and param.name != "help"
    ]
    assert missing == []


# --- dsar due-date ------------------------------------------------------------------------------

GOLDEN = [
    # start, extended, paused, hand-checked due date
    ("2026-01-31", False, 0, "2026-03-02"),  # no 31 Feb -> Sat 28 Feb -> Mon 2 Mar
    ("2024-01-31", False, 0, "2024-02-29"),  # leap year: Thu 29 Feb
    ("2026-11-25", False, 0, "2026-12-29"),  # Christmas Fri, Boxing Day substitute Mon 28
    ("2026-03-03", False, 0, "2026-04-07"),  # Good Friday 3 Apr, Easter Monday 6 Apr
    ("2026-01-31", True, 0, "2026-04-30"),  # extended: three months, last day of April
    ("2026-01-05", False, 3, "2026-02-09"),  # Thu 5 Feb + 3 paused = Sun 8 -> Mon 9
    ("2026-09-03", False, 0, "2026-10-05"),  # Sat 3 Oct -> Mon 5 Oct
]


@pytest.mark.parametrize(("start", "extended", "paused", "expected"), GOLDEN)
def test_due_date_golden(start: str, extended: bool, paused: int, expected: str) -> None:
    args = ["dsar", "due-date", "--start", start, "--paused-days", str(paused)]
    if extended:
        args.append("--extended")
    out = run(*args)
    assert out.code == 0, out.output
    assert out.stdout == expected + "\n"
    computed = due_date(date.fromisoformat(start), extended=extended, paused_days=paused)
    assert computed.isoformat() == expected


def test_due_date_explain_names_the_holidays() -> None:
    out = run("dsar", "due-date", "--start", "2026-11-25", "--explain")
    assert out.code == 0
    assert out.stdout.splitlines()[0] == "2026-12-29"
    assert "Christmas Day" in out.flat
    assert "Boxing Day" in out.flat
    out = run("dsar", "due-date", "--start", "2026-01-31", "--explain")
    assert "has no day 31" in out.flat
    assert "last day of that month" in out.flat


@pytest.mark.parametrize("bad", ["2026-02-30", "31/01/2026", "2026-1-5", "tomorrow", "20260131"])
def test_due_date_bad_start(bad: str) -> None:
    out = run("dsar", "due-date", "--start", bad)
    assert out.code == EXIT_BAD_INPUT
    assert f"invalid date '{bad}' for --start: use YYYY-MM-DD" in out.flat
    assert out.stdout == ""


def test_due_date_negative_paused_days() -> None:
    out = run("dsar", "due-date", "--start", "2026-01-05", "--paused-days", "-1")
    assert out.code == EXIT_BAD_INPUT
    assert "--paused-days must be 0 or more" in out.flat


def test_due_date_needs_start() -> None:
    assert run("dsar", "due-date").code == EXIT_BAD_INPUT


# --- request submission: bad input never reaches the broker --------------------------------------


@pytest.fixture
def no_broker(env: Callable[..., None]) -> str:
    """A closed port as the broker: if validation let a command through, it would exit 3."""
    env(kafka_bootstrap="127.0.0.1:1", registry_url=f"http://127.0.0.1:{free_port()}")
    return "127.0.0.1:1"


@pytest.mark.usefixtures("no_broker")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["erase", "--subject", "C-1", "--received", "2026-02-30"],
            "invalid date '2026-02-30' for --received: use YYYY-MM-DD",
        ),
        (
            ["access", "--subject", "C-1", "--identity-verified", "5 Jan"],
            "invalid date '5 Jan' for --identity-verified: use YYYY-MM-DD",
        ),
        (["erase", "--subject", "C-1", "--received", "2999-01-01"], "is in the future"),
        (
            ["erase", "--subject", "C-1", "--identity-verified", "2026-01-01", "--verified-now"],
            "not both",
        ),
        (["erase", "--subject", "C 1"], "invalid subject id (3 characters, not repeated here)"),
        (
            ["object", "--subject", "C-1", "--scope", "everything"],
            "unknown objection scope 'everything': use one of direct_marketing, "
            "legitimate_interest",
        ),
        (["rectify", "--subject", "C-1"], "rectify needs at least one --set FIELD=VALUE"),
        (["rectify", "--subject", "C-1", "--set", "nonsense"], "malformed --set"),
        (["rectify", "--subject", "C-1", "--set", "=x"], "malformed --set"),
        (
            ["rectify", "--subject", "C-1", "--set", "shoe_size=9"],
            "unknown field 'shoe_size' in --set: use one of name, email, phone, address, "
            "postcode, delivery_name,",
        ),
        (
            ["rectify", "--subject", "C-1", "--statement", "the default was disputed"],
            "malformed --statement: expected CATEGORY=TEXT with CATEGORY one of contact,",
        ),
        (
            ["rectify", "--subject", "C-1", "--statement", "=disputed"],
            "malformed --statement",
        ),
        (
            ["rectify", "--subject", "C-1", "--statement", "credit=" + "x" * 4_001],
            "--statement credit= is over 4000 characters",
        ),
        (
            ["rectify", "--subject", "C-1", "--set", "name=" + "x" * 4_001],
            "--set name= is over 4000 characters",
        ),
        (
            ["rectify", "--subject", "C-1", "--statement", "shoes=disputed"],
            "unknown category 'shoes' in --statement: use one of contact, payment, purchases, "
            "credit,",
        ),
        (
            ["rectify", "--subject", "C-1", "--statement", "credit=  "],
            "empty text for --statement credit=: give the statement",
        ),
        (
            ["rectify", "--subject", "C-1", "--statement", "credit=a", "--statement", "credit=b"],
            "--statement credit given twice",
        ),
        (["rectify", "--subject", "C-1", "--set", "email="], "empty value for --set email="),
        (
            ["rectify", "--subject", "C-1", "--set", "name=A", "--set", "name=B"],
            "--set name given twice",
        ),
        (["erase", "--subject", "C-1", "--reason", "  "], "--reason must not be empty"),
        (
            ["access", "--subject", "C-1", "--search", "ann_smith=Tuesday"],
            "unknown search detail in --search: use one of date, times, location, appearance",
        ),
        (
            ["access", "--subject", "C-1", "--search", "location=by the tills"],
            "--search: search details need a date (YYYY-MM-DD)",
        ),
        (
            ["access", "--subject", "C-1", "--search", "date=last Tuesday"],
            "--search: the search date is not a date",
        ),
        (
            ["access", "--subject", "C-1", "--search", "date=2026-01-05", "--search", "times=2pm"],
            "--search: the search times are not HH:MM-HH:MM",
        ),
        (
            [
                "access",
                "--subject",
                "C-1",
                "--received",
                "2026-01-04",
                "--search",
                "date=2026-01-05",
            ],
            "--search: the search date is after the request was received (2026-01-04)",
        ),
        (
            [
                "access",
                "--subject",
                "C-1",
                "--search",
                "date=2026-01-05",
                "--search",
                "date=2026-01-06",
            ],
            "--search date given twice",
        ),
        (["complain", "--subject", "C-1", "--link", "not an id"], "invalid request id"),
        (["verify", "REQ-1", "--on", "2026-13-01"], "invalid date '2026-13-01' for --on"),
        (["clarify", "REQ-1", "--asked", "yesterday"], "invalid date 'yesterday' for --asked"),
        (["extend", "REQ-1", "--reason", ""], "--reason must not be empty"),
        (["decide-objection", "REQ-1", "--reason", "x"], "say --accept or --refuse"),
        (
            ["decide-objection", "REQ-1", "--accept", "--reason", "x", "--purpose", " "],
            "--purpose is empty",
        ),
        (
            ["decide-objection", "REQ-1", "--refuse", "--reason", "x", "--purpose", "a"],
            "only with --accept",
        ),
        (
            [
                "redact",
                "REQ-1",
                "--system",
                "cctv",
                "--location",
                "x",
                "--records",
                "1",
                "--sha256",
                "abc",
            ],
            "--sha256 must be 64 hex digits",
        ),
        (["approve", "REQ-1", "--withhold", "cctv"], "--withhold needs --reason"),
        (
            ["approve", "REQ-1", "--withhold", "cctv", "--disclose", "cctv", "--reason", "x"],
            "--withhold and --disclose both",
        ),
        (["approve", "REQ-1", "--withhold", "tv"], "unknown --withhold 'tv'"),
        (
            ["approve", "REQ-1", "--sent-on", "2025-03-10", "--not-feasible", "x"],
            "--sent-on and --not-feasible both",
        ),
        (["approve", "REQ-1", "--sent-on", "2999-01-01"], "--sent-on 2999-01-01 is in the future"),
        (["approve", "REQ-1", "--sent-on", "yesterday"], "--sent-on"),
        (["approve", "REQ-1", "--not-feasible", " "], "--not-feasible is empty"),
        (["port", "--subject", "C-1", "--send-to", " "], "--send-to is empty"),
        (["port", "--subject", "C-1", "--send-to", "x" * 501], "--send-to is 501 characters"),
        (["port", "--subject", "C-1", "--send-to", "A\nB"], "--send-to holds a control character"),
        (
            ["access", "--subject", "C-1", "--representative", "Smith & Co"],
            "--representative needs --capacity: one of authorised, attorney, deputy, parent",
        ),
        (
            ["access", "--subject", "C-1", "--representative", "S", "--capacity", "friend"],
            "unknown --capacity: use one of authorised, attorney, deputy, parent",
        ),
        (
            ["access", "--subject", "C-1", "--capacity", "attorney"],
            "--capacity and --authority-received go with --representative",
        ),
        (
            ["erase", "--subject", "C-1", "--authority-received", "2025-03-10"],
            "--capacity and --authority-received go with --representative",
        ),
        (
            ["access", "--subject", "C-1", "--representative", " ", "--capacity", "parent"],
            "--representative is empty",
        ),
        (
            ["access", "--subject", "C-1", "--representative", "A\u202eB", "--capacity", "parent"],
            "--representative holds a control character",
        ),
        (
            ["access", "--subject", "C-1", "--representative", "x" * 501, "--capacity", "deputy"],
            "--representative is 501 characters",
        ),
        (
            [
                "access",
                "--subject",
                "C-1",
                "--received",
                "2025-03-10",
                "--representative",
                "S",
                "--capacity",
                "attorney",
                "--authority-received",
                "2025-03-09",
            ],
            "--authority-received 2025-03-09 is before --received 2025-03-10",
        ),
        (
            [
                "access",
                "--subject",
                "C-1",
                "--representative",
                "S",
                "--capacity",
                "attorney",
                "--authority-received",
                "soon",
            ],
            "--authority-received",
        ),
        (["authority", "REQ-1", "--on", "2025-13-01"], "--on"),
        (
            [
                "complain",
                "--subject",
                "C-1",
                "--verified-now",
                "--restrict-while-investigating",
                "--representative",
                "S",
                "--capacity",
                "authorised",
            ],
            "a restriction asked for by a representative is applied once their authority is shown",
        ),
        (["approve", "REQ-1", "--not-feasible", "x" * 2001], "--not-feasible is 2001 characters"),
        (["fee-received", "REQ-1"], "Missing option '--ground'"),
        (["refuse", "REQ-1", "--reason", "x"], "Missing option '--ground'"),
        (
            ["refuse", "REQ-1", "--ground", "busy", "--reason", "x"],
            "unknown --ground 'busy': use one of manifestly_unfounded, excessive, "
            "identity_not_established, right_does_not_apply, exemption",
        ),
        (
            ["fee-received", "REQ-1", "--ground", "admin"],
            "unknown --ground 'admin': use one of manifestly_unfounded, excessive, further_copies",
        ),
        (
            ["hold", "place", "--subject", "C-1", "--category", "shoes", "--reason", "x"],
            "unknown category 'shoes': use one of contact, payment, purchases, credit, "
            "interactions, cctv, web, marketing_preferences",
        ),
        (["hold", "place", "--subject", "C-1", "--reason", "x"], "give at least one --category"),
        (["status", "REQ/../x"], "invalid request id"),
    ],
)
def test_request_bad_input(args: list[str], message: str) -> None:
    out = run("request", *args)
    assert out.code == EXIT_BAD_INPUT, out.output
    assert message in out.flat
    assert "127.0.0.1:1" not in out.flat


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["erase", "--subject", "C-1", "--received", ""], "--received"),
        (["erase", "--subject", "C-1", "--identity-verified", ""], "--identity-verified"),
        (
            ["erase", "--subject", "C-1", "--verified-now", "--identity-received", ""],
            "--identity-received",
        ),
        (["verify", "REQ-1", "--on", ""], "--on"),
        (["verify", "REQ-1", "--identity-received", ""], "--identity-received"),
        (["fee-received", "REQ-1", "--ground", "excessive", "--on", ""], "--on"),
        (["clarify", "REQ-1", "--asked", ""], "--asked"),
        (["clarified", "REQ-1", "--on", ""], "--on"),
        (["extend", "REQ-1", "--reason", "complex", "--notified", ""], "--notified"),
    ],
)
def test_an_empty_date_is_an_error_never_today_nor_not_given(args: list[str], option: str) -> None:
    """A script's unset variable (``--received "$RECV"``) was taken as not given: today,
    or no verification, and the clock started on the wrong day (review, session 43)."""
    out = run("request", *args)
    assert out.code == EXIT_BAD_INPUT, out.output
    assert f"invalid date '' for {option}: use YYYY-MM-DD" in out.flat


def test_an_empty_channel_is_an_error_never_every_channel() -> None:
    out = run("request", "withdraw", "--subject", "C-1", "--verified-now", "--channel", "")
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "unknown channel '': use one of" in out.flat


@pytest.mark.usefixtures("no_broker")
def test_malformed_set_does_not_echo_the_value() -> None:
    out = run("request", "rectify", "--subject", "C-1", "--set", "jane@example.com")
    assert out.code == EXIT_BAD_INPUT
    assert "jane@example.com" not in out.output


@pytest.mark.usefixtures("no_broker")
@pytest.mark.parametrize(
    ("option", "given"),
    [
        ("--set", "jane@example.com=x"),  # a value where the field goes
        ("--statement", "credit: Ann Jones of 12 Acacia Avenue=disputed"),
        ("--statement", "Ann Jones disputed the default"),
    ],
)
def test_a_malformed_statement_or_field_is_never_echoed(option: str, given: str) -> None:
    """What is not a field or category name may be the personal text put in the wrong
    place: the message names the shape, never what was given."""
    out = run("request", "rectify", "--subject", "C-1", option, given)
    assert out.code == EXIT_BAD_INPUT, out.output
    assert f"malformed {option}" in out.flat
    for part in ("jane@example.com", "Ann Jones", "Acacia"):
        assert part not in out.output


@pytest.mark.usefixtures("no_broker")
@pytest.mark.parametrize(
    "args",
    [
        ["request", "status", "+447700900123"],
        ["consent", "check", "C-1", "--purpose", "marketing", "--channel", "07700900123"],
        ["request", "erase", "--subject", "C-1", "--received", "07700900123"],
        [
            "request",
            "hold",
            "place",
            "--subject",
            "C-1",
            "--reason",
            "x",
            "--category",
            "+14155550100",
        ],
    ],
)
def test_contact_details_given_for_an_id_or_a_value_are_refused_never_repeated(
    args: list[str],
) -> None:
    """What a DPO knows a subject by, pasted where a date or a choice goes: refused, and
    the message (which lands in logs) never repeats it (review, session 35)."""
    out = run(*args)
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "not repeated here" in out.flat
    for part in ("900123", "555"):
        assert part not in out.output


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("kafka_bootstrap", "127.0.0.1:abc"),
        ("kafka_bootstrap", "127.0.0.1:99999"),
        ("kafka_bootstrap", "127.0.0.1"),  # was reported as an outage (exit 3)
        ("kafka_bootstrap", "127.0.0.1:19092,kafka-2"),
        ("kafka_bootstrap", "[::1:9092"),  # aiokafka raised on it
        ("kafka_bootstrap", "::1:9092"),  # aiokafka reads it all as an address
    ],
)
def test_a_broker_address_that_is_no_host_and_port_is_a_setting_to_fix(
    env: Callable[..., None], setting: str, value: str
) -> None:
    """Before, a port that is no number crashed deep in aiokafka (a traceback, exit 1)
    and one with no port was reported as an outage (review, session 35)."""
    env(**{setting: value})
    out = run("request", "erase", "--subject", "C-1", "--verified-now")
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "PRIVOPS_KAFKA_BOOTSTRAP" in out.flat
    assert "HOST:PORT" in out.flat


def test_a_home_that_cannot_be_used_is_one_line_and_exit_2(
    env: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The console script itself (``main.app`` called): a PRIVOPS_HOME under a file (or
    one the user cannot write) was a Python traceback and exit 1 (review, session 35)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env(home=str(blocker / "home"))
    monkeypatch.setattr(sys, "argv", ["privops", "keys", "generate", "--owner", "jane.dpo"])
    with pytest.raises(SystemExit) as exited:
        main_app()
    assert exited.value.code == EXIT_BAD_INPUT
    said = capsys.readouterr().err
    assert "cannot use" in said
    assert "PRIVOPS_HOME" in said
    assert "Traceback" not in said


def test_forget_check_without_the_workers_stores_is_no_clean_answer(
    env: Callable[..., None], tmp_path: Path
) -> None:
    """Run where no worker ran (a DPO's laptop), the scan warned and could exit 0,
    "nothing remains", never having read the worker's stores (review, session 35)."""
    env(data_dir=str(tmp_path / "no-worker-here"), kafka_bootstrap="127.0.0.1:1")
    out = run("subject", "forget-check", "CUST-1")
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "no worker data dir" in out.flat
    assert "--skip-stores" in out.flat


@pytest.mark.usefixtures("no_broker")
def test_a_restriction_with_a_complaint_needs_the_identity_verified() -> None:
    """Else it waited for an identity no one would verify, and nothing was restricted
    while the DPO believed it was (legal review, session 35)."""
    out = run("request", "complain", "--subject", "C-1", "--restrict-while-investigating")
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "--verified-now" in out.flat
    assert out.stdout == ""  # nothing submitted


@pytest.mark.usefixtures("no_broker")
def test_a_lift_says_why() -> None:
    """The subject is told the reason before the lift (Art. 18(3)); none given, the
    notice could promise none (legal review, session 35)."""
    out = run("request", "lift", "--subject", "C-1", "--verified-now")
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "--reason" in out.flat


def test_missing_required_options_exit_2() -> None:
    assert run("request", "erase").code == EXIT_BAD_INPUT
    assert run("request", "object", "--subject", "C-1").code == EXIT_BAD_INPUT
    assert run("request", "cancel", "REQ-1").code == EXIT_BAD_INPUT


# --- services unreachable ---


@pytest.mark.parametrize(
    "args",
    [
        ["request", "erase", "--subject", "C-1", "--verified-now"],
        ["request", "erase", "--subject", "C-1", "--verified-now", "-q"],
        ["request", "complain", "--subject", "C-1"],
        ["request", "hold", "release", "HOLD-1", "--subject", "C-1"],
        ["audit", "show", "REQ-1"],
        ["audit", "verify"],
        ["audit", "report"],
    ],
    ids=lambda a: " ".join(a[:3]),
)
def test_broker_unreachable(no_broker: str, args: list[str]) -> None:
    out = run(*args)
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert no_broker in out.flat
    assert "privops local up" in out.flat
    assert out.stdout == ""  # no request id printed for a command that was not published


@pytest.mark.parametrize(
    "args",
    [
        ["request", "erase", "--subject", "C-1", "--verified-now", "--no-wait"],
        ["request", "erase", "--subject", "C-1", "--verified-now", "--wait", "5"],
        ["audit", "verify"],
    ],
    ids=lambda a: " ".join(a[:3]),
)
def test_a_broker_that_never_answers_is_given_up_on_in_bounded_time(
    env: Callable[..., None], monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """A port that accepts the connection and never answers (a firewall, another
    server): every command waited aiokafka's 40 s request timeout, whatever --wait said
    (review, session 35). Bounded by ``CONNECT_SECONDS`` (15 s; 1 s here)."""
    monkeypatch.setattr(kafka_adapter, "CONNECT_SECONDS", 1.0)
    with socket.socket() as silent:  # the kernel accepts; nothing ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        env(kafka_bootstrap=address)
        started = time.monotonic()
        out = run(*args)
        took = time.monotonic() - started
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert address in out.flat
    assert took < 10, took


def test_an_error_is_one_line_when_stderr_is_no_terminal(tmp_path: Path) -> None:
    """Under systemd, Kubernetes or a pipe, rich wrapped the error at 80 columns, and
    the worker's aiokafka logged its own line first: a line-based log alert saw half a
    message (review, session 32)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(
        PRIVOPS_KAFKA_BOOTSTRAP="127.0.0.1:1",
        PRIVOPS_KAFKA_PRINCIPAL="privops",
        PRIVOPS_KAFKA_PASSWORD="not-checked-no-broker",
        PRIVOPS_WEB_PORT=str(free_port()),
        PRIVOPS_DATA_DIR=str(tmp_path),  # no other worker's lock in the way
    )
    out = subprocess.run(
        [sys.executable, "-m", "privops.cli.main", "worker"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == EXIT_UNAVAILABLE, out.stderr
    (line,) = [line for line in out.stderr.splitlines() if "127.0.0.1:1" in line]
    assert line.startswith("error: Kafka broker at 127.0.0.1:1 is unreachable")
    assert line.endswith("or set PRIVOPS_KAFKA_BOOTSTRAP")


@pytest.mark.usefixtures("no_broker")
def test_follow_up_asks_the_worker_whose_request_it_is(env: Callable[..., None]) -> None:
    """A follow-up is keyed by its request's subject, which only the worker knows: with
    no worker it exits 3 naming the worker's address before anything is published."""
    port = free_port()
    env(web_port=str(port))
    out = run("request", "verify", "REQ-1")
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert f"127.0.0.1:{port}" in out.flat
    assert "privops worker" in out.flat
    assert out.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["request", "status", "REQ-AAAAAAAAAAAA"],
        ["consent", "check", "C-1", "--purpose", "marketing", "--channel", "email"],
    ],
)
def test_worker_unreachable(env: Callable[..., None], args: list[str]) -> None:
    port = free_port()
    env(web_host="127.0.0.1", web_port=str(port))
    out = run(*args)
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert f"http://127.0.0.1:{port}" in out.flat
    assert "privops worker" in out.flat
    assert "privops demo" in out.flat


@pytest.mark.parametrize(
    "args",
    [
        ["request", "status", "REQ-AAAAAAAAAAAA"],
        ["consent", "check", "C-1", "--purpose", "marketing", "--channel", "email"],
        ["simulate", "--worker-url", "http://10.0.0.5:6066"],
    ],
)
def test_outside_dev_the_cli_never_sends_its_password_over_plain_http_elsewhere(
    env: Callable[..., None], args: list[str]
) -> None:
    """Refused before anything is sent (an independent review, session 23)."""
    env(
        env="prod",
        pseudonym_key="a-real-pseudonym-key-0001",
        audit_key="a-real-audit-key-0002",
        web_url="http://10.0.0.5:6066",
    )
    out = run(*args)
    assert out.code in (1, 2), out.output
    assert "plain HTTP beyond loopback" in out.flat
    assert "PRIVOPS_WEB_PLAINTEXT=allow" in out.flat


def test_a_worker_url_with_a_password_is_refused_without_repeating_it(
    env: Callable[..., None],
) -> None:
    out = run("simulate", "--worker-url", "https://dpo:pa/ss@10.0.0.5:6066")
    assert out.code == 2, out.output
    assert "holds no user or password" in out.flat
    assert "pa/ss" not in out.output


# --- against a fake worker ---


@pytest.mark.usefixtures("fake_worker")
def test_status_renders_the_request() -> None:
    out = run("request", "status", "REQ-AAAAAAAAAAAA")
    assert out.code == 0, out.output
    for text in (
        "partially_completed",
        "2026-03-02",
        "2 overdue",
        "orders",
        "legal_obligation",
        "2032-03-02",
        "invoices kept 6 years",
        "Retained data",
    ):
        assert text in out.flat


def test_search_details_are_refused_before_sealing_where_no_system_is_searched(
    no_broker: str, env: Callable[..., None], tmp_path: Path
) -> None:
    """Sealing them would make a stranger a key the worker then refuses to use."""
    text = REAL_DATAMAP.read_text()
    assert text.count("    searched_by_details: true\n") == 1
    datamap = tmp_path / "datamap.yaml"
    datamap.write_text(text.replace("    searched_by_details: true\n", ""))
    env(datamap=str(datamap))
    out = run("request", "access", "--subject", "V-1", "--search", "date=2026-01-05")
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "no system of the data map is searched by details" in out.flat
    assert no_broker not in out.flat


@pytest.mark.usefixtures("no_broker")
@pytest.mark.parametrize(
    "given", ["ann_smith=by the tills", "date=last Tuesday", "date=2026-01-05", "times=2pm"]
)
def test_search_details_are_never_repeated(given: str) -> None:
    """Neither a value nor an unknown detail's name (a subject's name in the wrong
    place): the message lands in logs."""
    out = run("request", "access", "--subject", "C-1", "--search", given, "--search", "times=2pm")
    assert out.code == EXIT_BAD_INPUT, out.output
    name, _, value = given.partition("=")
    for said in (value, "2pm", *([name] if name not in ("date", "times") else [])):
        assert said not in out.output


@pytest.mark.usefixtures("no_broker")
def test_not_the_subject_and_withheld_both_are_refused() -> None:
    out = run(
        "request",
        "approve",
        "REQ-1",
        "--not-subject",
        "cctv",
        "--withhold",
        "cctv",
        "--reason",
        "x",
    )
    assert out.code == EXIT_BAD_INPUT, out.output
    assert "cctv: --not-subject and --withhold or --disclose both; say one" in out.flat


@pytest.mark.usefixtures("fake_worker")
def test_status_shows_what_a_search_looked_for() -> None:
    """The DPO reviewing what a search found sees the subject's words (markup in them
    shown as text)."""
    out = run("request", "status", "REQ-EEEEEEEEEEEE")
    assert out.code == 0, out.output
    assert "searched by date 2026-01-20; times 14:00-15:30; location [b]trade counter" in out.flat
    assert "kept from deletion what the search finds, at cctv" in out.flat
    other = run("request", "status", "REQ-AAAAAAAAAAAA").flat
    assert "searched by" not in other
    assert "kept from deletion" not in other
    assert "refused on" not in other


@pytest.mark.usefixtures("fake_worker")
def test_status_shows_the_ground_a_request_was_refused_on() -> None:
    out = run("request", "status", "REQ-FFFFFFFFFFFF")
    assert out.code == 0, out.output
    assert "refused on manifestly_unfounded" in out.flat


@pytest.mark.usefixtures("fake_worker")
def test_status_json_is_the_workers_json() -> None:
    out = run("request", "status", "REQ-AAAAAAAAAAAA", "--json")
    assert out.code == 0
    assert json.loads(out.stdout) == STATUS


@pytest.mark.usefixtures("fake_worker")
@pytest.mark.parametrize("request_id", sorted(MISSHAPEN))
def test_status_of_an_answer_that_is_no_status_exits_3(request_id: str) -> None:
    """Rendered as a request with no state ("{}"), or crashed on a list given as text,
    exit 1 with a traceback (review, session 35)."""
    out = run("request", "status", request_id)
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert f"did not answer with the status of request {request_id}" in out.flat


@pytest.mark.usefixtures("fake_worker")
def test_an_unknown_subject_whose_id_looks_like_a_number_is_not_repeated() -> None:
    """Not refused (a system's customer number may look like a phone number; diff
    review, session 35), but the message, which lands in logs, does not repeat it."""
    out = run("consent", "check", "07700900123", "--purpose", "marketing", "--channel", "sms")
    assert out.code == EXIT_NOT_FOUND, out.output
    assert "900123" not in out.output
    known = run("consent", "check", "C-404", "--purpose", "marketing", "--channel", "sms")
    assert "unknown subject 'C-404'" in known.flat


@pytest.mark.usefixtures("fake_worker")
def test_a_consent_answer_to_another_question_exits_3() -> None:
    out = run("consent", "check", "C-2", "--purpose", "analytics", "--channel", "post")
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert "ALLOWED" not in out.output
    assert "another subject, purpose or channel" in out.flat


@pytest.mark.usefixtures("fake_worker")
def test_status_unknown_request_exits_4() -> None:
    out = run("request", "status", "REQ-000000000000")
    assert out.code == EXIT_NOT_FOUND
    assert "unknown request REQ-000000000000" in out.flat
    assert "requests appear a moment after submission" in out.flat


@pytest.mark.usefixtures("fake_worker")
def test_consent_allowed_exits_0_not_allowed_exits_1() -> None:
    out = run("consent", "check", "C-1", "--purpose", "marketing", "--channel", "post")
    assert out.code == 0, out.output
    assert "ALLOWED" in out.flat
    assert "NOT ALLOWED" not in out.flat
    assert "crm" in out.flat
    out = run("consent", "check", "C-1", "--purpose", "marketing", "--channel", "email")
    assert out.code == EXIT_FAILED
    assert "NOT ALLOWED" in out.flat
    assert "no consent for email" in out.flat
    out = run("consent", "check", "C-1", "--purpose", "marketing", "--channel", "email", "--json")
    assert out.code == EXIT_FAILED
    assert json.loads(out.stdout)["allowed"] is False


@pytest.mark.usefixtures("fake_worker")
def test_consent_unknown_subject_exits_4() -> None:
    out = run("consent", "check", "C-404", "--purpose", "marketing", "--channel", "sms")
    assert out.code == EXIT_NOT_FOUND
    assert "unknown subject 'C-404'" in out.flat


class _NotAWorker(BaseHTTPRequestHandler):
    """Some other web server on the worker's address: a plain 404 page for every path."""

    def do_GET(self) -> None:
        self.send_error(404, "File not found")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    "args",
    [
        ["consent", "check", "C-1", "--purpose", "marketing", "--channel", "sms"],
        ["request", "status", "REQ-123"],
        ["request", "verify", "REQ-123", "--no-wait"],
        ["request", "list"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_server_that_is_not_the_worker_is_no_answer_not_an_unknown_thing(
    env: Callable[..., None], args: list[str]
) -> None:
    """Any web server answers 404 for a path it lacks: taken for the worker's "unknown
    request" or "unknown subject" (exit 4), a wrong PRIVOPS_WEB_URL told the DPO a real
    request did not exist (review, session 32). Only the worker's own JSON says so."""
    with stand_in_worker(_NotAWorker, env):
        out = run(*args)
    assert out.code == EXIT_UNAVAILABLE, out.flat
    assert "unknown" not in out.flat
    assert "privops worker" in out.flat


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--purpose", "spam", "--channel", "email"],
            "unknown purpose 'spam': use one of marketing, profiling, analytics, service",
        ),
        (
            ["--purpose", "marketing", "--channel", "pigeon"],
            "unknown channel 'pigeon': use one of email, sms, post, telephone",
        ),
    ],
)
def test_consent_bad_purpose_or_channel(
    env: Callable[..., None], args: list[str], message: str
) -> None:
    env(web_port=str(free_port()))
    out = run("consent", "check", "C-1", *args)
    assert out.code == EXIT_BAD_INPUT
    assert message in out.flat


# --- ropa ---


def test_ropa_from_the_real_data_map() -> None:
    out = run("ropa", "--datamap", str(REAL_DATAMAP), "--json")
    assert out.code == 0, out.output
    assert json.loads(out.stdout)["controller"]["name"] == "ALL LED Limited"
    out = run("ropa", "--datamap", str(REAL_DATAMAP))
    assert out.code == 0
    assert "Record of processing activities" in out.flat


def test_ropa_bad_data_map_names_field_and_line(tmp_path: Path) -> None:
    text = REAL_DATAMAP.read_text(encoding="utf-8").replace(
        "lawful_basis: contract", "lawful_basis: vibes", 1
    )
    bad = tmp_path / "datamap.yaml"
    bad.write_text(text, encoding="utf-8")
    out = run("ropa", "--datamap", str(bad))
    assert out.code == EXIT_BAD_INPUT
    assert "lawful_basis" in out.flat
    assert "line" in out.flat


def test_ropa_missing_data_map(tmp_path: Path) -> None:
    out = run("ropa", "--datamap", str(tmp_path / "nope.yaml"))
    assert out.code == EXIT_BAD_INPUT
    assert "cannot read" in out.flat


@pytest.mark.parametrize(
    "args",
    [
        ["rectify", "--subject", "C-1", "--set", "postcode=AB1 2CD"],
        ["hold", "place", "--subject", "C-1", "--category", "cctv", "--reason", "AB1 2CD"],
        ["complain", "--subject", "C-1", "--reason", "AB1 2CD"],
        ["complain", "--subject", "C-1", "--restrict-while-investigating", "--verified-now"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_text_about_a_person_is_not_sent_without_the_key_service(
    no_broker: str, env: Callable[..., None], args: list[str]
) -> None:
    """Free text and corrected values are sealed by the worker's key service before they
    are published: a worker that does not answer stops the command (exit 3, naming it),
    nothing unsealed goes out, and the text is never echoed."""
    port = free_port()
    env(web_port=str(port))
    out = run("request", *args)
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert f"127.0.0.1:{port}" in out.flat
    assert "privops worker" in out.flat
    assert no_broker not in out.flat  # stopped before the broker was tried
    assert "AB1 2CD" not in out.output
    assert out.stdout == ""


def test_simulate_refuses_a_business_day_that_has_not_happened(tmp_path: Path) -> None:
    """privops dead-letters events dated ahead of its clock (implausible_time): a future
    day would publish nothing the worker takes."""
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    out = run("simulate", "--data-dir", str(tmp_path), "--date", tomorrow)
    assert out.code == EXIT_BAD_INPUT
    assert "has not happened yet" in out.flat


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--purpose", "service"], "rests on no consent"),
        (["--purpose", "newsletters"], "unknown purpose"),
        (["--channel", "fax"], "unknown channel"),
    ],
)
def test_withdraw_names_what_can_be_withdrawn(args: list[str], says: str) -> None:
    out = run("request", "withdraw", "--subject", "CUST-0001", *args)
    assert out.code == EXIT_BAD_INPUT
    assert says in out.flat


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-13-01"], "invalid date '2026-13-01' for --from: use YYYY-MM-DD"),
        (["--from", "2026-03-02", "--to", "2026-03-01"], "--from 2026-03-02 is after --to"),
    ],
)
def test_audit_report_bad_dates_exit_2_before_reading(
    no_broker: str, args: list[str], message: str
) -> None:
    out = run("audit", "report", *args)
    assert out.code == EXIT_BAD_INPUT, out.output
    assert message in out.flat
    assert no_broker not in out.flat  # refused before the broker was asked


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # This year, asked in December: the period so far (the README's own example).
        (["--to", "2999-12-31"], "the period is not over: reported up to today"),
        # A year before the first day of the calendar: a traceback, exit 1 (review).
        (["--to", "0001-01-01"], "Kafka broker at 127.0.0.1:1 is unreachable"),
    ],
)
def test_audit_report_periods_that_are_no_error_go_on_to_the_broker(
    no_broker: str, args: list[str], says: str
) -> None:
    out = run("audit", "report", *args)
    assert out.code == EXIT_UNAVAILABLE, out.output
    assert no_broker in out.flat
    assert says in out.flat


@pytest.mark.parametrize(
    ("args", "noted"),
    [
        (["--received", "2026-03-02", "--identity-verified", "2026-03-20"], True),
        (
            [
                "--received", "2026-03-02", "--identity-verified", "2026-03-20",
                "--identity-received", "2026-03-05",
            ],
            False,
        ),
        (["--received", "2026-03-02", "--identity-verified", "2026-03-02"], False),
    ],
    ids=["verified-later-alone", "information-day-given", "verified-on-receipt"],
)  # fmt: skip
def test_a_clock_started_by_the_check_is_said(no_broker: str, args: list[str], noted: bool) -> None:
    """The law counts from the day the information asked for arrived, not the day the
    check finished; given only the latter, the CLI says what it means (legal review)."""
    out = run("request", "erase", "--subject", "C-1", *args)
    assert ("no --identity-received" in out.flat) is noted
    assert out.code == EXIT_UNAVAILABLE  # still sent on (here: no broker)
