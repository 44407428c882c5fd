"""Scenario restart: a worker holding 1,000,000 consent subjects serves again in <= 60 s.

The subjects reach the worker's tables the way production fills them: as events it
consumes. They are loaded a slice at a time, each slice consumed before the next, within
a time budget; when the worker cannot take a million in that budget, the restart is
measured with what it took (said in the report, with the loading rate and its CPU per
event) and the slow part is the worker's ingest, not the restart. Slices also keep the
bench's memory flat. The restart's baseline is the restarted worker's first /health 200.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass

from privops.tools.bench.cpu import per_unit_us
from privops.tools.bench.inputs import consents_given, encode_events, loaded_subject
from privops.tools.bench.kafka_io import produce
from privops.tools.bench.measure import Result
from privops.tools.bench.runtime import (
    WORKER_START_TIMEOUT_S,
    BenchRuntime,
    WorkerProc,
    wait_consumed,
)
from privops.tools.worker_process import http_status

TARGET_SUBJECTS = 1_000_000
TARGET_SECONDS = 60.0
FIRST_SLICE = 10_000
MAX_SLICE = 100_000
# Each later slice is about this many seconds of the worker's measured rate, so the load
# ends close to its budget.
SLICE_SECONDS = 30.0


@dataclass
class Load:
    """How far loading got: subjects the worker took, wall and CPU time it took."""

    requested: int
    loaded: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    complete_slices_end: int = 0
    backlog: bool = False

    @property
    def rate(self) -> float | None:
        return self.loaded / self.seconds if self.seconds > 0 else None


def next_slice(load: Load) -> int:
    """How many subjects to produce next: small first, then ~SLICE_SECONDS at the rate."""
    left = load.requested - load.loaded
    if load.rate is None:
        return min(left, FIRST_SLICE)
    return max(1, min(left, MAX_SLICE, int(load.rate * SLICE_SECONDS)))


def _load(rt: BenchRuntime, worker: WorkerProc, subjects: int, budget: float, tag: str) -> Load:
    """Produce consents slice by slice; stop at `subjects` or once `budget` s are spent.

    The time and CPU include producing each slice: the worker's rate while the bench
    also produces, which is what the loading costs on this machine.
    """
    load = Load(subjects)
    started = time.perf_counter()
    cpu_started = worker.cpu().total
    while load.loaded < subjects and time.perf_counter() - started < budget:
        size = next_slice(load)
        before = worker.consumed()
        numbers = range(load.loaded, load.loaded + size)
        asyncio.run(produce(rt.bootstrap, encode_events(rt.serde, consents_given(numbers, tag))))
        # Generous: a slice is ~SLICE_SECONDS of work; a stall must not hang the bench.
        consumed, _ = wait_consumed([worker], before + size, 4 * SLICE_SECONDS + 60, rt.say)
        load.loaded += max(0, min(size, consumed - before))
        load.seconds = time.perf_counter() - started
        load.cpu_seconds = worker.cpu().total - cpu_started
        if consumed - before < size:
            load.backlog = True
            break
        load.complete_slices_end = load.loaded
        rt.say(f"restart: {load.loaded:,}/{subjects:,} subjects loaded ({load.rate:,.0f}/s)")
    return load


def _query(tag: str, load: Load) -> str | None:
    """A consent query for a subject known to be in the tables (its slice was consumed);
    None when no slice was."""
    if load.complete_slices_end == 0:
        return None
    known = loaded_subject(tag, load.complete_slices_end - 1)
    return f"/consent/{known}?purpose=marketing&channel=email"


@dataclass(frozen=True)
class Restarted:
    """Seconds from process start to the consent query's 200 (None: never, or no query)
    and to /health 200, and the CPU seconds the worker used by then."""

    serving: float | None
    healthy: float
    cpu_seconds: float
    stopped_in: float
    exit_code: int | None


def _restart(rt: BenchRuntime, query: str | None) -> Restarted:
    """Stop the worker (SIGTERM) and start it again on the same data dir."""
    old = rt.workers[0].proc if rt.workers else None
    stopping = time.perf_counter()
    rt.stop_workers()
    stopped_in = time.perf_counter() - stopping
    new = WorkerProc.start(rt, rt.data_dir(0), web_port=rt.web_port(0), wait=False)
    rt.workers = [new]
    healthy = new.wait_healthy(WORKER_START_TIMEOUT_S)
    serving = None
    while query and time.perf_counter() - new.started < WORKER_START_TIMEOUT_S:
        if http_status(new.url + query) == 200:
            serving = time.perf_counter() - new.started
            break
        time.sleep(0.05)
    exit_code = None if old is None else old.returncode
    return Restarted(serving, healthy, new.cpu().total, stopped_in, exit_code)


def restart(rt: BenchRuntime, *, subjects: int = 100_000, budget: float = 600.0) -> list[Result]:
    """Target: a worker with 1,000,000 consent subjects serves again in <= 60 s."""
    tag = uuid.uuid4().hex[:6]
    worker = rt.ensure_worker()
    rt.say(f"restart: loading {subjects:,} subjects (one ConsentGiven each), budget {budget:.0f}s")
    load = _load(rt, worker, subjects, budget, tag)
    rt.subjects_loaded += load.loaded
    if load.loaded < subjects:
        rt.say(f"only {load.loaded:,} of {subjects:,} subjects loaded in {load.seconds:.0f}s")
    query = _query(tag, load)
    deadline = time.perf_counter() + 60
    while query and http_status(worker.url + query) != 200 and time.perf_counter() < deadline:
        time.sleep(0.5)
    rt.say(f"stopping the worker ({rt.subjects_loaded:,} subjects in its tables), restarting it")
    size_mb = sum(f.stat().st_size for f in rt.data_dir(0).rglob("*") if f.is_file()) / 1e6
    again = _restart(rt, query)
    total = rt.subjects_loaded
    if again.serving is None:
        passed: bool | None = False
        why = "no subject was loaded" if query is None else "the consent query never answered"
    else:
        passed = again.serving <= TARGET_SECONDS if total >= TARGET_SUBJECTS else None
        why = "target is for 1,000,000 subjects; measured at the size shown"
    return [
        Result(
            "restart",
            f"seconds to serving ({total:,} subjects)",
            math.nan if again.serving is None else again.serving,
            again.healthy,
            "s",
            "<= 60 s at 1,000,000",
            passed,
            {
                "subjects_in_tables": total,
                "requested_subjects": subjects,
                "restart_cpu_seconds": round(again.cpu_seconds, 2),
                # A worker killed at the end of WorkerProcess.stop's wait never left its
                # group: the new one then waits out the session timeout to be assigned.
                "old_worker_stop_seconds": round(again.stopped_in, 1),
                "old_worker_exit_code": again.exit_code,
                "table_dir_mb": round(size_mb, 1),
                "backlog_left_at_restart": load.backlog,
                "note": why,
            },
            baseline_name="first /health 200",
        ),
        Result(
            "restart",
            "loading the subjects (producing included)",
            load.rate or 0.0,
            None,
            "events/s",
            "",
            None,
            {"loaded": load.loaded, "seconds": round(load.seconds, 1), "budget_s": budget},
            cpu_us=per_unit_us(load.cpu_seconds, load.loaded),
        ),
    ]
