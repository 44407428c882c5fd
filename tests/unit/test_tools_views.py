"""What a DPO reads: tables wrap at 80 columns, an access response reads in words, and the
demo's closing pointers match what it left running."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType
from typer.testing import CliRunner

from privops.adapters.datamap_file import load_datamap
from privops.adapters.runtime import Component
from privops.adapters.settings import get_settings
from privops.cli.main import app
from privops.cli.request import follow_up
from privops.cli.request import status as status_cli
from privops.core.manifest import build_access_manifest
from privops.core.records import ExportReference
from privops.core.vocab import System
from privops.tools.demo import Demo, Ending, where_to_look
from privops.tools.views import art15_sections, grid, table, task_exports, yes_no

REAL = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"
LONG = "file:///home/privops/demo/20260302-101010/systems/exports/REQ-ABCDEF/telephony.json"


def render(renderable: RenderableType, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def column(text: str, index: int, columns: int) -> str:
    """Column `index` of the bordered tables with `columns` columns in `text`, its lines
    joined without spaces, so a value folded over several lines reads whole again."""
    cells = [
        line.split("│")[index + 1].strip()
        for line in text.splitlines()
        if line.count("│") == columns + 1
    ]
    return "".join(cells)


@pytest.mark.parametrize(
    "values",
    [
        ("request_received", "legitimate_interests (Companies Act);", LONG),
        ("x" * 120, "short", "sha256:" + "ab" * 32),
    ],
)
def test_tables_fold_long_values_at_80_columns(values: tuple[str, str, str]) -> None:
    shown = table("action", "ground", "location", title="t")
    shown.add_row(*values)
    summary = grid()
    summary.add_row("location", LONG)
    for renderable in (shown, summary):
        text = render(renderable)
        assert "…" not in text
        assert max(len(line) for line in text.splitlines()) <= 80
    text = render(shown)
    for index, value in enumerate(values):
        assert value.replace(" ", "") in column(text, index, 3).replace(" ", "")


def test_ropa_at_80_columns_cuts_nothing() -> None:
    result = CliRunner().invoke(app, ["ropa", "--datamap", str(REAL)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert "(HMRC:" in result.stdout  # the ground, not cut


@pytest.mark.parametrize(("value", "word"), [(True, "yes"), (False, "no"), (None, "no")])
def test_yes_no(value: object, word: str) -> None:
    assert yes_no(value) == word


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    dm = load_datamap(REAL)
    exports = [
        (s, ExportReference(location=LONG, record_count=3, checksum="sha256:" + "cd" * 32))
        for s in dm.holdings()
        if s is not System.cctv
    ]
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    return build_access_manifest("REQ-1", "C-1", "sr_1", dm, dm.holdings(), exports, now)


def test_art15_sections_read_in_words(manifest: dict[str, Any]) -> None:
    sections = dict(art15_sections(manifest))
    assert list(sections) == [
        "Purposes and lawful basis",
        "Data held and how long it is kept",
        "privops' own records",
        "Recipients",
        "Transfers outside the UK/EEA",
        "Where data not from the subject came from",
        "Automated decisions and profiling",
        "The subject's rights",
        "The copy of the data",
    ]
    assert "lawful basis: legitimate interest" in sections["Purposes and lawful basis"]
    assert "6 years" in sections["Data held and how long it is kept"]
    assert "safeguard:" in sections["Transfers outside the UK/EEA"]
    assert "not solely automated" in sections["Automated decisions and profiling"]
    assert "withdraw consent" in sections["The subject's rights"]
    assert "still to come from cctv" in sections["The copy of the data"]
    text = "\n".join(sections.values())
    for raw_key in ("lawful_basis", "automated_decisions", "missing_exports", "C-1"):
        assert raw_key not in text


def test_art15_sections_say_none_rather_than_vanish() -> None:
    sections = dict(art15_sections({}))
    assert sections["Recipients"] == "none"
    assert sections["Where data not from the subject came from"] == "all from the subject"
    assert sections["The copy of the data"] == "0 record(s) in 0 file(s)"
    assert sections["privops' own records"] == "-"  # a manifest from before the section


def test_art15_sections_show_privops_own_records(manifest: dict[str, Any]) -> None:
    assert dict(art15_sections(manifest))["privops' own records"] == (
        "no choices, flags or identifiers"
    )
    own = {
        "preferences": [
            {"purpose": "marketing", "channel": "sms", "status": "withdrawn",
             "basis": "consent", "source": "marketing"},
        ],
        "flags": [{"flag": "tps_listed"}],
        "known_in": [{"system": "crm", "identifier_kinds": ["email"]}],
        "rights_requests": {"count": 2, "listed": []},
    }  # fmt: skip
    shown = dict(art15_sections({**manifest, "privacy_records": own}))["privops' own records"]
    assert shown.splitlines() == [
        "marketing by sms: withdrawn (consent, from marketing)",
        "tps listed",
        "known in crm",
        "2 other request(s) on record",
    ]


def rendered(body: dict[str, Any], monkeypatch: pytest.MonkeyPatch, width: int = 120) -> str:
    """What `privops request status` prints for the worker's answer ``body``."""
    out = io.StringIO()
    monkeypatch.setattr(status_cli, "console", Console(file=out, width=width, color_system=None))
    status_cli.render_status(body)
    return out.getvalue()


