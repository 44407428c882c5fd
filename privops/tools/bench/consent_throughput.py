"""Scenario consent-throughput: >= 15,000 events/s on one worker (stretch 20,000), and
>= 0.5 of a plain aiokafka loop that consumes, decodes and produces the same records;
the consume+decode-only loop beside it; N workers of one group for the scale-out figure.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence

from privops.core.errors import RuntimeUnavailable
from privops.tools.bench.baselines import (
    BASELINE_NAMESPACE,
    DECODE_ONLY,
    BaselineRun,
    ConsentOutputs,
    consume_decode,
)
from privops.tools.bench.cpu import per_unit_us
from privops.tools.bench.encryption import encryption_cost
from privops.tools.bench.group import GroupRun, run_group
from privops.tools.bench.inputs import consent_events, encode_events
from privops.tools.bench.kafka_io import end_offsets, produce
from privops.tools.bench.measure import Result
from privops.tools.bench.runtime import EVENT_TOPICS, BenchRuntime

SCENARIO = "consent-throughput"
TARGET_EVENTS_PER_S = 15_000
STRETCH_EVENTS_PER_S = 20_000
TARGET_RATIO = 0.5


def consent_throughput(
    rt: BenchRuntime,
    *,
    events: int = 200_000,
    subjects: int = 20_000,
    timeout: float = 120.0,
    workers: Sequence[int] = (1,),
    encrypt: bool = False,
) -> list[Result]:
    """Both baselines once, then one measured group per entry of `workers`; with
    ``encrypt``, also what decrypting personal fields costs (bench.encryption)."""
    say = rt.say
    tag = uuid.uuid4().hex[:6]
    say(f"consent-throughput: generating and encoding {events:,} events")
    messages = encode_events(rt.serde, consent_events(events, subjects, tag))
    produce_s = asyncio.run(produce(rt.bootstrap, messages))
    rt.subjects_loaded += subjects
    say(f"produced {events:,} events in {produce_s:.1f}s")
    total = sum(asyncio.run(end_offsets(rt.bootstrap, EVENT_TOPICS)).values())

    say("baseline: plain aiokafka consume + Serde decode of the same topics")
    decode = asyncio.run(consume_decode(rt.bootstrap, rt.serde, EVENT_TOPICS))
    say("baseline: the same + the worker's output records produced to scratch topics")
    outputs = ConsentOutputs(
        pseudonym_key=rt.env["PRIVOPS_PSEUDONYM_KEY"].encode(),
        audit_key=rt.settings.audit_key.encode(),
        namespace=BASELINE_NAMESPACE,
    )
    pipeline = asyncio.run(consume_decode(rt.bootstrap, rt.serde, EVENT_TOPICS, outputs))

    results: list[Result] = []
    for count in workers:
        try:
            group = run_group(rt, count, total, timeout)
        except RuntimeUnavailable as exc:
            # The baselines stand on their own: report them, and why the workers did not.
            say(f"{count} worker(s) did not start: {exc}")
            rt.keep_logs = True
            results += unstarted_rows(count, pipeline, decode, str(exc))
            continue
        results += group_rows(group, pipeline, decode, subjects=subjects)
    if encrypt:
        results += encryption_cost(rt, events=events, subjects=subjects, timeout=timeout)
    return results


def versus(who: str, run: BaselineRun) -> str:
    return f"{who} vs {run.name}" + (" only" if run.name == DECODE_ONLY else "")


def _baseline_details(run: BaselineRun) -> dict[str, object]:
    details: dict[str, object] = {
        "events": run.events,
        "seconds": round(run.seconds, 2),
        "cpu_seconds": round(run.cpu_seconds, 2),
    }
    if run.produced:
        # Where the produce loop's CPU goes: the pure core's record building, Avro
        # encoding, and the rest (consume, decode, send): what Kafka and Avro cost.
        split = {
            "core_us_per_event": per_unit_us(run.core_seconds, run.events),
            "encode_us_per_event": per_unit_us(run.encode_seconds, run.events),
        }
        details["records_produced"] = run.produced
        details |= {k: round(v, 1) for k, v in split.items() if v is not None}
    return details


def group_rows(
    group: GroupRun, pipeline: BaselineRun, decode: BaselineRun, *, subjects: int
) -> list[Result]:
    """The group against each baseline, then (for more than one) each worker's share.

    The targets apply to one worker; a larger group is the scale-out figure, reported.
    """
    n = len(group.shares)
    who = f"{n} worker" + ("s" if n > 1 else "")
    rate = group.rate
    one = n == 1
    versus_pipeline = rate / pipeline.rate if pipeline.rate else 0.0
    if not group.measurable:
        # Said, never shown as a rate of 0: nothing was measured.
        target = (
            f"not measured: {group.before_window:,} of {group.backlog:,} events were "
            f"consumed before the {who} answered ready; give more --events"
        )
        passed = False if one else None
    elif one:
        target = (
            f">= {TARGET_EVENTS_PER_S:,}/s (stretch {STRETCH_EVENTS_PER_S:,}), >= {TARGET_RATIO}x"
        )
        passed = rate >= TARGET_EVENTS_PER_S and versus_pipeline >= TARGET_RATIO
    else:
        target, passed = "", None
    details = {
        "events_on_topics": group.backlog,
        "consumed_by_workers": group.consumed,
        "consumed_before_window": group.before_window,
        "window_seconds": round(group.seconds, 2),
        "finished": group.finished,
        "worker_ready_seconds": [round(s.ready_seconds, 2) for s in group.shares],
        # Where the workers' time went, by their own timers (wall µs per event).
        "worker_us_per_event": group.timers_us(),
        "subjects": subjects,
        "baseline_produce": _baseline_details(pipeline),
        "baseline_decode_only": _baseline_details(decode),
    }
    rows = [
        Result(
            SCENARIO,
            versus(who, pipeline),
            rate,
            pipeline.rate,
            "events/s",
            target,
            passed,
            details,
            cpu_us=group.cpu_us,
            baseline_cpu_us=pipeline.cpu_us,
            baseline_name=pipeline.name,
        ),
        Result(
            SCENARIO,
            versus(who, decode),
            rate,
            decode.rate,
            "events/s",
            "",
            None,
            {},
            cpu_us=group.cpu_us,
            baseline_cpu_us=decode.cpu_us,
            baseline_name=decode.name,
        ),
    ]
    if n > 1:
        rows += [
            Result(
                SCENARIO,
                f"  worker {i} of {n}",
                group.rate_of(share.events),
                None,
                "events/s",
                "",
                None,
                {"events": share.events, "cpu_seconds": round(share.cpu_seconds, 2)},
                cpu_us=share.cpu_us,
            )
            for i, share in enumerate(group.shares, start=1)
        ]
    return rows


def unstarted_rows(
    count: int, pipeline: BaselineRun, decode: BaselineRun, error: str
) -> list[Result]:
    """Both baselines with no measurement beside them, and why (a worker did not start)."""
    who = f"{count} worker" + ("s" if count > 1 else "")
    return [
        Result(
            SCENARIO,
            versus(who, run),
            math.nan,
            run.rate,
            "events/s",
            "worker did not start",
            False,
            {"error": error, f"baseline_{key}": _baseline_details(run)},
            baseline_cpu_us=run.cpu_us,
            baseline_name=run.name,
        )
        for run, key in ((pipeline, "produce"), (decode, "decode_only"))
    ]
