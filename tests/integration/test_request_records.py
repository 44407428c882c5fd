"""privops' own record of a finished request is deleted once the data map's
``request_records.period_days`` have passed, on the real broker: a request completed by a
worker is still there after a restart, and a worker restarted on the same tables with
its clock moved past the day deletes it (the rebuilt schedule finds it, the tick goes
through privops.internal.request-ticks), audits the deletion, and answers the DPO's
``privops request status`` with exit 4 and why.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.adapters.settings import Settings
from privops.core import records as r
from privops.core.clock import UK
from privops.core.topics import AUDIT
from privops.core.vocab import Purpose, System
from tests.conftest import REPO, WorkerProcess, port, start_worker
from tests.integration.helpers import Subject, http_json, produce, read_topic, wait_for

pytestmark = pytest.mark.integration

DAYS = load_datamap().request_records.period_days
REBUILT = "deadline and task indexes rebuilt from"  # agents.timers.sweep, once started
SWEEP_S = 0.1  # PRIVOPS_SWEEP_INTERVAL_SECONDS' default


def request(worker: WorkerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privops.cli.main", "request", *args],
        capture_output=True,
        text=True,
        env={**worker.env, "COLUMNS": "200"},
        cwd=REPO,
        timeout=90,
    )


def test_a_finished_request_is_deleted_after_its_days_and_the_cli_says_why(
    local_runtime: Settings, uid: str
) -> None:
    subject = Subject(uid, 1)
    name = f"records-{uid}"
    worker = start_worker(local_runtime, name, web_port=port(612))
    try:
        produce(local_runtime, [subject.event(r.CustomerCreated, System.crm)])
        wait_for(
            "the subject to be known",
            lambda: http_json(f"{worker.url}/consent/{subject.id}")[0] == 200,
        )
        told = request(
            worker, "withdraw", "--subject", subject.id, "--purpose", Purpose.profiling.value
        )
        assert told.returncode == 0, told.stderr
        request_id = told.stdout.splitlines()[0].strip()
        status, body = http_json(f"{worker.url}/requests/{request_id}")
        assert (status, body.get("state")) == (200, "completed")
        kept_until = datetime.now(UK).date() + timedelta(days=DAYS)
        assert body["record_kept_until"] == kept_until.isoformat()
    finally:
        worker.stop()

    # The same tables, a day before the record's time is up: still there once the
    # schedule is rebuilt and a few sweeps have run.
    env = {"PRIVOPS_CLOCK_OFFSET_DAYS": str(DAYS - 1)}
    worker = start_worker(local_runtime, name, web_port=port(612), extra_env=env)
    try:
        wait_for("the schedule's rebuild", lambda: REBUILT in worker.log.read_text())
        time.sleep(30 * SWEEP_S)  # thirty sweeps
        assert http_json(f"{worker.url}/requests/{request_id}")[0] == 200
    finally:
        worker.stop()

    # Its day: the rebuilt schedule finds it, and the record goes.
    env = {"PRIVOPS_CLOCK_OFFSET_DAYS": str(DAYS)}
    worker = start_worker(local_runtime, name, web_port=port(612), extra_env=env)
    try:
        status, body = wait_for(
            "the record to be deleted",
            lambda: (found := http_json(f"{worker.url}/requests/{request_id}"))[0] == 404 and found,
        )
        assert body["error"] == "unknown request"
        assert f"deleted {DAYS} days later" in body["reason"]
        out = request(worker, "status", request_id)
        assert out.returncode == 4, out.stdout + out.stderr
        assert "request_records.period_days" in " ".join(out.stderr.split())
    finally:
        worker.stop()

    deleted = [
        c.value
        for c in read_topic(local_runtime, AUDIT)
        if isinstance(c.value, r.AuditEvent)
        and c.value.request_id == request_id
        and c.value.action == "request_record_deleted"
    ]
    assert len(deleted) == 1
    assert f"kept {DAYS} days" in (deleted[0].reason or "")
    assert deleted[0].actor == "privops"
