"""Periodic sweeps: overdue task answers, deadline thresholds, follow-ups, lag, liveness.

Reads:  the requests table (once, to rebuild the indexes after recovery)
Writes: privops.internal.request-ticks (the workflow agent acts on them)
Timers never write tables: they only find what is due and hand it to the agent that
owns the request's partition.
"""

from __future__ import annotations

import logging

from agents.requests import clock, schedule
from privops.adapters import metrics
from privops.core.topics import REQUEST_TICKS
from privops.core.workflow import RequestRecord
from streams.app import app, settings
from streams.io import emit
from streams.tables import requests

log = logging.getLogger(__name__)


def rebuild() -> int:
    """Index every stored request (after table recovery, before the first sweep)."""
    count = 0
    for raw in requests.values():
        schedule.track(RequestRecord.model_validate(raw))
        count += 1
    schedule.ready = True
    return count


@app.timer(interval=settings.sweep_interval_seconds)
async def sweep() -> None:
    if not schedule.ready:
        if not app.tables.recovery.completed.is_set():
            return
        count = rebuild()
        log.info("deadline and task indexes rebuilt from %d stored requests", count)
    for tick in schedule.due(clock.now(), clock.today()):
        await emit(REQUEST_TICKS, tick.request_id, tick)


@app.timer(interval=5.0)
async def consumer_lag() -> None:
    consumer = app.consumer
    lags = []
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
        except Exception as exc:  # partition not fetched yet, or just revoked
            log.debug("no highwater for %s: %s", tp, exc)
            continue
        position = consumer._read_offset.get(tp)
        if highwater is not None:
            lags.append((tp.topic, max(0, highwater - ((position or -1) + 1))))
    metrics.record_consumer_lag(lags)


@app.task
async def mark_up() -> None:
    metrics.set_worker_up(True)
