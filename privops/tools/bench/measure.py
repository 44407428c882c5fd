"""What every scenario reports and how it reads the worker: results, percentiles, /metrics.

Nothing here asserts a time: results are reported, and a missed target says so.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from privops.adapters import metrics
from privops.core.vocab import System

Say = Callable[[str], None]


def quiet(_: str) -> None:
    """A `Say` that says nothing (for --json runs and tests)."""


@dataclass
class Result:
    """One line of the report. ``passed`` None means: no target applies to this line.

    ``cpu_us`` and ``baseline_cpu_us`` are CPU microseconds per ``cpu_per`` (an event, a
    command) of the measured process(es) and of the baseline: the figure that holds up
    when other work shares the machine.
    """

    scenario: str
    metric: str
    measured: float
    baseline: float | None
    unit: str
    target: str
    passed: bool | None
    details: dict[str, Any] = field(default_factory=dict)
    cpu_us: float | None = None
    baseline_cpu_us: float | None = None
    cpu_per: str = "event"
    baseline_name: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.measured / self.baseline

    def as_json(self) -> dict[str, Any]:
        """The row as JSON data; a figure that was not measured (NaN) is null."""
        data = asdict(self)
        data["ratio"] = self.ratio
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in data.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (a value that was measured, never an interpolation)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def http_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback)
        return str(resp.read().decode())


def upstream_consumed(metrics_text: str) -> int:
    """Sum of privops_events_consumed_total over the six business systems."""
    systems = {s.value for s in System}
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith("privops_events_consumed_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        source = labels.split('source="', 1)[1].split('"', 1)[0] if 'source="' in labels else ""
        if source in systems:
            total += float(value)
    return int(total)


# The worker's own timers (privops.adapters.metrics): seconds on its event loop by agent
# and stage, and the part of deciding spent opening encrypted personal fields.
OPEN_PERSONAL_FIELDS = "open_personal_fields"
WORKER_TIMERS: dict[str, tuple[str, dict[str, str]]] = {
    f"{agent}_{stage}": ("privops_agent_busy_seconds", {"agent": agent, "stage": stage})
    for agent in sorted(metrics.AGENTS)
    for stage in sorted(metrics.AGENT_STAGES)
} | {OPEN_PERSONAL_FIELDS: ("privops_personal_fields_open_seconds", {})}


def worker_timers(metrics_text: str) -> dict[str, float]:
    """The seconds so far of each of ``WORKER_TIMERS`` that the worker reports."""
    wanted = {
        (f"{name}_total", tuple(sorted(labels.items()))): key
        for key, (name, labels) in WORKER_TIMERS.items()
    }
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            key = wanted.get((sample.name, tuple(sorted(sample.labels.items()))))
            if key is not None:
                found[key] = float(sample.value)
    return found
