"""The CLI's verbs and options are contract (DESIGN.md): scripts, other teams and the
acceptance checks call them by name. The whole surface, in help order, pinned here; a
change to it is a contract change and belongs in an issue note.

Also the pieces the verbs share: vocabulary parsing, the submission options declared once,
the worker's answers turned into exit codes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from privops.cli import worker_http
from privops.cli.common import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, parse_choice
from privops.cli.main import app
from privops.cli.request import parse_date as reexported_parse_date
from privops.cli.request.options import Submission, submission_verb
from privops.cli.request.submit import parse_changes
from privops.core.datamap import DEFAULT_CONTACT_FIELDS
from privops.core.vocab import Category, Channel, ObjectionScope, Purpose

# The options every submission verb shares, after --subject and its own.
SHARED = (
    "--received --identity-verified --identity-received --verified-now --representative"
    " --capacity --authority-received --reason --actor --json --quiet --wait --no-wait"
)
# Every verb that publishes a command waits for the worker's answer (or not, --no-wait).
WAITS = "--wait --no-wait"
SURFACE = [
    "ropa: --json --datamap",
    "bench: --scenario --events --subjects --rate --duration --consent-load --warmup --workers"
    " --encrypt --restart-subjects"
    " --restart-budget --open --timeout --port-base --json",
    "worker: ",
    "demo: --keep",
    "local up: --brokers",
    "local down: ",
    "local status: --json",
    "local credentials: PRINCIPAL --json",
    "local web-cert: --host --days --json",
    "topics create: --json",
    "schemas generate: ",
    "schemas check: ",
    "schemas register: ",
    f"request erase: --subject {SHARED}",
    f"request restrict: --subject {SHARED}",
    f"request lift: --subject --restriction {SHARED}",
    f"request access: --subject --search {SHARED}",
    f"request port: --subject --send-to {SHARED}",
    f"request rectify: --subject --set --statement {SHARED}",
    f"request object: --subject --scope {SHARED}",
    f"request withdraw: --subject --purpose --channel {SHARED}",
    f"request complain: --subject --restrict-while-investigating --link {SHARED}",
    f"request verify: REQUEST_ID --on --identity-received --method --actor --json {WAITS}",
    f"request authority: REQUEST_ID --on --actor --json {WAITS}",
    f"request erase-now: REQUEST_ID --actor --json {WAITS}",
    f"request fee-received: REQUEST_ID --ground --on --actor --json {WAITS}",
    f"request clarify: REQUEST_ID --asked --question-ref --actor --json {WAITS}",
    f"request clarified: REQUEST_ID --on --actor --json {WAITS}",
    f"request extend: REQUEST_ID --reason --notified --actor --json {WAITS}",
    f"request answer: REQUEST_ID --reason --actor --json {WAITS}",
    f"request cancel: REQUEST_ID --reason --actor --json {WAITS}",
    f"request refuse: REQUEST_ID --ground --reason --actor --json {WAITS}",
    f"request decide-objection: REQUEST_ID --accept --reason --purpose --actor --json {WAITS}",
    "request redact: REQUEST_ID --system --location --records --sha256 --media-type --actor "
    f"--json {WAITS}",
    "request approve: REQUEST_ID --withhold --disclose --reason --not-subject --sent-on "
    "--not-feasible --actor "
    f"--json {WAITS}",
    "request status: REQUEST_ID --json",
    "request list: --due-within --type --limit --json",
    f"request hold place: --subject --category --reason --actor --json --quiet {WAITS}",
    f"request hold release: HOLD_ID --subject --actor --json {WAITS}",
    "request hold list: --subject --json",
    "consent check: SUBJECT --purpose --channel --json",
    "audit show: ID_ --json",
    "audit verify: --json --chain --anchors --accept-legacy-anchors --accept-revoked-signer "
    "--require-keyed",
    "audit anchor: --out --chain --json",
    "audit report: --from --to --chain --json",
    "simulate: --data-dir --customers --events --date --slow --fail-first --silent"
    " --reset --metrics-port --metrics-host --group-prefix --from --worker-url --plaintext"
    " --purge-every",
    "keys generate: --owner --key-file --json",
    "keys list: --json",
    "keys revoke: KEY_ID --json",
    "keys kek show: --stored --json",
    "keys kek create: --json",
    "keys kek rotate: --json",
    "keys kek retire: VERSION --json",
    "subject forget-check: SUBJECT_ID --value --from-file --data-dir --skip-stores --as --json",
]


def _surface(cmd: Any, path: str = "") -> Iterator[str]:
    subs: dict[str, Any] | None = getattr(cmd, "commands", None)
    if not subs:
        names = [p.opts[0] if p.param_type_name == "option" else p.name.upper() for p in cmd.params]
        yield f"{path}: {' '.join(names)}"
        return
    for name, sub in subs.items():
        if path or name != "dsar":  # dsar's surface is pinned by its own tests
            yield from _surface(sub, f"{path} {name}".strip())


def test_cli_surface_is_unchanged() -> None:
    assert list(_surface(get_command(app))) == SURFACE


def test_dsar_can_still_import_parse_date_from_request() -> None:
    from privops.cli.common import parse_date

    assert reexported_parse_date is parse_date


class Colour(enum.Enum):
    red = "red"
    dark_blue = "dark_blue"


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        (Purpose, "marketing", Purpose.marketing),
        (Purpose, " Marketing ", Purpose.marketing),
        (Channel, "SMS", Channel.sms),
        (ObjectionScope, "direct_marketing", ObjectionScope.direct_marketing),
        (Category, "cctv", Category.cctv),
        (Colour, "DARK_BLUE", Colour.dark_blue),
    ],
)
def test_parse_choice_accepts_any_case_and_spacing(
    kind: type[enum.Enum], given: str, expected: enum.Enum
) -> None:
    assert parse_choice(kind, given, "thing") is expected


@pytest.mark.parametrize(
    ("kind", "given", "what", "message"),
    [
        (Colour, "green", "colour", "unknown colour 'green': use one of red, dark_blue"),
        (Channel, "sms?", "channel", "unknown channel 'sms?': use one of email, sms, post"),
        (Colour, "[bold]x", "colour", "unknown colour '[bold]x'"),  # markup shown, not applied
    ],
)  # fmt: skip
def test_parse_choice_refuses_naming_the_choices(
    kind: type[enum.Enum], given: str, what: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exc:
        parse_choice(kind, given, what)
    assert exc.value.exit_code == EXIT_BAD_INPUT
    assert message in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["name=Jane Doe"], {"name": "Jane Doe"}),
        ([" Postcode = AB1 2CD "], {"postcode": "AB1 2CD"}),
        (["email=a=b@example.com"], {"email": "a=b@example.com"}),
        (["phone=1", "address=2 High St"], {"phone": "1", "address": "2 High St"}),
    ],
)
def test_parse_changes(pairs: list[str], expected: dict[str, str]) -> None:
    assert parse_changes(pairs) == expected


def test_rectify_points_at_the_fields_the_data_map_lists() -> None:
    """The fields are the data map's (the worker's check), not a list of the CLI's."""
    out = CliRunner().invoke(app, ["request", "rectify", "--help"], env={"COLUMNS": "200"})
    text = " ".join(out.output.split())
    assert "categories.<category>.fields" in text
    assert f"contact's by default: {DEFAULT_CONTACT_FIELDS[0]}," in text
    assert "--statement" in text


