"""Issue 5 acceptance: the deadline clock at run time and access fulfilment, real broker.

Requests are received "in the past" (as a DPO back-fills them), so their due dates fall
near today: the worker's sweep must alert once per threshold, not on every tick.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from privops.adapters import kek as kekfile
from privops.adapters.acls import DPO
from privops.adapters.datamap_file import load_datamap
from privops.adapters.settings import Settings
from privops.cli.common import uk_today
from privops.connectors.encryption import decrypt_record
from privops.connectors.reference import exported_file, seed_customers
from privops.core import deadlines
from privops.core import records as r
from privops.core.clock import Clock
from privops.core.fieldcrypt import is_encrypted
from privops.core.topics import ALERTS, COMMANDS, NOTIFICATIONS
from privops.core.vocab import Category, Channel, Purpose, System
from tests.conftest import port, start_worker
from tests.integration.helpers import (
    http_json,
    key_service,
    produce,
    read_topic,
    records_where,
    request_reaching,
    wait_for,
)
from tests.integration.test_request_flow import cli, customer_events, simulate, stop

pytestmark = pytest.mark.integration


def received_for_due_in(days: int, today: date) -> date:
    """A receipt date whose one-month deadline is ``days`` (or a little more) from today."""
    for back in range(20, 40):
        received = today - timedelta(days=back)
        if 0 <= (deadlines.due_date(received) - today).days - days <= 3:
            return received
    raise AssertionError("no receipt date found")


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privops.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def copy(location: str) -> tuple[str, ...]:
    """``privops request redact``'s options for a redacted cctv copy at ``location``."""
    return ("--system", "cctv", "--location", location, "--records", "1", "--sha256", "0" * 64)


DATAMAP = load_datamap()
ELSEWHERE = "Bright Energy Ltd, switching@bright.example"
"""Where a subject asks for their portable copies to be sent (Art. 20(2))."""
ATTORNEY = "Jane Doe (attorney), 4 Mill Lane, Leeds"
"""Who makes a request for a subject under a power of attorney."""


def alerts_for(settings: Settings, request_ids: set[str]) -> list[r.Alert]:
    return [
        c.value
        for c in read_topic(settings, ALERTS)
        if isinstance(c.value, r.Alert) and c.value.request_id in request_ids
    ]


