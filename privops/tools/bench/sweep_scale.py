"""Scenario sweep-scale: the deadline sweep's cost grows with the number due, not the
number open, and each open request costs <= 1 KB of memory. Pure Python, no Kafka.

The baseline is the naive sweep: look at every open request's next firing date.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

from privops.core.datamap import DEFAULT_REQUEST_RECORD_DAYS
from privops.core.sweep import DeadlineIndex
from privops.core.vocab import RequestState, RequestType, System, TaskAction, TaskState
from privops.core.workflow import RequestRecord, TaskRecord
from privops.tools.bench.measure import Result, Say, quiet

BYTES_PER_REQUEST = 1024
_TODAY = date(2026, 3, 2)


@contextmanager
def _traced() -> Iterator[list[int]]:
    """Bytes allocated (and still held) inside the block, in the list it yields."""
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    used: list[int] = []
    try:
        yield used
    finally:
        used.append(tracemalloc.get_traced_memory()[0] - start)
        tracemalloc.stop()


def _memory_result(metric: str, used: int, open_requests: int) -> Result:
    per = used / open_requests
    return Result(
        "sweep-scale",
        metric,
        per,
        None,
        "B",
        f"<= {BYTES_PER_REQUEST} B",
        per <= BYTES_PER_REQUEST,
        {"open": open_requests, "total_mb": used / 1e6},
    )


def _request_ids(n: int, tag: str) -> list[str]:
    return [f"REQ-{tag}{i:08X}" for i in range(n)]


def _deadline_index(ids: Sequence[str], due_today: int, today: date) -> DeadlineIndex:
    """`len(ids)` open requests; the first `due_today` have an alert firing today."""
    index = DeadlineIndex()
    far = today + timedelta(days=60)
    for i, rid in enumerate(ids):
        index.add(rid, today + timedelta(days=7) if i < due_today else far + timedelta(i % 300))
    return index


def _sweep(open_requests: int, due: int, today: date) -> Result:
    """One sweep with `due` of `open_requests` firing, timed against the naive sweep."""
    ids = _request_ids(open_requests, f"K{due}-")
    index = _deadline_index(ids, due, today)
    naive_state = {rid: (index.due(rid) or today).toordinal() - 7 for rid in ids}
    t0 = time.perf_counter()
    naive_due = [rid for rid, fire in naive_state.items() if fire <= today.toordinal()]
    naive_s = time.perf_counter() - t0
    pops_before = index.pops
    t0 = time.perf_counter()
    fired = index.pop_due(today)
    sweep_s = time.perf_counter() - t0
    return Result(
        "sweep-scale",
        f"sweep with {due:,} due of {open_requests:,} open",
        sweep_s * 1000,
        naive_s * 1000,
        "ms",
        "grows with due",
        None,
        {
            "fired": len(fired),
            "heap_pops": index.pops - pops_before,
            "naive_examined": len(naive_state),
            "naive_found": len(naive_due),
        },
    )


def sweep_scale(
    *,
    open_requests: int = 1_000_000,
    due_counts: Sequence[int] = (0, 100, 10_000),
    schedule_sample: int = 100_000,
    say: Say = quiet,
) -> list[Result]:
    """Target: sweep cost grows with the number due, not open; <= 1 KB per open request."""
    say(f"sweep-scale: DeadlineIndex memory with {open_requests:,} open requests")
    with _traced() as used:
        index = _deadline_index(_request_ids(open_requests, "A"), 0, _TODAY)
    del index
    results = [_memory_result("DeadlineIndex bytes per open request", used[0], open_requests)]
    if schedule_sample:
        # Per-request memory is linear; tracemalloc makes 1M pydantic records slow.
        results.append(_schedule_memory(min(schedule_sample, open_requests), _TODAY, say))

    due_counts = [min(k, open_requests) for k in due_counts]
    sweeps = [_sweep(open_requests, k, _TODAY) for k in due_counts]
    pops = [r.details["heap_pops"] for r in sweeps]
    grows = all(p == k for p, k in zip(pops, due_counts, strict=True))
    return [
        *results,
        *sweeps,
        Result(
            "sweep-scale",
            "heap pops == number due (work independent of open)",
            float(grows),
            None,
            "bool",
            "true",
            grows,
            {"pops": pops},
        ),
    ]


def _open_erasure(i: int, today: date, now: datetime, check: datetime) -> RequestRecord:
    """An erasure awaiting three systems, built without validation (memory is measured)."""
    rid = f"REQ-S{i:011X}"
    tasks = {
        f"{rid}:{s.value}:erase": TaskRecord.model_construct(
            task_id=f"{rid}:{s.value}:erase",
            system=s,
            action=TaskAction.erase,
            state=TaskState.sent,
            attempts=1,
            next_check_at=check,
        )
        for s in (System.orders, System.crm, System.marketing)
    }
    return RequestRecord.model_construct(
        request_id=rid,
        request_type=RequestType.erasure,
        subject_id=f"s-{i}",
        actor="bench",
        received_on=today,
        created_at=now,
        state=RequestState.awaiting_systems,
        due_on=today + timedelta(days=40 + i % 200),
        tasks=tasks,
        followups=[],
    )


def _schedule_memory(open_requests: int, today: date, say: Say) -> Result:
    """Memory the worker's Schedule keeps per open erasure awaiting three systems."""
    # streams.schedule is the worker's own index; the bench is a composition root like the
    # CLI's `worker` verb, so it imports it here, never at module level.
    from streams.schedule import Schedule

    say(f"sweep-scale: Schedule memory with {open_requests:,} open erasures (3 tasks each)")
    now = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    check = now + timedelta(days=30)
    schedule = Schedule((7, 3, 1), record_days=DEFAULT_REQUEST_RECORD_DAYS)
    with _traced() as used:
        for i in range(open_requests):
            schedule.track(_open_erasure(i, today, now, check))
    return _memory_result(
        "Schedule bytes per open request (3 pending tasks)", used[0], open_requests
    )
