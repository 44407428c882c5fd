"""Benchmarks for the DESIGN.md section 9 targets (`privops bench`).

Every scenario measures the real thing and a baseline in the same run on the same
machine, and reports both with their ratio and with the CPU microseconds per event (or
command) each spent. Kafka scenarios run against a private local runtime (own home
directory, own ports: never a developer's broker) that the bench starts and stops
itself, and real `privops worker` subprocesses.

Timing is wall clock (``time.perf_counter``) around the measured work only; set-up
(producing input, seeding subjects) is outside the window. CPU is the worker process's
user+system time over the same window (/proc), and the baseline's own process time.
Nothing here asserts a time: results are reported, and a missed target says so.

One module per scenario (consent_throughput, command_latency, restart, sweep_scale) on
shared parts: ``measure`` (results, percentiles, /metrics), ``cpu`` (CPU accounting),
``inputs`` (the events fed in), ``kafka_io`` (plain clients), ``baselines`` (the consent
baselines), ``runtime`` (the private runtime and workers), ``group`` (N workers of one
group), ``report`` (the table's cells), ``driver`` (which scenarios run at what sizes).
"""

from privops.tools.bench.command_latency import command_latency
from privops.tools.bench.consent_throughput import consent_throughput
from privops.tools.bench.driver import SCENARIOS, Sizes, parse_worker_counts, run
from privops.tools.bench.inputs import consent_events
from privops.tools.bench.measure import (
    WORKER_TIMERS,
    Result,
    Say,
    percentile,
    quiet,
    upstream_consumed,
    worker_timers,
)
from privops.tools.bench.restart import restart
from privops.tools.bench.runtime import (
    DEFAULT_PORT_BASE,
    MAX_WORKERS,
    BenchRuntime,
    Stopped,
    bench_runtime,
)
from privops.tools.bench.sweep_scale import sweep_scale

__all__ = [
    "DEFAULT_PORT_BASE",
    "MAX_WORKERS",
    "SCENARIOS",
    "WORKER_TIMERS",
    "BenchRuntime",
    "Result",
    "Say",
    "Sizes",
    "Stopped",
    "bench_runtime",
    "command_latency",
    "consent_events",
    "consent_throughput",
    "parse_worker_counts",
    "percentile",
    "quiet",
    "restart",
    "run",
    "sweep_scale",
    "upstream_consumed",
    "worker_timers",
]
