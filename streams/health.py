"""The worker's health: its agents run and the broker and registry answer.

A timer refreshes it (agents/timers.py); /health and ``privops_worker_up`` report it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from privops.adapters import metrics
from privops.adapters.probes import BrokerProbe, registry_problem
from streams.app import settings

log = logging.getLogger(__name__)


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
    if problems != health.problems:
        for problem in problems:
            log.warning("unhealthy: %s", problem)
        if not problems and health.checked:
            log.info("healthy again: broker and registry answer")
    health.problems, health.checked = problems, True
    metrics.set_worker_up(health.ok)
    return health
