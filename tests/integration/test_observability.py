"""Issue 6 acceptance: a real Prometheus scrapes a real worker that processed traffic;
every dashboard panel query and alert expression runs through its HTTP API; and no raw
personal data reaches the worker's log, the audit topic or the metrics."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from privops.adapters.settings import Settings
from privops.connectors.holds import Held
from privops.connectors.reference import reference_connector
from privops.connectors.sdk import HoldReader, serve_metrics
from privops.core import records as r
from privops.core.topics import AUDIT
from privops.core.vocab import Channel, Purpose, System
from tests.conftest import REPO, WorkerProcess, port
from tests.integration.helpers import Subject, ToProduce, http_json, produce, read_topic, wait_for
from tests.integration.promql_check import check_queries

pytestmark = pytest.mark.integration

PROM_PORT = port(90)
CONNECTOR_METRICS_PORT = port(91)
DEPLOY = REPO / "deploy"


@pytest.fixture(scope="module")
def prometheus(worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus on loopback, scraping the test worker with privops' own rules."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: `make test` installs Debian's package"
    root = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    targets = {"privops-connectors": f"127.0.0.1:{connector_metrics(root)}"}
    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
        job["scrape_timeout"] = "1s"
        target = targets.get(job["job_name"], f"127.0.0.1:{worker.web_port}")
        job["static_configs"] = [{"targets": [target]}]
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (root / "prometheus.log").open("ab")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROM_PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{PROM_PORT}"
    try:
        wait_for("Prometheus to be ready", lambda: _ok(f"{url}/-/ready"), timeout=60)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def connector_metrics(root: Path) -> int:
    """The connector SDK's metrics, served as a system's connector serves them: a
    reference connector's legal-holds reader made (its gauges are set when it is built,
    before it reads), for the privops-connectors alerts. Its port."""
    connector = reference_connector(System.telephony, root / "telephony")

    async def no_decode(_: bytes | None) -> r.Record:
        raise AssertionError("not read: the reader is only built")

    async def no_open(_: Held, __: str) -> Held:
        raise AssertionError("not read: the reader is only built")

    HoldReader(connector, no_decode, no_open)
    serve_metrics(CONNECTOR_METRICS_PORT)
    return CONNECTOR_METRICS_PORT


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def traffic(local_runtime: Settings, worker: WorkerProcess, uid: str) -> list[Subject]:
    """Consent changes, a dead letter and an erasure request with tasks in flight."""
    subjects = [Subject(uid, n) for n in range(3)]
    items: list[ToProduce] = [("crm.events", "x", b"not avro " + uid.encode())]
    for s in subjects:
        items += [
            s.event(r.CustomerCreated, System.crm),
            s.event(
                r.ConsentGiven,
                System.marketing,
                minutes=1,
                purpose=Purpose.marketing,
                channel=Channel.email,
            ),
            s.event(r.StopReplyReceived, System.marketing, minutes=2, campaign_id="C"),
        ]
    produce(local_runtime, items)
    wait_for(
        "the subjects to be known",
        lambda: all(http_json(f"{worker.url}/consent/{s.id}")[0] == 200 for s in subjects),
    )
    env = {**worker.env}
    for args in (
        ["erase", "--subject", subjects[0].id, "--verified-now"],
        [
            "rectify",
            "--subject",
            subjects[1].id,
            "--verified-now",
            "--set",
            "name=Jane Rectified-Example",
            "--set",
            f"email=new.{subjects[1].email}",
        ],
        ["access", "--subject", subjects[2].id],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "privops.cli.main", "request", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
    return subjects


def test_every_panel_and_alert_query_runs_against_real_prometheus(
    local_runtime: Settings, worker: WorkerProcess, prometheus: str, uid: str
) -> None:
    subjects = traffic(local_runtime, worker, uid)
    dashboards = DEPLOY / "grafana" / "dashboards"
    rules = DEPLOY / "prometheus" / "alerts.yml"
    problems: list[str] = []

    def clean() -> bool:
        problems[:] = check_queries(prometheus, dashboards, rules)
        return not problems

    try:
        wait_for("every dashboard panel to return data", clean, timeout=120, interval=3)
    except AssertionError:
        assert problems == []

    # No raw personal data in the worker's log, the audit trail or the metrics.
    time.sleep(2)
    feed = [s.email for s in subjects] + [s.phone for s in subjects]
    feed += ["Jane Rectified-Example", f"new.{subjects[1].email}"]
    log = worker.log.read_text(errors="replace")
    audit = "\n".join(
        c.value.model_dump_json()
        for c in read_topic(local_runtime, AUDIT)
        if isinstance(c.value, r.AuditEvent)
    )
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert audit
    for text, where in ((log, "worker log"), (audit, "audit topic"), (metrics, "metrics")):
        for value in feed:
            assert value not in text, f"raw personal data in the {where}"
    assert os.path.getsize(worker.log) > 0
