"""The worker's health: its agents take their input and the broker and registry answer.

A timer refreshes it (agents/timers.py); /health and ``privops_worker_up`` report it.
An agent that has taken none of its waiting input for ``STALLED_AFTER_SECONDS`` is
stuck (under load it takes a chunk every few hundred milliseconds): a stall that would
otherwise show nowhere, since the fetcher reads on and the consumer lag stays low.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from privops.adapters import metrics
from privops.adapters.probes import BrokerProbe, registry_problem
from streams import pipeline
from streams.app import settings

log = logging.getLogger(__name__)

STALLED_AFTER_SECONDS = 120.0


@dataclass
class Health:
    checked: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checked and not self.problems


health = Health()
_broker = BrokerProbe(settings.kafka_bootstrap)


async def refresh() -> Health:
    problems = [
        problem
        for problem in (await _broker.problem(), await registry_problem(settings.registry_url))
        if problem
    ]
    problems += stalled_agents()
    if problems != health.problems:
        for problem in problems:
            log.warning("unhealthy: %s", problem)
        if not problems and health.checked:
            log.info("healthy again: agents take their input, broker and registry answer")
    health.problems, health.checked = problems, True
    metrics.set_worker_up(health.ok)
    return health


def stalled_agents() -> list[str]:
    """A problem per agent whose input has waited ``STALLED_AFTER_SECONDS`` with none of
    it taken; every agent's wait goes to ``privops_agent_input_waiting_seconds``."""
    problems = []
    for source, _ in pipeline.FEEDS:
        waited = source.stalled_for()
        metrics.set_agent_input_waiting(source.name, waited)
        if waited >= STALLED_AFTER_SECONDS:
            problems.append(
                f"the {source.name} agent has taken none of its waiting input for "
                f"{STALLED_AFTER_SECONDS:.0f} s or more"
            )
    return problems