def test_deadline_alerts_fire_once_and_access_manifest_is_assembled(
    local_runtime: Settings, tmp_path: Path, uid: str
) -> None:
    today = Clock().today()
    customers = seed_customers(4)
    # The suppression list is cluster-wide (it must outlive app ids): earlier tests erase
    # the same seeded customers, so this worker hashes identifiers under a key of its own.
    isolated = {"PRIVOPS_PSEUDONYM_KEY": f"dsar-{uid}-pseudonym-key-0123456789"}
    worker = start_worker(local_runtime, f"dsar-{uid}", web_port=port(301), extra_env=isolated)
    data_dir = tmp_path / "systems"
    connectors = simulate(local_runtime, data_dir, customers=4, worker_url=worker.url)
    held = {c.subject_id: [s for s in System if c.in_system(s)] for c in customers}
    try:
        # The subject of the access request gives consent (privops' own record of it must
        # reach their response) through a system that reported them.
        asker = customers[3]
        source = held[asker.subject_id][0]
        known = asker.identifiers(source)
        given = r.ConsentGiven(
            event_id=f"{asker.subject_id}-consent",
            occurred_at=asker.since,
            source=source,
            subject_id=asker.subject_id,
            identifiers=r.Identifiers(
                **{k: known.get(k) for k in ("customer_id", "email", "phone", "system_ref")}
            ),
            purpose=Purpose.marketing,
            channel=Channel.post,
        )
        produce(
            local_runtime,
            [e for c in customers for e in customer_events(c, held[c.subject_id])]
            + [(f"{source.value}.events", asker.subject_id, given)],
        )
        wait_for(
            "subjects to be known",
            lambda: all(
                http_json(f"{worker.url}/consent/{c.subject_id}")[0] == 200 for c in customers
            ),
        )
        wait_for(
            "the consent to be recorded",
            lambda: http_json(f"{worker.url}/consent/{asker.subject_id}")[1]["preferences"],
        )
        near = received_for_due_in(2, today).isoformat()

        # Objections to legitimate-interest processing wait for the DPO's decision, so they
        # stay open while the clock runs (a complaint is acknowledged at once, s.164A, and
        # raises no deadline alert): one due within days, one due two weeks ago.
        def li_objection(subject: str, received: date) -> str:
            return cli(
                "request",
                "object",
                "--subject",
                subject,
                "--scope",
                "legitimate_interest",
                "--received",
                received.isoformat(),
                "--identity-received",
                received.isoformat(),
                "-q",
                env=worker.env,
            )

        approaching = li_objection(customers[0].subject_id, received_for_due_in(2, today))
        breached = li_objection(customers[1].subject_id, today - timedelta(days=45))
        # A request done at once must raise nothing for its near due date: a consent
        # withdrawal (recorded in the consent state; no task). An objection to direct
        # marketing no longer is: it reaches the CRM and the marketing platform by the
        # subject's email whether or not they reported the subject (fanout.holdings;
        # review, session 27). The asker's own: their access response lists it.
        completed = cli(
            "request",
            "withdraw",
            "--subject",
            asker.subject_id,
            "--purpose",
            "profiling",
            "--received",
            near,
            "-q",
            env=worker.env,
        )

        def verified(verb: str, subject: str, *more: str) -> str:
            """A ``privops request VERB`` received near its due date, identity verified."""
            return cli(
                "request",
                verb,
                "--subject",
                subject,
                "--received",
                near,
                "--verified-now",
                *more,
                "-q",
                env=worker.env,
            )

        access = verified("access", asker.subject_id)
        # A visitor the cameras filmed: footage shows other people, so their response
        # waits for the DPO (review_before_disclosure in the data map).
        viewer = customers[0]
        assert System.cctv in held[viewer.subject_id]
        reviewed = verified("access", viewer.subject_id)

        # Data portability (Art. 20), for the viewer, who has a credit account: what they
        # gave us on consent or contract, from the systems holding it; not their credit
        # file (the agencies'), nor the footage or call recordings (legitimate interests).
        # They asked for it to be sent to their new supplier too (Art. 20(2)).
        assert viewer.credit is not None
        assert System.orders in held[viewer.subject_id]
        ported = verified("port", viewer.subject_id, "--send-to", ELSEWHERE)

        # An attorney asks for a subject's data: nothing is exported, and no clock runs,
        # until the evidence of their authority is recorded; the response goes to them.
        represented = customers[2]
        by_attorney = verified(
            "access", represented.subject_id, "--representative", ATTORNEY, "--capacity", "attorney"
        )
        waiting = http_json(f"{worker.url}/requests/{by_attorney}")[1]
        assert (waiting["state"], waiting["tasks"], waiting["clock_start"]) == (
            "identity_unverified",
            [],
            None,
        )
        shown = cli("request", "status", by_attorney, env=worker.env)
        assert "Jane Doe" in shown
        assert "waiting for the evidence of their authority" in shown
        cli("request", "authority", by_attorney, "--on", uk_today().isoformat(), env=worker.env)

        ids = {approaching, breached, completed}
        wait_for(
            "approaching and breached alerts",
            lambda: (
                {(type(a).__name__, a.request_id) for a in alerts_for(local_runtime, ids)}
                >= {("DeadlineApproaching", approaching), ("DeadlineBreached", breached)}
            ),
        )
        time.sleep(4)  # several more sweeps: nothing new may appear
        alerts = [
            a
            for a in alerts_for(local_runtime, ids)
            if isinstance(a, r.DeadlineApproaching | r.DeadlineBreached)
        ]
        kinds = [(type(a).__name__, a.request_id) for a in alerts]
        assert kinds.count(("DeadlineApproaching", approaching)) == 1
        assert kinds.count(("DeadlineBreached", breached)) == 1
        assert not [k for k in kinds if k[1] == completed]
        _, body = http_json(f"{worker.url}/requests/{completed}")
        assert body["state"] == "completed"

        # Access: every system's export is in, the manifest goes to the subject.
        body = request_reaching(worker.url, access, "completed", "the access request to complete")
        manifest = body["manifest"]
        assert manifest is not None

        # The footage's response waits for the DPO: nothing went to the subject; the
        # DPO's redacted copy replaces cctv's export, and approval sends it.
        wait_for(
            "the access response with footage to await review",
            lambda: (
                http_json(f"{worker.url}/requests/{reviewed}")[1].get("state") == "awaiting_review"
            ),
            timeout=90,
        )
        root = "https://exports.allled.example/dsar/cctv/"
        outside = run_cli(
            "request", "redact", reviewed, *copy(f"{root}R-other/r.json"), env=worker.env
        )
        assert outside.returncode == 1  # the worker refused it: not the request's
        assert "does not name the request" in outside.stdout + outside.stderr
        redacted = f"{root}{reviewed}/redacted.json"
        cli("request", "redact", reviewed, *copy(redacted), env=worker.env)
        unsaid = run_cli("request", "approve", reviewed, env=worker.env)
        assert unsaid.returncode == 1  # a redacted copy is told to the subject, with why
        assert "--reason" in unsaid.stdout + unsaid.stderr
        assert http_json(f"{worker.url}/requests/{reviewed}")[1]["state"] == "awaiting_review"
        cli("request", "approve", reviewed, "--reason", "Other visitors blurred.", env=worker.env)
        _, body = http_json(f"{worker.url}/requests/{reviewed}")
        assert body["state"] == "completed"

        # The portability copies wait for the DPO to send them on (Art. 20(2)): the
        # status names the organisation (sealed on the broker and in the store, opened
        # for the DPO); an approval that does not say what became of it is refused.
        request_reaching(worker.url, ported, "awaiting_review", "the copies to wait for the DPO")
        shown = cli("request", "status", ported, env=worker.env)
        assert "Bright Energy" in shown
        assert "--sent-on" in shown
        unsaid = run_cli("request", "approve", ported, env=worker.env)
        assert unsaid.returncode == 1
        assert "--sent-on" in unsaid.stdout + unsaid.stderr
        sent_on = uk_today().isoformat()
        cli("request", "approve", ported, "--sent-on", sent_on, env=worker.env)

        # The attorney's response: to them, at the address they gave (sealed on the
        # broker; the notice's own text never names them), and so is the request.
        request_reaching(worker.url, by_attorney, "completed", "the attorney's request")
        (for_attorney,) = records_where(
            local_runtime,
            NOTIFICATIONS,
            lambda c: isinstance(c, r.SubjectNotification) and c.request_id == by_attorney,
        )
        assert for_attorney.representative is not None
        assert is_encrypted(for_attorney.representative)
        assert "Jane Doe" not in for_attorney.message
        assert for_attorney.message.startswith("This answers the request you made on behalf")
        (asked,) = records_where(
            local_runtime,
            COMMANDS,
            lambda c: isinstance(c, r.RequestSubmitted) and c.request_id == by_attorney,
        )
        assert asked.representative is not None
        assert is_encrypted(asked.representative)

        # The DPO's caseload: the two objections still open, the overdue one first; with
        # --due-within 0, only it.
        listed = json.loads(cli("request", "list", "--json", env=worker.env))
        assert [e["request_id"] for e in listed["requests"]] == [breached, approaching]
        assert listed["requests"][0]["days_left"] < 0 <= listed["requests"][1]["days_left"]
        assert listed["requests"][0]["request_type"] == "objection"
        assert customers[1].subject_id not in json.dumps(listed)
        overdue = json.loads(cli("request", "list", "--due-within", "0", "--json", env=worker.env))
        assert [e["request_id"] for e in overdue["requests"]] == [breached]
        responses = [
            c.value
            for c in read_topic(local_runtime, NOTIFICATIONS)
            if isinstance(c.value, r.SubjectNotification) and c.value.kind == "access_response"
        ]
        notes = [n for n in responses if n.request_id == access]
        assert len(notes) == 1
        (footage,) = [n for n in responses if n.request_id == reviewed]
        # On the topic the response is sealed under the subject's key; whoever sends it
        # to the subject (a notifier holding the KEK) opens it through the key service.
        assert notes[0].document is not None
        assert is_encrypted(notes[0].document)
        assert all(is_encrypted(ref.location) for ref in notes[0].exports)
        kek = kekfile.provider(local_runtime.kek_file, "dev", print)
        keys = key_service(worker.url, kek, DPO)
        try:
            notes = [decrypt_record(notes[0], keys)]
            footage = decrypt_record(footage, keys)
            assert decrypt_record(for_attorney, keys).representative == ATTORNEY
        finally:
            keys.close()
        # The subject's copy of the footage is the DPO's redacted one, and they are told
        cctv = [ref.location for ref in footage.exports if ref.location.startswith(root)]
        assert cctv == [redacted]
        assert "we redacted the copy from cctv" in footage.message
        assert json.loads(footage.document or "{}")["review_reason"] == "Other visitors blurred."
        document = json.loads(notes[0].document or "{}")
        text = json.dumps(document).lower()
        for art15 in ("purposes", "recipients", "retention", "ico"):
            assert art15 in text, art15
        # privops' own records of the subject are in the response: the consent state the
        # worker answers on /consent, and the systems that reported the subject.
        own = document["privacy_records"]
        _, consent = http_json(f"{worker.url}/consent/{asker.subject_id}")
        assert "marketing:post" in consent["preferences"]
        assert sorted(f"{p['purpose']}:{p['channel']}" for p in own["preferences"]) == sorted(
            consent["preferences"]
        )
        assert {k["system"] for k in own["known_in"]} == {s.value for s in held[asker.subject_id]}
        # ... and the record of their earlier request, not the access request itself.
        assert [
            (p["request_id"], p["type"], p["state"]) for p in own["rights_requests"]["listed"]
        ] == [(completed, "consent_withdrawal", "completed")]
        assert notes[0].exports
        listed = {s["system"]: s["categories"] for s in manifest["systems"]}
        _, answered = http_json(f"{worker.url}/requests/{access}")
        reported = {
            t["system"]: t["export"]["categories"] for t in answered["tasks"] if t["export"]
        }
        narrower = []
        for ref in notes[0].exports:
            # Locations are under each system's declared export root (issue 13.7).
            path = exported_file(data_dir, ref.location)
            assert path is not None
            assert path.exists()
            assert ref.record_count >= 0
            assert ref.checksum.startswith("sha256:")
            # Each copy says what it holds (through Avro on the broker), and the letter
            # lists that for its system, not every category the data map allows it; the
            # notice carries where the copies are, not the categories in the clear.
            assert ref.categories is None
            document = json.loads(path.read_text())
            system = document["system"]
            in_copy = {t["category"] for t in document["tables"].values() if t["rows"]}
            in_copy |= {s["category"] for s in document["supplementary_statements"]}
            assert reported[system] == [c.value for c in Category if c.value in in_copy], system
            assert listed[system] == reported[system], system
            mapped = {c.value for c in DATAMAP.systems[System(system)].categories}
            narrower += [system] if in_copy < mapped else []
        assert narrower, "no copy held less than its data map: the test shows nothing"

        # The portability copies: from the systems holding portable data only, each of
        # the categories its purposes make portable, machine-readable, and no manifest.
        body = request_reaching(
            worker.url, ported, "completed", "the portability request to complete"
        )
        portable = DATAMAP.portable()
        asked = {t["system"] for t in body["tasks"]}
        assert System.orders.value in asked
        assert asked <= {s.value for s in portable}  # never cctv, nor telephony
        assert body["manifest"]["kind"] == "portability_response"  # no Art. 15 manifest
        (told,) = [
            c.value
            for c in read_topic(local_runtime, NOTIFICATIONS)
            if isinstance(c.value, r.SubjectNotification) and c.value.request_id == ported
        ]
        assert told.kind == "portability_response"
        assert told.document is None
        assert "Bright Energy" not in repr(told)
        keys = key_service(worker.url, kek, DPO)
        try:
            told = decrypt_record(told, keys)
        finally:
            keys.close()
        assert "machine-readable" in told.message
        assert told.message.startswith(f"On {sent_on} we sent a copy of the personal data")
        assert "to the organisation you named" in told.message
        assert body["send_to"] == ELSEWHERE
        assert body["manifest"]["transmission"]["sent_on"] == sent_on
        # Sealed on the broker: the command as the CLI sent it, opened for the DPO only.
        (submitted,) = records_where(
            local_runtime,
            COMMANDS,
            lambda c: isinstance(c, r.RequestSubmitted) and c.request_id == ported,
        )
        assert submitted.send_to is not None
        assert is_encrypted(submitted.send_to)
        copied = set()
        for ref in told.exports:
            path = exported_file(data_dir, ref.location)
            assert path is not None
            assert path.exists()
            document = json.loads(path.read_text())
            system = System(document["system"])
            in_copy = {t["category"] for t in document["tables"].values()}
            assert in_copy <= {c.value for c in portable[system]}, system
            assert document["portability"]["article"] == "UK GDPR Art. 20"
            copied.add(system)
        assert System.orders in copied
        orders = next(t for t in body["tasks"] if t["system"] == "orders")
        assert Category.credit.value not in orders["export"]["categories"]

        # The asker now asks for their erasure: their copies went out minutes ago, so it
        # waits for them to fetch them (privops.core.response_first), as the DPO sees; they have,
        # and the DPO releases it.
        erasure = cli(
            "request", "erase", "--subject", asker.subject_id, "--verified-now", "-q",
            env=worker.env,
        )  # fmt: skip
        _, waiting = http_json(f"{worker.url}/requests/{erasure}")
        assert (waiting["waits_for"], waiting["tasks"]) == ([access], [])
        assert waiting["erase_on"] > uk_today().isoformat()  # its day, told in no letter yet
        shown = cli("request", "status", erasure, env=worker.env)
        assert "waits for" in shown
        assert f"privops request erase-now {erasure}" in " ".join(shown.split())
        cli("request", "erase-now", erasure, env=worker.env)
        # (orders keeps the financial records: partially completed, with their ground)
        erased = request_reaching(
            worker.url, erasure, "partially_completed", "the released erasure"
        )
        assert {t["action"] for t in erased["tasks"]} == {"erase"}

        # The accountability report, from this deployment's audit steps: eight requests
        # logged today, six closed (the erasure partially), the objection received 45
        # days ago late; the erasure waited for the access response, and was released.
        app_id = worker.env["PRIVOPS_APP_ID"]
        report = json.loads(
            cli("audit", "report", "--chain", f"{app_id}/", "--json", env=worker.env)
        )
        assert report["app_ids"] == [app_id]
        logged = {row["request_type"]: row["received"] for row in report["by_type"]}
        assert logged == {
            "objection": 2, "consent_withdrawal": 1, "access": 3, "portability": 1, "erasure": 1
        }  # fmt: skip
        total = report["total"]
        assert (total["received"], total["closed"], total["open"]) == (8, 6, 2)
        assert (total["completed"], total["partially_completed"], total["late"]) == (5, 1, 1)
        assert (total["waited_for_response"], total["released_by_dpo"]) == (1, 1)
    finally:
        stop(connectors)
        worker.stop()
