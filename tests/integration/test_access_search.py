"""An access request with search details on the real broker: a visitor no system ever
reported asks for the footage they are in. The DPO's CLI seals the details, the worker
sends the CCTV system an export task carrying them (sealed again), the reference CCTV
connector keeps what the search will find from deletion by age while the request waits
for the visitor's ID, finds the clip by day, hours and place once it is verified, and
the response waits for the DPO's review (footage shows other visitors)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from privops.adapters import kek as kekfile
from privops.adapters.acls import DPO
from privops.adapters.settings import Settings
from privops.connectors.encryption import decrypt_record
from privops.connectors.reference import exported_file, seed_customers
from privops.connectors.reference.store import open_store
from privops.core import records as r
from privops.core.clock import UK
from privops.core.fanout import NOTHING_FOUND
from privops.core.fieldcrypt import is_encrypted
from privops.core.topics import AUDIT, COMMANDS, NOTIFICATIONS, tasks_topic
from privops.core.vocab import System
from tests.conftest import port, start_worker
from tests.integration.helpers import (
    http_json,
    key_service,
    read_topic,
    request_reaching,
    wait_for,
)
from tests.integration.test_request_flow import cli, own_pseudonym_key, simulate, stop

pytestmark = pytest.mark.integration


def test_a_visitor_no_system_reported_is_found_in_the_footage(
    local_runtime: Settings, tmp_path: Path, uid: str
) -> None:
    customers = seed_customers(4)
    clip = next(
        c
        for person in customers
        for c in person.clips
        if 1 <= c.captured_at.astimezone(UK).hour <= 22
    )
    local = clip.captured_at.astimezone(UK)
    details = {
        "date": local.date().isoformat(),
        "times": f"{local - timedelta(minutes=30):%H:%M}-{local + timedelta(minutes=30):%H:%M}",
        "location": clip.site.split()[0],
        "appearance": "red coat, walking stick",
    }
    worker = start_worker(
        local_runtime, f"search-{uid}", web_port=port(311), extra_env=own_pseudonym_key(uid)
    )
    data_dir = tmp_path / "systems"
    connectors = simulate(local_runtime, data_dir, customers=4, worker_url=worker.url)
    visitor = f"visitor-{uid}"
    try:
        request_id = cli(
            "request",
            "access",
            "--subject",
            visitor,
            *(a for name, value in details.items() for a in ("--search", f"{name}={value}")),
            "-q",
            env=worker.env,
        )
        # While the request waits for the visitor's ID, the CCTV system keeps what the
        # search will find from its deletion by age (footage goes after 30 days).
        cctv = open_store(data_dir, System.cctv)
        wait_for(
            "the CCTV system to preserve what the search finds",
            lambda: request_id in cctv.preserving(),
            timeout=60,
        )
        waiting = http_json(f"{worker.url}/requests/{request_id}")[1]
        assert (waiting["tasks"], waiting["preserved"]) == ([], ["cctv"])
        cli("request", "verify", request_id, env=worker.env)
        body = request_reaching(
            worker.url,
            request_id,
            "awaiting_review",
            "the footage's response to await the DPO's review",
        )
        (task,) = body["tasks"]
        assert (task["system"], task["action"], task["state"]) == ("cctv", "export", "done")
        assert body["search"] == details  # the DPO sees what was looked for

        # On the topics the details are sealed: the command as the CLI sent it, the
        # task as the worker sent it; the key service opens them for the DPO.
        (submitted,) = [
            c.value
            for c in read_topic(local_runtime, COMMANDS)
            if isinstance(c.value, r.RequestSubmitted) and c.value.request_id == request_id
        ]
        (sent,) = [
            c.value
            for c in read_topic(local_runtime, tasks_topic(System.cctv))
            if isinstance(c.value, r.Export) and c.value.request_id == request_id
        ]
        for sealed in (submitted.search, sent.search):
            assert set(sealed) == set(details)
            assert all(is_encrypted(v) for v in sealed.values())
        kek = kekfile.provider(local_runtime.kek_file, "dev", print)
        keys = key_service(worker.url, kek, DPO)
        try:
            assert decrypt_record(sent, keys).search == details
        finally:
            keys.close()

        # The reference CCTV system found the clip by day, hours and place.
        path = exported_file(data_dir, task["export"]["location"])
        assert path is not None
        document = json.loads(path.read_text())
        found = [row["clip_id"] for row in document["found_by_search"]["clips"]["rows"]]
        assert clip.clip_id in found

        # The DPO finds no one in it is the subject: the copy is dropped, and they are
        # told we searched and hold nothing; the details are not kept past the request.
        cli("request", "approve", request_id, "--not-subject", "cctv", env=worker.env)
        body = http_json(f"{worker.url}/requests/{request_id}")[1]
        assert body["state"] == "completed"
        assert (body["search"], body["tasks"][0]["state"], body["tasks"][0]["export"]) == (
            {},
            "not_found",
            None,
        )
        assert body["preserved"] == []
        told = [
            c.value
            for c in read_topic(local_runtime, NOTIFICATIONS)
            if isinstance(c.value, r.SubjectNotification) and c.value.request_id == request_id
        ]
        assert [n.message for n in told] == [NOTHING_FOUND]
        # Finished: what the search found follows the footage's period again.
        wait_for(
            "the CCTV system to end the preservation",
            lambda: request_id not in cctv.preserving(),
            timeout=60,
        )
        # What the visitor said of themselves is in no log line and no audit record.
        audit = json.dumps(
            [
                c.value.model_dump(mode="json")
                for c in read_topic(local_runtime, AUDIT)
                if isinstance(c.value, r.AuditEvent) and c.value.request_id == request_id
            ]
        )
        assert "searched by date, times, location, appearance" in audit
        logs = worker.log.read_text() + audit
        for value in (details["location"], details["appearance"], details["times"]):
            assert value not in logs
    finally:
        stop(connectors)
        worker.stop()
