"""The worker's collaborators, built in one place from the settings.

Faust needs the App and the agents at import, but what the agents work with (the data
map, the clock, the deadline schedule, the worker's own signing key and the signers it
trusts) is built here, once: by ``run_worker`` after the settings and the data map were
checked, or on first use (agent tests). Tests swap a piece on the built object
(``monkeypatch.setattr(collaborators(), "schedule", ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from privops.adapters.settings import Settings
from privops.adapters.signing_keys import SignersWatch
from privops.core.clock import Clock
from privops.core.datamap import DataMap, load_datamap
from privops.core.signing import SigningKey
from privops.core.workflow import SCHEDULER
from streams.app import settings as app_settings
from streams.schedule import Schedule

# Domain separation for the worker's own signing key, derived from the audit key that
# every worker of the group holds.
WORKER_KEY_CONTEXT = "privops worker commands v1"


@dataclass
class Collaborators:
    datamap: DataMap
    clock: Clock
    schedule: Schedule
    worker_key: SigningKey
    signers: SignersWatch


def build(settings: Settings) -> Collaborators:
    clock = Clock.from_days(settings.clock_offset_days)
    worker_key = SigningKey.derive(settings.audit_key.encode(), WORKER_KEY_CONTEXT)
    return Collaborators(
        datamap=load_datamap(settings.datamap),
        clock=clock,
        schedule=Schedule(tuple(settings.alert_days_before)),
        worker_key=worker_key,
        signers=SignersWatch(settings.signers_file, (worker_key.entry(SCHEDULER, clock.now()),)),
    )


_built: list[Collaborators] = []


def collaborators() -> Collaborators:
    """The worker's collaborators, built from the settings on first use."""
    if not _built:
        _built.append(build(app_settings))
    return _built[0]
