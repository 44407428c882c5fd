"""Legal holds reach the business systems' deletion by age, on the real broker.

The DPO places a hold on one subject's interactions with the CLI; the worker writes the
hold to ``privacy.legal-holds.telephony``; the reference telephony system (`privops
simulate`, deleting by age every second) reads it, sealed under the subject's key, and
keeps that subject's call recordings past the data map's 90 days while deleting another
subject's. Released, the next deletion takes them.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from privops.adapters.settings import Settings
from privops.connectors.reference import ReferenceStore, open_store, seed_customers, seed_stores
from privops.core import records as r
from privops.core.fieldcrypt import is_encrypted, parse_field
from privops.core.topics import COMMANDS, legal_holds_topic
from privops.core.vocab import System
from tests.conftest import port, start_worker
from tests.integration.helpers import Subject, produce, read_topic, wait_for
from tests.integration.test_request_flow import cli, known, simulate, stop

pytestmark = pytest.mark.integration

TEL = System.telephony


def calls(store: ReferenceStore) -> set[str]:
    with sqlite3.connect(store.path) as db:
        return {row[0] for row in db.execute("SELECT call_id FROM call_recordings")}


def recorded(store: ReferenceStore, who: Subject, name: str, at: datetime) -> r.CallRecorded:
    """A call of ``who`` in the telephony store, ``at`` then; the event the system sent."""
    call_id = f"{name}-{who.id}"
    ref = who.ids(TEL).system_ref
    with sqlite3.connect(store.path) as db:
        db.execute(
            "INSERT OR IGNORE INTO callers (caller_ref, name, phone) VALUES (?, ?, ?)",
            (ref, "A Caller", who.phone),
        )
        db.execute(
            "INSERT INTO call_recordings (call_id, caller_ref, caller_number, started_at)"
            " VALUES (?, ?, ?, ?)",
            (call_id, ref, who.phone, at.isoformat()),
        )
    return r.CallRecorded(
        event_id=f"{call_id}-recorded",
        occurred_at=at,
        source=TEL,
        subject_id=who.id,
        identifiers=who.ids(TEL),
        call_id=call_id,
        recording_ref=f"recordings/{call_id}.wav",
        duration_seconds=300,
    )


def hold_written(settings: Settings, subject_id: str) -> r.LegalHoldState | None:
    found = [
        c.value
        for c in read_topic(settings, legal_holds_topic(TEL))
        if c.key == subject_id.encode() and isinstance(c.value, r.LegalHoldState)
    ]
    return found[-1] if found else None


def test_a_legal_hold_keeps_recordings_past_their_period_until_released(
    local_runtime: Settings, tmp_path: Path, uid: str
) -> None:
    held, free = Subject(uid, 1), Subject(uid, 2)
    free.phone = held.phone[:-3] + f"{(int(held.phone[-3:]) + 1) % 1000:03d}"
    now = datetime.now(UTC)
    data_dir = tmp_path / "systems"
    seed_stores(data_dir, seed_customers(1))
    store = open_store(data_dir, TEL)
    events = [
        recorded(store, who, name, now - timedelta(days=days))
        for who in (held, free)
        for name, days in (("OLD", 120), ("NEW", 5))
    ]
    worker = start_worker(local_runtime, f"holds-{uid}", web_port=port(611))
    connectors = None
    try:
        produce(local_runtime, [(f"{TEL.value}.events", e.subject_id, e) for e in events])
        wait_for(
            "the subjects to be known", lambda: known(worker, held.id) and known(worker, free.id)
        )
        hold_id = cli(
            "request",
            "hold",
            "place",
            "--subject",
            held.id,
            "--category",
            "interactions",
            "--reason",
            "litigation ref L-9",
            "-q",
            env=worker.env,
        )
        state = wait_for("the hold on telephony", lambda: hold_written(local_runtime, held.id))
        assert state.hold_ids == [hold_id]
        assert is_encrypted(state.identifiers["phone"])  # sealed under the subject's key
        assert hold_written(local_runtime, free.id) is None
        # The DPO's reason went on privacy.commands sealed by the worker's key service
        # (the CLI holds no KEK), and the worker opened it: the hold was placed.
        (placed,) = [
            c.value
            for c in read_topic(local_runtime, COMMANDS)
            if isinstance(c.value, r.LegalHoldPlaced) and c.value.hold_id == hold_id
        ]
        assert is_encrypted(placed.reason)
        assert parse_field(placed.reason)[0].startswith(f"{held.id}/main/")
        # The DPO sees the hold, its reason opened, with the id `release` takes.
        (listed,) = json.loads(
            cli("request", "hold", "list", "--subject", held.id, "--json", env=worker.env)
        )["holds"]
        assert (listed["hold_id"], listed["active"]) == (hold_id, True)
        assert (listed["reason"], listed["categories"]) == ("litigation ref L-9", ["interactions"])

        connectors = simulate(
            local_runtime,
            data_dir,
            "--purge-every",
            "1",
            customers=1,
            worker_url=worker.url,
        )
        wait_for(
            "the unheld old call to be deleted by age", lambda: f"OLD-{free.id}" not in calls(store)
        )
        left = calls(store)
        assert f"OLD-{held.id}" in left  # held: kept past its 90 days
        assert {f"NEW-{held.id}", f"NEW-{free.id}"} <= left
        kept = store.legal_holds()
        assert {(h["subject_id"], h["key"], h["category"]) for h in kept} >= {
            (held.id, held.ids(TEL).system_ref, "interactions")
        }

        cli("request", "hold", "release", hold_id, "--subject", held.id, env=worker.env)
        wait_for(
            "the released call to be deleted by age", lambda: f"OLD-{held.id}" not in calls(store)
        )
        assert f"NEW-{held.id}" in calls(store)
        assert held.id not in store.holding()
        (released,) = json.loads(
            cli("request", "hold", "list", "--subject", held.id, "--json", env=worker.env)
        )["holds"]
        assert released["active"] is False
        assert released["released_at"] is not None
    finally:
        if connectors is not None:
            stop(connectors)
        worker.stop()
