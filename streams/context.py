"""The worker's collaborators, built in one place from the settings.

Faust needs the App and the agents at import, but what the agents work with (the data
map, the clock, the deadline schedule, the worker's own signing keys and the signers it
trusts) is built here, once: by ``run_worker`` after the settings and the data map were
checked, or on first use (agent tests). Tests swap a piece on the built object
(``monkeypatch.setattr(collaborators(), "schedule", ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from privops.adapters.datamap_file import load_datamap
from privops.adapters.settings import Settings
from privops.adapters.signing_keys import SignersWatch
from privops.core.audit import keyring
from privops.core.clock import Clock
from privops.core.datamap import DataMap
from privops.core.signing import SigningKey
from privops.core.workflow import SCHEDULER
from streams.app import settings as app_settings
from streams.schedule import Schedule

# Domain separation for the worker's own signing key, derived from the audit key that
# every worker of the group holds.
WORKER_KEY_CONTEXT = "privops worker commands v1"


def worker_keys(settings: Settings) -> tuple[SigningKey, ...]:
    """The worker's own signing keys: the current audit key's first (it signs), then
    those of the audit keys it replaced (``audit_previous_keys``). A follow-up erasure
    signed just before a rotation may still be on privacy.commands after it; trusting
    only the current key's rejected it (``unknown_signer``) and the follow-up was lost.
    Whichever key signed, the workflow acts on such a command only as the follow-up its
    request issued (``workflow.issued_followup``)."""
    ring = keyring(settings.audit_key, settings.audit_key_version, settings.audit_previous_keys)
    current = ring.pop(settings.audit_key_version)
    return tuple(
        SigningKey.derive(secret, WORKER_KEY_CONTEXT) for secret in (current, *ring.values())
    )


@dataclass
class Collaborators:
    datamap: DataMap
    clock: Clock
    schedule: Schedule
    worker_key: SigningKey  # the current audit key's: the worker's follow-ups are signed with it
    signers: SignersWatch
    # The Kafka cluster's id, which every command is signed for (privops.core.signing):
    # set by the worker's start-up checks (streams.startup.preflight) once the broker
    # answered; agent tests keep this empty one and sign for it.
    deployment: str = ""


def build(settings: Settings) -> Collaborators:
    clock = Clock.from_days(settings.clock_offset_days)
    keys = worker_keys(settings)
    datamap = load_datamap(settings.datamap)
    return Collaborators(
        datamap=datamap,
        clock=clock,
        schedule=Schedule(
            tuple(settings.alert_days_before),
            record_days=datamap.request_records.period_days,
        ),
        worker_key=keys[0],
        signers=SignersWatch(
            settings.signers_file, tuple(key.entry(SCHEDULER, clock.now()) for key in keys)
        ),
    )


_built: list[Collaborators] = []


def collaborators() -> Collaborators:
    """The worker's collaborators, built from the settings on first use."""
    if not _built:
        _built.append(build(app_settings))
    return _built[0]
