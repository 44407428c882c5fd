"""Periodic sweeps: overdue task answers, deadline alerts, follow-ups, lag, liveness.

Reads:  the requests table (to rebuild the indexes after recovery and after every
        rebalance: a worker schedules only the requests of the partitions it owns)
Writes: privops.internal.request-ticks, keyed by subject id (the workflow agent acts on
        them on the request's partition)
Timers never write tables: they only find what is due and hand it to the agent that
owns the request's partition. The global views are followed from here too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from faust.exceptions import ConsumerNotStarted
from faust.tables.manager import TableManager

from privops.adapters import metrics
from privops.core import sealing
from privops.core.request import RequestRecord
from privops.core.schedule import EXPIRIES_PER_SECOND, per_sweep
from privops.core.topics import REQUEST_TICKS
from streams import batching, health
from streams.app import app, settings
from streams.context import collaborators
from streams.io import emit_all
from streams.keystore import key_store, owned_partitions
from streams.tables import GLOBAL_VIEWS, request_index, requests

log = logging.getLogger(__name__)

HEALTH_INTERVAL_SECONDS = 5.0

# --- typed access to faust -------------------------------------------------------------
# faust's public protocols (TableManagerT, ConsumerT) do not declare what the worker
# needs (table recovery state, the consumer's read position), and app.timer/app.task are
# @no_type_check. These helpers are the only place that reaches past the protocols; a
# faust upgrade that moves any of it breaks here, and only here.

Job = Callable[[], Awaitable[None]]


def every(seconds: float) -> Callable[[Job], Job]:
    """``@app.timer(interval=seconds)``, typed."""
    register: Callable[[Job], Job] = app.timer(interval=seconds)
    return register


def at_start(job: Job) -> Job:
    """``@app.task``, typed."""
    registered: Job = app.task(job)
    return registered


async def run_paced(
    job: Job, seconds: float, sleep: Callable[[float], Awaitable[Any]], stopping: Callable[[], bool]
) -> None:
    """Run ``job`` each time ``seconds`` have passed since its last run ended, until
    ``stopping``: one run at a time, and a long run delays the next, never overlaps it."""
    while True:
        await sleep(seconds)
        if stopping():
            return
        await job()


def paced(seconds: float) -> Callable[[Job], Job]:
    """Like ``every``, with the pause between runs (an ``app.task`` looping on
    ``run_paced``) instead of Faust's fixed beat, whose timer (mode's ``Timer``) logs a
    WARNING, "overlapping", at every run longer than its interval. The sweep runs every
    tenth of a second and a run includes the index rebuild after each rebalance and the
    delivery of its ticks: a slow broker would have been reported ten times a second.
    The job itself is returned as it was (tests call it directly)."""

    def register(job: Job) -> Job:
        @functools.wraps(job)
        async def loop() -> None:
            await run_paced(job, seconds, app.sleep, lambda: bool(app.should_stop))

        at_start(loop)
        return job

    return register


def tables_recovered() -> bool:
    """No rebalance or table recovery is under way and every global view has read its
    topic: the worker holds its partitions' state and the global data in full."""
    recovery = cast(TableManager, app.tables).recovery
    recovered = recovery.completed.is_set() and not (recovery.in_recovery or app.rebalancing)
    return recovered and all(view.ready.is_set() for view in GLOBAL_VIEWS)


class _Fresh:
    """The subject partitions whose newest state this worker's tables hold while the
    recovery of an assignment is under way: those it held in full before the assignment
    and kept through it. Nobody decides anything on a partition during a rebalance, and a
    kept one was assigned to no one else, so what this worker holds of it is as new as
    anywhere; one it takes over (a standby's copy, or a local store older than the
    changelog) may be behind until the recovery completes. Before, every question of
    every subject waited for the whole recovery, a takeover's included (review, session
    32).

    Kept by Faust's signals: the assignment (``assign``) and the end of its recovery
    (``recovered``), each tagged with Faust's rebalance count, which its revocation
    raises (``App.on_rebalance_start``, in the same call that sets ``rebalancing``): a
    rebalance begun since the last assignment answers nothing, and the end of an older
    recovery, sent after it, marks nothing current. ``app.rebalancing`` itself stays
    True until the recovery ends (``Recovery.on_recovery_completed``), so it cannot tell
    the two phases apart. Read in faust-streaming's sources of the version
    ``streams.batching.check_faust`` pins (the worker refuses any other);
    tests/agents/test_serving.py drives the flags and signals in that version's order."""

    def __init__(self) -> None:
        self.assigned: frozenset[int] = frozenset()
        self.current: frozenset[int] = frozenset()
        self.count = -1  # Faust's rebalance count at the last assignment
        self.pending = False  # an assignment whose recovery has not completed

    def assign(self, partitions: frozenset[int], count: int) -> None:
        self.current &= partitions
        self.assigned = partitions
        self.count = count
        self.pending = True

    def recovered(self, count: int) -> None:
        if count == self.count:  # else: an older recovery's end, a rebalance since
            self.current = self.assigned
            self.pending = False


_fresh = _Fresh()


def serving(partition: int) -> bool:
    """Whether this worker may answer for the subjects of ``partition`` (as their owner)
    from its tables: a partition it kept through the last assignment (``_Fresh``), or any
    once nothing moves. Never once another rebalance began: another member may already
    own, and decide on, a partition this one has not heard it lost."""
    recovery = cast(TableManager, app.tables).recovery
    if app.rebalancing_count != _fresh.count or not recovery.completed.is_set():
        return False
    if not all(view.ready.is_set() for view in GLOBAL_VIEWS):
        return False
    if partition in _fresh.current:
        return True
    return not (app.rebalancing or recovery.in_recovery or _fresh.pending)


