"""Which scenarios run, at what sizes, on one shared runtime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from privops.tools.bench.command_latency import command_latency
from privops.tools.bench.consent_throughput import consent_throughput
from privops.tools.bench.measure import Result, Say, quiet
from privops.tools.bench.restart import restart
from privops.tools.bench.runtime import bench_runtime
from privops.tools.bench.sweep_scale import sweep_scale

SCENARIOS: tuple[str, ...] = ("consent-throughput", "command-latency", "restart", "sweep-scale")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs (the `privops bench` options and their defaults)."""

    events: int = 200_000
    subjects: int = 20_000
    rate: float = 100.0
    duration: float = 20.0
    restart_subjects: int = 100_000
    open_requests: int = 1_000_000
    timeout: float = 120.0


def run(scenarios: Sequence[str], sizes: Sizes, say: Say = quiet) -> list[Result]:
    """Run the named scenarios; Kafka ones share one private runtime and worker."""
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    results: list[Result] = []
    kafka = [s for s in scenarios if s != "sweep-scale"]
    if kafka:
        with bench_runtime(say) as rt:
            if "consent-throughput" in kafka:
                results += consent_throughput(
                    rt, events=sizes.events, subjects=sizes.subjects, timeout=sizes.timeout
                )
            if "command-latency" in kafka:
                results += command_latency(rt, rate=sizes.rate, duration=sizes.duration)
            if "restart" in kafka:
                results += restart(rt, subjects=sizes.restart_subjects)
    if "sweep-scale" in scenarios:
        results += sweep_scale(open_requests=sizes.open_requests, say=say)
    return results