def test_submission_verb_bundles_the_shared_options_and_keeps_their_order() -> None:
    seen: list[tuple[Submission, str]] = []

    @submission_verb
    def verb(common: Submission, colour: str = typer.Option("red", "--colour", help="c")) -> None:
        """A verb."""
        seen.append((common, colour))

    sub = typer.Typer()
    sub.command("verb")(verb)
    sub.command("other")(verb)  # a second command so typer keeps the sub-command name
    command: Any = get_command(sub)
    params = [p.opts[0] for p in command.commands["verb"].params]
    assert params == [
        "--subject", "--colour", "--received", "--identity-verified", "--identity-received",
        "--verified-now", "--representative", "--capacity", "--authority-received", "--reason",
        "--actor", "--json", "--quiet", "--wait", "--no-wait",
    ]  # fmt: skip
    out = CliRunner().invoke(sub, ["verb", "--subject", "C-1", "--colour", "blue", "-q"])
    assert out.exit_code == 0, out.output
    assert seen == [(Submission(subject="C-1", quiet=True), "blue")]
    assert CliRunner().invoke(sub, ["verb"]).exit_code == EXIT_BAD_INPUT  # --subject required


def _response(status: int, content: bytes) -> httpx.Response:
    return httpx.Response(status, content=content, request=httpx.Request("GET", "http://w/x"))


@pytest.mark.parametrize(
    ("status", "content", "code", "message"),
    [
        (200, b'{"ok": true}', None, ""),
        (404, b'{"error": "unknown"}', EXIT_NOT_FOUND, "nothing like that here"),
        # Never 1, which a script reads as "not allowed" / "rejected": an outage or a
        # refusal is not an answer to the question.
        (500, b'{"error": "boom"}', EXIT_UNAVAILABLE, "could not answer now (500: boom)"),
        (503, b'{"detail": 1}', EXIT_UNAVAILABLE, "could not answer now (503: {'detail': 1})"),
        (502, b"<html>proxy</html>", EXIT_UNAVAILABLE, "(502: no JSON body)"),
        (401, b'{"error": "who?"}', EXIT_BAD_INPUT, "the worker refused principal"),
        (403, b'{"error": "no", "reason": "not dpo"}', EXIT_BAD_INPUT, "(403: no: not dpo)"),
        (400, b'{"error": "bad query"}', EXIT_BAD_INPUT, "refused the question (400: bad query)"),
        (410, b'{"error": "gone"}', EXIT_UNAVAILABLE, "answered 410 (gone) where it answers"),
        (200, b"<html>", EXIT_UNAVAILABLE, "the worker answered 200 without a JSON object"),
        (200, b"[1, 2]", EXIT_UNAVAILABLE, "without a JSON object"),
    ],
)
def test_worker_json_exit_codes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
    content: bytes,
    code: int | None,
    message: str,
) -> None:
    monkeypatch.setattr(worker_http, "worker_get", lambda *_a, **_k: _response(status, content))
    if code is None:
        assert worker_http.worker_json("/x", not_found="nothing like that here") == {"ok": True}
        return
    with pytest.raises(typer.Exit) as exc:
        worker_http.worker_json("/x", not_found="nothing like that here")
    assert exc.value.exit_code == code
    assert message in " ".join(capsys.readouterr().err.split())
