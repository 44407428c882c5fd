"""The timers' sweep hands out a little at a time, often (agents.timers.sweep).

A sweep a second that handed out up to 100 overdue re-sends at once put them ahead of
the DPO's commands in one burst: with systems that never answer, the command bench's
p99 had a median of 290 ms over eight runs, against 200 ms with the same re-sends ten at
a time every tenth of a second (session 47, docs/benchmarks.md). These tests hold the
pacing: what one sweep hands out, record expiries' share of a sweep, and the loop that
runs the sweep one run at a time."""

from __future__ import annotations

import asyncio
import inspect
from datetime import timedelta
from pathlib import Path

import pytest

from agents import timers
from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings
from privops.core import records as r
from privops.core.clock import Clock
from privops.core.schedule import EXPIRIES_PER_SECOND, per_sweep
from privops.core.topics import COMMANDS, REQUEST_TICKS
from privops.core.vocab import RequestState, RequestType
from streams.app import settings
from streams.context import collaborators
from streams.tables import requests
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.signers import trust
from tests.agents.test_command_answers import Driver, answers, submit
from tests.agents.test_request_expiry import DAYS
from tests.agents.test_workflow_agent import SUBJECT, TASKED, erasure, known_subject


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The workflow agent trusts the test key (tests.agents.signers) for `dpo`."""
    return trust(monkeypatch, tmp_path)


async def _sweep(outbox: Outbox) -> list[r.RequestTick]:
    """The ticks one sweep sends."""
    start = len(outbox.sent)
    await inspect.unwrap(timers.sweep)()  # the sweep itself, not its loop
    return [
        s.record
        for s in outbox.sent[start:]
        if s.topic == REQUEST_TICKS and isinstance(s.record, r.RequestTick)
    ]


def test_the_defaults_re_send_ten_at_a_time_ten_times_a_second() -> None:
    """The same 100 re-sends a second at most as before 0.47 (a sweep a second, 100 a
    sweep), in tenths."""
    defaults = Settings()
    assert defaults.sweep_max_resends == 10
    assert defaults.sweep_interval_seconds == pytest.approx(0.1)
    assert defaults.sweep_max_resends / defaults.sweep_interval_seconds == pytest.approx(100)


async def test_one_sweep_hands_out_at_most_its_share_of_overdue_answers(
    serde: Serde, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More overdue than a sweep may re-send: the first sweep hands out exactly its
    share, the next the rest, none twice."""
    known_subject()
    count = settings.sweep_max_resends // len(TASKED) + 2  # more tasks than one sweep's share
    async with workflow.test_context() as agent:
        for i in range(count):
            await put_on(agent, COMMANDS, SUBJECT.encode(), serde.encode(erasure(f"R-pace-{i}")))
        await wait_for(lambda: all(requests.data.get(f"R-pace-{i}") for i in range(count)))
    overdue = count * len(TASKED)
    assert overdue > settings.sweep_max_resends
    collaborators().schedule.ready = True  # as after the start-up rebuild
    monkeypatch.setattr(collaborators(), "clock", Clock(timedelta(days=2)))  # SLAs passed

    first = [t.task_id for t in await _sweep(outbox) if t.kind == "task_overdue"]
    second = [t.task_id for t in await _sweep(outbox) if t.kind == "task_overdue"]

    assert len(first) == settings.sweep_max_resends
    assert len(second) == overdue - settings.sweep_max_resends
    assert not set(first) & set(second)


async def test_record_expiries_are_handed_out_at_their_rate_a_sweep_at_a_time(
    serde: Serde, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep hands out ``EXPIRIES_PER_SECOND``'s share of the finished requests due
    (``per_sweep``), not the whole per-second budget each tenth of a second; the rest
    go at the next."""
    monkeypatch.setattr(timers, "EXPIRIES_PER_SECOND", 20)  # 2 a sweep at 0.1 s
    share = per_sweep(20, settings.sweep_interval_seconds)
    known_subject()
    async with workflow.test_context() as agent:
        driver = Driver(agent, serde, outbox)
        for i in range(share + 1):
            sent = await driver.send(submit(f"R-expire-{i}", RequestType.consent_withdrawal))
            assert answers(sent)[0].request_state is RequestState.completed
        monkeypatch.setattr(collaborators(), "clock", Clock(timedelta(days=DAYS + 1)))
        collaborators().schedule.ready = True
        first = [t.request_id for t in await _sweep(outbox) if t.kind == "record_expired"]
        second = [t.request_id for t in await _sweep(outbox) if t.kind == "record_expired"]
    assert share == 2
    assert len(first) == share
    assert len(second) == 1
    assert not set(first) & set(second)


def test_a_sweep_share_of_a_budget_is_never_nothing() -> None:
    assert per_sweep(EXPIRIES_PER_SECOND, 0.1) == EXPIRIES_PER_SECOND // 10
    assert per_sweep(500, 1.0) == 500
    assert per_sweep(5, 0.01) == 1  # at least one a sweep, or a backlog never shrinks
    with pytest.raises(ValueError, match="no budget"):
        per_sweep(0, 0.1)
    with pytest.raises(ValueError, match="no budget"):
        per_sweep(10, 0)


async def test_the_loop_pauses_after_each_run_and_never_overlaps_one() -> None:
    """Each pause starts once a run ended (a run longer than the pause is not overlapped
    by the next), and the loop ends at the first pause after the worker began stopping."""
    events: list[str] = []
    running = 0
    stopping = False

    async def job() -> None:
        nonlocal running, stopping
        running += 1
        assert running == 1, "a run began before the last one ended"
        events.append("run")
        await asyncio.sleep(0.01)  # longer than the pause
        running -= 1
        stopping = events.count("run") == 3

    async def sleep(seconds: float) -> None:
        assert running == 0, "a pause began while a run was under way"
        events.append(f"pause {seconds}")
        await asyncio.sleep(0)

    await asyncio.wait_for(timers.run_paced(job, 0.001, sleep, lambda: stopping), 5)
    assert events == ["pause 0.001", "run"] * 3 + ["pause 0.001"]
