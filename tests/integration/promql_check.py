"""Run every dashboard panel query and alert expression through a real Prometheus.

Not a test: the integration test that starts Prometheus scraping a real worker calls
``check_queries``. The parsing helpers are shared with the unit tests that check the
dashboards and rules statically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
}
PROMQL_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)

_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


@dataclass(frozen=True)
class Query:
    origin: str  # "<dashboard file> / <panel title> / <refId>" or "alert <name>"
    expr: str


def substitute(expr: str) -> str:
    """Replace Grafana variables: built-ins by fixed durations, template variables by .*"""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return GRAFANA_BUILTINS.get(name, ".*")

    return _VARIABLE.sub(repl, expr)


def metric_names_in(expr: str) -> set[str]:
    """Metric names an expression selects (strings, matchers, ranges and label lists dropped)."""
    text = _STRING.sub('""', substitute(expr))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows are layout; collapsed rows hold nested panels)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def load_dashboards(dashboards_dir: str | Path) -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text())
        for path in sorted(Path(dashboards_dir).glob("*.json"))
    }


def dashboard_queries(dashboards_dir: str | Path) -> list[Query]:
    queries = []
    for file_name, dashboard in load_dashboards(dashboards_dir).items():
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                origin = f"{file_name} / {panel.get('title')} / {target.get('refId')}"
                queries.append(Query(origin, target.get("expr", "")))
    return queries


def alert_queries(rules_file: str | Path) -> list[Query]:
    rules = yaml.safe_load(Path(rules_file).read_text())
    return [
        Query(f"alert {rule['alert']}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def _query(client: httpx.Client, expr: str) -> tuple[list[Any] | None, str | None]:
    response = client.get("/api/v1/query", params={"query": expr})
    try:
        body = response.json()
    except ValueError:
        return None, f"HTTP {response.status_code}: {response.text[:200]}"
    if body.get("status") != "success":
        return None, f"{body.get('errorType')}: {body.get('error')}"
    data = body["data"]
    result = data["result"]
    if data["resultType"] == "scalar":
        return [result], None
    return list(result), None


def check_queries(prom_url: str, dashboards_dir: str | Path, rules_file: str | Path) -> list[str]:
    """Problems found: queries that do not parse, panels with no data, alert metrics absent.

    Alert expressions normally return nothing (nothing is firing), so for them each metric
    they reference must have at least one series instead.
    """
    problems: list[str] = []
    with httpx.Client(base_url=prom_url.rstrip("/"), timeout=10) as client:
        for query in dashboard_queries(dashboards_dir):
            expr = substitute(query.expr)
            if not expr.strip():
                problems.append(f"{query.origin}: empty expr")
                continue
            result, error = _query(client, expr)
            if error:
                problems.append(f"{query.origin}: {error} in {expr!r}")
            elif not result:
                problems.append(f"{query.origin}: no data for {expr!r}")
        for query in alert_queries(rules_file):
            _, error = _query(client, query.expr)
            if error:
                problems.append(f"{query.origin}: {error}")
                continue
            for name in sorted(metric_names_in(query.expr)):
                result, error = _query(client, f'count({{__name__="{name}"}})')
                if error or not result:
                    problems.append(f"{query.origin}: metric {name} has no series")
    return problems
