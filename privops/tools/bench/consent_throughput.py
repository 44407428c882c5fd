"""Scenario consent-throughput: >= 20,000 events/s on one worker, and >= 0.5 of a raw
aiokafka consume + decode loop over the same topics (the baseline)."""

from __future__ import annotations

import asyncio
import uuid

from privops.tools.bench.inputs import consent_events, encode_events
from privops.tools.bench.kafka_io import end_offsets, produce, raw_consume_decode
from privops.tools.bench.measure import Result
from privops.tools.bench.runtime import EVENT_TOPICS, BenchRuntime, wait_consumed

TARGET_EVENTS_PER_S = 20_000
TARGET_RATIO = 0.5


def consent_throughput(
    rt: BenchRuntime, *, events: int = 200_000, subjects: int = 20_000, timeout: float = 120.0
) -> list[Result]:
    """Target: >= 20,000 events/s on one worker and >= 0.5 of a raw consume+decode loop."""
    say = rt.say
    tag = uuid.uuid4().hex[:6]
    say(f"consent-throughput: generating and encoding {events:,} events")
    messages = encode_events(rt.serde, consent_events(events, subjects, tag))
    produce_s = asyncio.run(produce(rt.bootstrap, messages))
    rt.subjects_loaded += subjects
    say(f"produced {events:,} events in {produce_s:.1f}s")
    total = sum(asyncio.run(end_offsets(rt.bootstrap, EVENT_TOPICS)).values())

    say("baseline: raw aiokafka consume + Serde decode of the same topics")
    base_count, base_s = asyncio.run(raw_consume_decode(rt.bootstrap, rt.serde, EVENT_TOPICS))
    baseline = base_count / base_s

    say("measured: a fresh privops worker consuming from offset 0")
    worker = rt.fresh_worker(skip_backlog=False)
    at_ready = worker.consumed()
    consumed, seconds = wait_consumed(worker, total, timeout, say)
    rate = (consumed - at_ready) / seconds if seconds > 0 else 0.0
    # A worker left with a backlog would delay every later scenario (and its consumption
    # would be counted as theirs): they get a new one.
    worker.stop()
    rt.worker = None
    details = {
        "events_on_topics": total,
        "consumed_by_worker": consumed,
        "consumed_before_ready": at_ready,
        "window_seconds": round(seconds, 2),
        "finished": consumed >= total,
        "worker_ready_seconds": round(worker.ready_after, 2),
        "baseline_events": base_count,
        "baseline_seconds": round(base_s, 2),
        "subjects": subjects,
    }
    return [
        Result(
            "consent-throughput",
            "events/s",
            rate,
            baseline,
            "events/s",
            ">= 20,000 events/s",
            rate >= TARGET_EVENTS_PER_S,
            details,
        ),
        Result(
            "consent-throughput",
            "ratio to raw consume+decode",
            rate / baseline,
            None,
            "x",
            ">= 0.5",
            rate / baseline >= TARGET_RATIO,
            {},
        ),
    ]
