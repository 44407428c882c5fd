"""Which scenarios run, at what sizes, on one shared runtime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from privops.tools.bench.command_latency import WARMUP_S, command_latency
from privops.tools.bench.consent_throughput import consent_throughput
from privops.tools.bench.measure import Result, Say, quiet
from privops.tools.bench.restart import restart
from privops.tools.bench.runtime import DEFAULT_PORT_BASE, MAX_WORKERS, bench_runtime
from privops.tools.bench.sweep_scale import sweep_scale

SCENARIOS: tuple[str, ...] = ("consent-throughput", "command-latency", "restart", "sweep-scale")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs (the `privops bench` options and their defaults)."""

    events: int = 200_000
    subjects: int = 20_000
    rate: float = 100.0
    duration: float = 20.0
    consent_load: float = 0.0
    warmup: float = WARMUP_S
    restart_subjects: int = 100_000
    restart_budget: float = 600.0
    open_requests: int = 1_000_000
    timeout: float = 120.0
    workers: tuple[int, ...] = (1,)
    encrypt: bool = False


def parse_worker_counts(values: Sequence[str]) -> tuple[int, ...]:
    """Worker counts from `--workers` values: each a number or a comma list ("1,2").

    Order kept, repeats dropped; each count runs as its own group of fresh workers.
    Raises ValueError for anything but whole numbers from 1 to MAX_WORKERS.
    """
    counts: list[int] = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
                raise ValueError(f"--workers takes whole numbers from 1 to {MAX_WORKERS}: {part!r}")
            if int(text) not in counts:
                counts.append(int(text))
    if not counts:
        raise ValueError("--workers needs at least one count")
    return tuple(counts)


def run(
    scenarios: Sequence[str],
    sizes: Sizes,
    say: Say = quiet,
    *,
    port_base: int = DEFAULT_PORT_BASE,
) -> list[Result]:
    """Run the named scenarios; Kafka ones share one private runtime."""
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    results: list[Result] = []
    kafka = [s for s in scenarios if s != "sweep-scale"]
    if kafka:
        with bench_runtime(say, port_base) as rt:
            if "consent-throughput" in kafka:
                results += consent_throughput(
                    rt,
                    events=sizes.events,
                    subjects=sizes.subjects,
                    timeout=sizes.timeout,
                    workers=sizes.workers,
                    encrypt=sizes.encrypt,
                )
            if "command-latency" in kafka:
                results += command_latency(
                    rt,
                    rate=sizes.rate,
                    duration=sizes.duration,
                    consent_load=sizes.consent_load,
                    warmup=sizes.warmup,
                )
            if "restart" in kafka:
                results += restart(rt, subjects=sizes.restart_subjects, budget=sizes.restart_budget)
    if "sweep-scale" in scenarios:
        results += sweep_scale(open_requests=sizes.open_requests, say=say)
    return results