def _on_assigned(_sender: Any, /, *args: Any, **_: Any) -> None:
    """Faust's ``on_partitions_assigned``: the whole new assignment (eager), sent after
    the tables were told (their recovery starts from it)."""
    _fresh.assign(owned_partitions(args[0]), app.rebalancing_count)


def _on_recovered(*_: object, **__: object) -> None:
    """Faust's ``on_rebalance_complete``: an assignment's changelogs are read (unless a
    newer recovery was signalled meanwhile: then it is not this assignment's)."""
    if not cast(TableManager, app.tables).recovery.signal_recovery_start.is_set():
        _fresh.recovered(app.rebalancing_count)


app.on_partitions_assigned.connect(_on_assigned)
app.on_rebalance_complete.connect(_on_recovered)


# --- timers ----------------------------------------------------------------------------


REBUILD_SLICE = 1_000
"""Stored requests indexed between two yields to the event loop (~40 ms: ~37 µs each).
One pass over a million requests held the loop ~37 s after every rebalance: flush
deliveries, the key store and the next revocation's start all waited (review,
session 26)."""


async def rebuild() -> int | None:
    """Index every stored request (after table recovery, before the first sweep), a
    slice at a time; None when the partitions moved meanwhile (the next sweep starts
    again). What the agents track meanwhile is newer and stays (``track_stored``)."""
    schedule = collaborators().schedule
    generation = schedule.generation
    count = 0
    try:
        for raw in requests.values():
            # The schedule needs dates and states, never the sealed personal values.
            schedule.track_stored(RequestRecord.model_validate(sealing.REQUESTS.strip(raw)))
            count += 1
            if count % REBUILD_SLICE == 0:
                await asyncio.sleep(0)
                if schedule.generation != generation or app.rebalancing:
                    return None
    except RuntimeError as exc:  # the stores changed under the walk (a rebalance began)
        if "changed size during iteration" not in str(exc):
            raise
        return None
    schedule.rebuilt()
    return count


@paced(settings.sweep_interval_seconds)
async def sweep() -> None:
    """Hand what is due to the workflow, as ticks on each request's partition.

    A little at a time, often (``PRIVOPS_SWEEP_INTERVAL_SECONDS``, 0.1 s): at most
    ``PRIVOPS_SWEEP_MAX_RESENDS`` (10) overdue task answers and ``EXPIRIES_PER_SECOND``'s
    share of record expiries a sweep. A sweep a second handing out up to 100 re-sends
    at once put them ahead of the DPO's commands in one burst: with systems that never
    answer, the command bench's p99 had a median of 290 ms over eight runs, against 200
    ms paced so (session 47, docs/benchmarks.md). Deadline alerts and follow-ups are few
    and go at once."""
    schedule, clock = collaborators().schedule, collaborators().clock
    if not schedule.ready:
        if not tables_recovered():
            return
        count = await rebuild()
        if count is None:
            log.info("partitions moved while the indexes were rebuilt: again at the next sweep")
            return
        log.info("deadline and task indexes rebuilt from %d stored requests", count)
    ticks = []
    limit = settings.sweep_max_resends
    expiries = per_sweep(EXPIRIES_PER_SECOND, settings.sweep_interval_seconds)
    due = schedule.due(clock.now(), clock.today(), overdue_limit=limit, expiry_limit=expiries)
    for tick in due:
        # A finished request's expiry finds its subject in the request index.
        subject_id = schedule.subject_of(tick.request_id) or request_index.get(tick.request_id)
        if subject_id is None:  # its record is gone: nothing can be due for it
            continue
        ticks.append((subject_id, tick.to_record()))
    await emit_all(REQUEST_TICKS, ticks)


def forget_schedule(*_: object, **__: object) -> None:
    """Partitions moved: schedule again from the requests this worker owns now."""
    collaborators().schedule.clear()


app.on_partitions_assigned.connect(forget_schedule)


@every(5.0)
async def consumer_lag() -> None:
    consumer = app.consumer
    lags = []
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
        except (AssertionError, AttributeError, ConsumerNotStarted) as exc:
            # aiokafka asserts the partition is assigned; it may have just been revoked,
            # or not fetched yet (no state), or the consumer thread is still starting.
            log.debug("no highwater for %s: %s", tp, exc)
            continue
        position = batching.next_to_process(app, tp)
        if highwater is not None:
            lags.append((tp.topic, max(0, highwater - (position or 0))))
    metrics.record_consumer_lag(lags)


def not_serving() -> list[str]:
    """What keeps the worker from serving besides the broker, registry and agents (which
    ``streams.health`` probes): tables or global views still recovering, subject keys
    still loading. ``/health`` answers 503 for them, and ``privops_worker_ready`` is 0."""
    problems = []
    if not tables_recovered():
        problems.append("tables recovering")
    if not key_store().ready:
        problems.append("subject keys loading")
    return problems


@every(HEALTH_INTERVAL_SECONDS)
async def probe_health() -> None:
    await health.refresh(not_serving)


@at_start
async def first_health_check() -> None:
    await health.refresh(not_serving)


@at_start
async def follow_global_views() -> None:
    await asyncio.gather(*(view.follow() for view in GLOBAL_VIEWS))
