"""The worker's health: its agents move on and the broker and registry answer.

A timer refreshes it (agents/timers.py); /health and ``privops_worker_up`` report it.
An agent that has not moved on for ``STALLED_AFTER_SECONDS`` (its input waiting with
none taken, or its current chunk unfinished: ``batching.Inlet.stalled_for``) is stuck;
under load it takes and finishes a chunk every few hundred milliseconds. Nothing else
would show it: the fetcher reads on, so the consumer lag stays low. Nor would flushes
dropped with no rebalance after them (``State.dropping_for``): the agents move on, and
only the lag grows until the state gives up.

Each check also looks at the signers file (``SignersWatch.refresh``: two stats): the
workflow agent looks only while commands come, and a worker left trusting a revoked key
must show it (/health's ``signers_fingerprint``, ``privops_signers_info``) before the
next command does.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from privops.adapters import metrics
from privops.adapters.probes import BrokerProbe, registry_problem
from streams import pipeline
from streams.app import settings
from streams.context import collaborators
from streams.state import DROPPING_LIMIT_SECONDS, StateFailed, state

log = logging.getLogger(__name__)

STALLED_AFTER_SECONDS = 120.0
# Flushes are dropped only while partitions move, for well under a second.
DROPPING_REPORTED_AFTER_SECONDS = 10.0


@dataclass
class Health:
    checked: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checked and not self.problems


health = Health()
_broker = BrokerProbe(settings.kafka_bootstrap)


async def refresh(not_serving: Callable[[], list[str]] = list) -> Health:
    """Probe the broker and registry, and the agents (``privops_worker_up``); with
    ``not_serving`` (what else keeps ``/health`` from 200: tables recovering, keys
    loading), ``privops_worker_ready``, so a worker whose recovery never ends is alerted
    on (PrivopsWorkerNotReady), apart from one that is down (a takeover's recovery may
    take minutes: no critical page for it)."""
    problems = [
        problem
        for problem in (
            await _broker.problem(),
            await registry_problem(settings.registry_url, settings.registry_ca),
        )
        if problem
    ]
    problems += stalled_agents() + dropped_flushes()
    _refresh_signers()  # its fingerprint current with no command coming
    if problems != health.problems:
        for problem in problems:
            log.warning("unhealthy: %s", problem)
        if not problems and health.checked:
            log.info("healthy again: agents move on, broker and registry answer")
    health.problems, health.checked = problems, True
    metrics.set_worker_up(health.ok)
    metrics.set_worker_ready(health.ok and not not_serving())
    return health


def _refresh_signers() -> None:
    """``SignersWatch.refresh``, never aborting the health check: raising there left
    ``health`` and ``privops_worker_up`` as they were, and /health with them. What it
    raised is logged once per kind and place (its type and where it was raised, not its
    text: no personal data); /health's ``signers_fingerprint`` and the workflow agent's
    check stay as they were (the agent looks again at its next command)."""
    try:
        collaborators().signers.refresh()
    except Exception as exc:  # noqa: BLE001  (logged: the health check must go on)
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        failure = f"{type(exc).__name__} at {where}"
        if failure not in _signers_failures:
            if len(_signers_failures) >= _SIGNERS_FAILURES_KEPT:
                _signers_failures.clear()
            _signers_failures.add(failure)
            log.error(
                "looking at the signers file raised %s; the health check goes on, the "
                "signer set shown may be out of date",
                failure,
            )


_SIGNERS_FAILURES_KEPT = 32
_signers_failures: set[str] = set()  # logged already (type and place: bounded)


def stalled_agents() -> list[str]:
    """A problem per agent that has not moved on for ``STALLED_AFTER_SECONDS``; every
    agent's figure goes to ``privops_agent_stalled_seconds``."""
    problems = []
    for source, _ in pipeline.FEEDS:
        stalled = source.stalled_for()
        metrics.set_agent_stalled(source.name, stalled)
        if stalled >= STALLED_AFTER_SECONDS:
            problems.append(
                f"the {source.name} agent has not moved on for {STALLED_AFTER_SECONDS:.0f} s "
                "or more (its input waits untaken, or its chunk unfinished)"
            )
    return problems


def dropped_flushes() -> list[str]:
    """A problem while every flush has been dropped for a while with no rebalance to end
    it (``State.dropping_for``); at ``DROPPING_LIMIT_SECONDS`` the state gives up, here
    too, so a worker that takes no input after the drop stops as well."""
    with suppress(StateFailed):  # logged and told (the worker stops) where it gave up
        state.give_up_dropping()
    dropping = state.dropping_for()
    if dropping < DROPPING_REPORTED_AFTER_SECONDS:
        return []
    return [
        f"every flush dropped for {dropping:.0f} s, waiting for a rebalance (the worker "
        f"stops at {DROPPING_LIMIT_SECONDS:.0f} s; its restart replays what was dropped)"
    ]
