"""Issue 7 acceptance: the main job's story runs on the real broker and its outcomes hold."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from privops.adapters.settings import Settings
from privops.core import records as r
from privops.core.fieldcrypt import is_encrypted
from privops.core.topics import COMMANDS
from privops.core.vocab import RequestType
from tests.conftest import REPO, port
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration


def test_demo_story_runs_and_shows_every_workflow(local_runtime: Settings) -> None:
    env = {**os.environ, "PRIVOPS_WEB_PORT": str(port(401)), "COLUMNS": "160"}
    proc = subprocess.run(
        [sys.executable, "-m", "privops.cli.main", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "kafka already running" in out  # it used the session broker, did not stop it
    for chapter in (
        "A day of business",
        "May we contact them?",
        "An access request",
        "An erasure",
        "restrict while we investigate",
        "A silent system",
        "A deadline approaching",
        "demo complete",
    ):
        assert chapter in out, chapter
    assert re.search(r"request REQ-\w+: completed, due \d{4}-\d{2}-\d{2}", out)
    assert re.search(r"request REQ-\w+: partially_completed", out)  # invoices kept
    assert re.search(r"orders\s+│ retained", out)
    assert "consent state restricted = yes" in out
    assert "TaskEscalated" in out
    assert "DeadlineApproaching" in out
    # Export files were really written by the reference systems.
    runs = sorted((local_runtime.home / "demo").iterdir())
    exports = list((runs[-1] / "systems" / "exports").rglob("*.json"))
    assert exports
    assert all(Path(p).stat().st_size > 0 for p in exports)
    # The access request's customer's portability request: copies of what the right
    # covers only, each saying so.
    assert re.search(r"portability request REQ-\w+ \(Art\. 20\): completed, sent on 20", out)
    assert "Portable copies" in out
    ported = [json.loads(p.read_text()).get("portability") for p in exports]
    assert any(p is not None for p in ported)
    assert all(
        set(p["categories"]) <= {"contact", "payment", "purchases", "web", "marketing_preferences"}
        for p in ported
        if p
    )
    # The complaint's text went on privacy.commands sealed by the worker, as the CLI's.
    complaint_id = re.search(r"complaint (REQ-\w+): acknowledgement due", out)
    assert complaint_id is not None
    (complaint,) = [
        c.value
        for c in read_topic(local_runtime, COMMANDS)
        if isinstance(c.value, r.RequestSubmitted) and c.value.request_id == complaint_id.group(1)
    ]
    assert complaint.request_type is RequestType.complaint
    assert is_encrypted(complaint.reason or "")