def test_status_shows_an_access_requests_exports_and_response(
    manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = [
        {
            "system": e["system"], "action": "export", "state": "done", "attempts": 1,
            "categories": ["contact"], "keep": [],
            "export": {k: e[k] for k in ("location", "record_count", "checksum")},
        }
        for e in manifest["exports"]
    ]  # fmt: skip
    body = {
        "request_id": "REQ-1",
        "request_type": "access",
        "state": "completed",
        "identity_received_on": "2026-03-01",
        "tasks": tasks,
        "manifest": manifest,
        "history": [{"at": "2026-03-02T09:30:00+00:00", "event": "request_received"}],
    }
    text = rendered(body, monkeypatch, width=80)
    assert "…" not in text
    assert "Exports" in text
    assert "Art. 15 response" in text
    assert "Purposes and lawful basis" in text
    assert LONG in column(text, 2, 4)  # Exports: system, records, location, checksum
    assert "sha256:" + "cd" * 32 in column(text, 3, 4)
    assert "request_received" in column(text, 1, 3)  # History: at, event, state
    assert "2026-03-01" in text  # the day the identity information arrived


def test_task_exports_pairs_each_export_with_its_system() -> None:
    tasks: list[dict[str, Any]] = [
        {"system": "crm", "export": {"location": "a", "record_count": 1, "checksum": "c"}},
        {"system": "orders", "export": None},
    ]
    assert task_exports(tasks) == [
        {
            "system": "crm",
            "location": "a",
            "record_count": 1,
            "checksum": "c",
            "redacted": False,
            "shows_others": False,
        }
    ]


def test_status_of_a_response_awaiting_review_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    export = {"location": "https://x/cctv/REQ-7/redacted.mp4", "record_count": 2, "checksum": "c"}
    body = {
        "request_id": "REQ-7",
        "request_type": "access",
        "state": "awaiting_review",
        "tasks": [
            {"system": "cctv", "action": "export", "state": "done", "attempts": 1,
             "categories": ["cctv"], "keep": [], "export": export, "redacted": True},
        ],
    }  # fmt: skip
    text = rendered(body, monkeypatch)
    assert "Awaiting your review" in text
    assert "privops request approve REQ-7" in text
    assert "privops request redact REQ-7 --system" in text
    assert "cctv (redacted)" in text


def test_status_marks_a_copy_its_system_says_shows_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """So the DPO knows which copies to review, before and after the redaction (the
    system's own copy says so: ``original_export``)."""
    own = {
        "location": "https://x/telephony/REQ-9.mp3",
        "record_count": 2,
        "checksum": "c",
        "shows_others": True,
    }
    redacted = {
        "location": "https://x/telephony/REQ-9/cut.mp3",
        "record_count": 2,
        "checksum": "d",
        "shows_others": False,
    }
    task = {
        "system": "telephony",
        "action": "export",
        "state": "done",
        "attempts": 1,
        "categories": ["interactions"],
        "keep": [],
    }
    body = {
        "request_id": "REQ-9",
        "request_type": "access",
        "state": "awaiting_review",
        "tasks": [{**task, "export": own, "redacted": False}],
    }  # fmt: skip
    assert "telephony (shows others)" in rendered(body, monkeypatch)
    body["tasks"] = [{**task, "export": redacted, "original_export": own, "redacted": True}]
    assert "telephony (shows others) (redacted)" in rendered(body, monkeypatch)


def test_status_marks_a_copy_withheld_from_the_response(monkeypatch: pytest.MonkeyPatch) -> None:
    """After --withhold cctv, the exports showed cctv's copy as if it had been sent."""
    export = {"location": "https://x/cctv/REQ-8.mp4", "record_count": 2, "checksum": "c"}
    body = {
        "request_id": "REQ-8",
        "request_type": "access",
        "state": "partially_completed",
        "tasks": [
            {"system": "cctv", "action": "export", "state": "done", "attempts": 1,
             "categories": ["cctv"], "keep": [], "export": export, "redacted": False},
        ],
        "manifest": {"withheld_exports": [{"system": "cctv", "ground": "others"}]},
    }  # fmt: skip
    assert "cctv (withheld)" in rendered(body, monkeypatch)


@pytest.mark.parametrize(
    ("location", "media_type"),
    [
        ("https://x/dsar/cctv/REQ-1/blurred.mp4", "video/mp4"),
        ("https://x/dsar/cctv/REQ-1.zip", "application/zip"),
        ("https://x/dsar/cctv/REQ-1/frames", "application/octet-stream"),
    ],
)
def test_a_redacted_copys_media_type_follows_its_name(location: str, media_type: str) -> None:
    """It defaulted to application/json: the subject was told their video was JSON."""
    assert follow_up._media_type(location) == media_type


class _Kafka(Component):
    name = "kafka"


@pytest.mark.parametrize(
    ("kept", "started", "present", "absent"),
    [
        (
            True, False,
            ["request status REQ-9", "privops simulate --data-dir", "audit show REQ-9", "/metrics",
             "privops request list", "privops audit report --chain privops-demo-"],
            ["privops demo --keep"],
        ),
        (
            False, True,
            ["worker.log", "privops demo --keep", "the worker and the local runtime"],
            ["request status", "audit show", "/metrics", "privops simulate"],
        ),
        (
            False, False,  # Kafka was running before the demo, so it still is
            ["audit show REQ-9", "privops demo --keep", "privops audit report --chain"],
            ["request status", "/metrics", "the local runtime", "request list"],
        ),
    ],
)  # fmt: skip
def test_where_to_look_matches_what_was_left_running(
    tmp_path: Path, kept: bool, started: bool, present: list[str], absent: list[str]
) -> None:
    demo = Demo(get_settings(), Console())
    if started:
        demo.started.append(_Kafka(get_settings()))
    text = " ".join(render(where_to_look(demo, Ending("REQ-9", tmp_path), kept=kept), 200).split())
    for words in present:
        assert words in text
    for words in absent:
        assert words not in text
