"""Prometheus config, alert rules and Grafana dashboards, checked with the real promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from privops.adapters import metrics
from privops.connectors import metrics as connector_metrics
from tests.integration.promql_check import (
    alert_queries,
    dashboard_queries,
    iter_panels,
    load_dashboards,
    metric_names_in,
)

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARDS_DIR = ROOT / "deploy" / "grafana" / "dashboards"
RULES = PROMETHEUS_DIR / "alerts.yml"
PROMETHEUS_BUILTINS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
ALERTS = {
    "PrivopsDeadlineApproaching",
    "PrivopsDeadlineBreached",
    "PrivopsComplaintResponseOverdue",
    "PrivopsTaskEscalated",
    "PrivopsDeadLettersGrowing",
    "PrivopsConsumerLagHigh",
    "PrivopsWorkerDown",
    "PrivopsWorkerNotReady",
    "PrivopsCommandTextUnsealed",
    "PrivopsAccessResponseForReview",
    "PrivopsDataMapBehind",
    "PrivopsConnectorIgnoresLegalHolds",
    "PrivopsConnectorHoldsNotRead",
    "PrivopsConnectorDown",
    "PrivopsRecipientNoticeForReview",
    "PrivopsAccessResponseAwaitingReview",
    "PrivopsIdentityAwaited",
    "PrivopsSignersDiffer",
    "PrivopsSignersUntrusted",
    "PrivopsEventPartsNotTaken",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(exe).exists(), "promtool missing: install Debian's prometheus package"
    return subprocess.run(
        [exe, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_exists_and_is_unit_tested() -> None:
    import yaml

    rules = yaml.safe_load(RULES.read_text())["groups"]
    by_name = {r["alert"]: r for g in rules for r in g["rules"]}
    assert set(by_name) == ALERTS
    for name, rule in by_name.items():
        assert rule.get("for"), name
        assert rule["labels"].get("severity") in {"warning", "critical"}, name
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key), (name, key)
        assert "privops " in rule["annotations"]["runbook"], name

    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for name in ALERTS:
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name} never fires in tests"
        assert any(not case["exp_alerts"] for case in mine), f"{name} never quiet in tests"


def test_legal_holds_read_is_the_least_ready_instance_of_a_system() -> None:
    """A system's deletion by age runs only while every instance of its connector has
    read its holds (docs/connectors.md): the alert and the panel take the least ready
    one. With max, one stuck instance beside a ready one showed "read" (review, session
    44); alerts_test.yml fires the alert for such a pair."""
    import yaml

    rules = yaml.safe_load(RULES.read_text())["groups"]
    by_name = {r["alert"]: r for g in rules for r in g["rules"]}
    assert by_name["PrivopsConnectorHoldsNotRead"]["expr"].startswith(
        "min by (system) (privops_connector_holds_ready)"
    )
    drawn = [
        target["expr"]
        for dashboard in load_dashboards(DASHBOARDS_DIR).values()
        for panel in iter_panels(dashboard)
        for target in panel["targets"]
        if "privops_connector_holds_ready" in target["expr"]
    ]
    assert drawn
    assert all(expr.startswith("min by (system) (") for expr in drawn), drawn


def test_dashboards_are_complete() -> None:
    dashboards = load_dashboards(DASHBOARDS_DIR)
    assert set(dashboards) == {"ops-overview.json", "dpo-view.json"}
    for file_name, dashboard in dashboards.items():
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert "datasource" in variables, file_name
        assert dashboard["schemaVersion"] >= 36
        panels = list(iter_panels(dashboard))
        assert panels, file_name
        for panel in panels:
            where = f"{file_name} / {panel.get('title')!r}"
            assert panel.get("title"), where
            assert panel.get("description"), where
            assert panel["datasource"]["uid"] == "${datasource}", where
            assert panel["fieldConfig"]["defaults"].get("unit"), where
            assert panel.get("targets"), where
            for target in panel["targets"]:
                assert target.get("expr", "").strip(), where
                for var in ("$system", "$type"):
                    if var in target["expr"]:
                        assert var[1:] in variables, (where, var)


def test_no_two_panels_draw_the_same_query() -> None:
    """A panel repeating another's query as the same kind of panel tells the reader
    nothing new ("Processing rate" drew "Events in per source" again until session 25).
    A number and its graph over time may share one."""
    for file_name, dashboard in load_dashboards(DASHBOARDS_DIR).items():
        seen: dict[tuple[str, str], str] = {}
        for panel in iter_panels(dashboard):
            for target in panel["targets"]:
                drawn = (panel["type"], " ".join(target["expr"].split()))
                assert drawn not in seen, (file_name, panel["title"], "repeats", seen.get(drawn))
                seen[drawn] = panel["title"]


def faust_sensor_names() -> frozenset[str]:
    from faust.sensors.prometheus import FaustMetrics

    registry = CollectorRegistry()
    FaustMetrics.create(registry, metrics.FAUST_SENSOR_PREFIX)
    return metrics.metric_names(registry)


def test_every_referenced_metric_is_defined() -> None:
    connectors = metrics.metric_names(connector_metrics.REGISTRY)
    known = metrics.metric_names() | connectors | faust_sensor_names() | PROMETHEUS_BUILTINS
    queries = dashboard_queries(DASHBOARDS_DIR) + alert_queries(RULES)
    assert queries
    for query in queries:
        names = metric_names_in(query.expr)
        assert names, query
        unknown = names - known
        assert not unknown, f"{query.origin}: undefined metrics {sorted(unknown)}"
