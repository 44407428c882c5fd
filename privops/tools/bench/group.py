"""N worker processes of one consumer group over the same backlog: the scale-out figure.

The workers start together (a new group, empty tables, offset 0), so they join one
group and share the partitions. The window opens when the last of them answers /health
and closes when together they have consumed the whole backlog; each worker's share is
what it consumed and the CPU it used inside the window, so the per-worker CPU per event
shows whether work is split or repeated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from privops.tools.bench.cpu import per_unit_us
from privops.tools.bench.runtime import BenchRuntime, WorkerProc, consumed_by, wait_consumed

T = TypeVar("T")

# Fewer events than this in the window (or than a tenth of the backlog) give no rate: a
# worker slow to answer ready (a cold start) may have consumed most of the backlog first.
MIN_WINDOW_EVENTS = 1_000


@dataclass(frozen=True)
class WorkerShare:
    """What one worker consumed inside the window, the CPU seconds it used there, and
    the seconds its own timers counted there (``measure.WORKER_TIMERS``: its event loop
    by agent and stage; empty if it did not answer)."""

    events: int
    cpu_seconds: float
    ready_seconds: float
    timers: Mapping[str, float] = field(default_factory=dict)

    @property
    def cpu_us(self) -> float | None:
        return per_unit_us(self.cpu_seconds, self.events)


@dataclass(frozen=True)
class GroupRun:
    """One measured window of a group of workers over a backlog of `backlog` events."""

    shares: tuple[WorkerShare, ...]
    seconds: float
    backlog: int
    consumed: int
    before_window: int

    @property
    def events(self) -> int:
        return self.consumed - self.before_window

    @property
    def rate(self) -> float:
        return self.rate_of(self.events)

    def rate_of(self, events: int) -> float:
        """``events`` (the group's, or one worker's share) per second of the window; NaN
        when the window held too few to tell."""
        if not self.measurable:
            return math.nan
        return events / self.seconds if self.seconds > 0 else 0.0

    @property
    def measurable(self) -> bool:
        return self.events >= max(MIN_WINDOW_EVENTS, self.backlog // 10)

    @property
    def cpu_seconds(self) -> float:
        return sum(share.cpu_seconds for share in self.shares)

    @property
    def cpu_us(self) -> float | None:
        """CPU of every worker per event the group consumed in the window."""
        return per_unit_us(self.cpu_seconds, sum(share.events for share in self.shares))

    @property
    def finished(self) -> bool:
        return self.consumed >= self.backlog

    def timers_us(self) -> dict[str, float]:
        """Each worker timer as µs per event the group consumed in the window (wall time
        on the workers' event loops, so waits inside a stage count): where an event's
        time goes, measured by the worker itself. Only timers every worker reported."""
        if not self.shares:
            return {}
        events = sum(share.events for share in self.shares)
        names = set.intersection(*(set(share.timers) for share in self.shares))
        out: dict[str, float] = {}
        for name in sorted(names):
            us = per_unit_us(sum(share.timers[name] for share in self.shares), events)
            if us is not None:
                out[name] = round(us, 1)
        return out


def _each(workers: Sequence[WorkerProc], read: Callable[[WorkerProc], T], gone: T) -> list[T]:
    """``read`` of each worker, ``gone`` for one that does not answer (OSError)."""
    out: list[T] = []
    for worker in workers:
        try:
            out.append(read(worker))
        except OSError:
            out.append(gone)
    return out


def _cpu_seconds(workers: Sequence[WorkerProc]) -> list[float]:
    """Each worker's CPU so far; NaN for one whose process is gone."""
    return _each(workers, lambda worker: worker.cpu().total, math.nan)


def _timers(workers: Sequence[WorkerProc]) -> list[dict[str, float]]:
    """Each worker's own timers so far; empty for one that does not answer."""
    return _each(workers, WorkerProc.timers, {})


def run_group(
    rt: BenchRuntime,
    count: int,
    backlog: int,
    timeout: float,
    *,
    prepare: Callable[[], None] | None = None,
) -> GroupRun:
    """Start `count` fresh workers of one group on the backlog and measure them.

    With ``prepare``, the backlog is what ``prepare`` produces once the new group's
    offsets are at the end of the event topics (older events are skipped); without it,
    everything on the topics from offset 0.

    They are stopped at the end: a worker left with a backlog would slow every later
    scenario (and its consumption would be counted as theirs).
    """
    start = "offset 0" if prepare is None else "the end of the older events"
    rt.say(f"measured: {count} fresh worker(s) of one group consuming from {start}")
    workers = rt.fresh_workers(count, skip_backlog=prepare is not None, prepare=prepare)
    try:
        at_ready = consumed_by(workers)
        timers_at_ready = _timers(workers)  # before the CPU: its scrape is not charged
        cpu_at_ready = _cpu_seconds(workers)
        consumed, seconds = wait_consumed(workers, backlog, timeout, rt.say)
        cpu_at_end = _cpu_seconds(workers)
        at_end = consumed_by(workers, at_ready)
        timers_at_end = _timers(workers)
    finally:
        rt.stop_workers()
    shares = tuple(
        WorkerShare(
            end - ready,
            cpu_end - cpu_ready,
            worker.ready_after,
            {k: t_end[k] - t_ready[k] for k in t_ready.keys() & t_end.keys()},
        )
        for worker, ready, end, cpu_ready, cpu_end, t_ready, t_end in zip(
            workers,
            at_ready,
            at_end,
            cpu_at_ready,
            cpu_at_end,
            timers_at_ready,
            timers_at_end,
            strict=True,
        )
    )
    return GroupRun(shares, seconds, backlog, consumed, sum(at_ready))
