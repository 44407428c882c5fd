"""`privops demo`: the main job on embedded defaults, told as a story.

Starts what is missing (local Kafka + registry, topics), a real worker subprocess and the
six reference connectors over SQLite stores, publishes a day of business, then drives
every workflow through the real command topic and prints what happened: consent
decisions, an access response, an erasure with retained invoices, a restriction during
an accuracy complaint, a silent system escalated, a deadline approaching. It stops what
it started. Each run uses its own worker id and data, so running it twice is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
from rich.console import Console
from rich.panel import Panel

from privops.adapters import runtime, web_tls
from privops.adapters.acls import DPO
from privops.adapters.api_auth import api_auth
from privops.adapters.kafka import client_options, cluster_id, producer, read_all
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings
from privops.adapters.signing_keys import signing_key
from privops.connectors.reference import (
    FakeCustomer,
    Knobs,
    open_store,
    seed_customers,
    seed_stores,
)
from privops.contract import default_datamap
from privops.core import records as r
from privops.core.clock import Clock
from privops.core.errors import PrivopsError
from privops.core.signing import SigningKey
from privops.core.topics import ALERTS, COMMANDS
from privops.core.vocab import Channel, ObjectionScope, Purpose, RequestType, System
from privops.tools.command_sealing import (
    ciphertexts,
    new_key,
    plaintexts,
    seal_body,
    seal_command,
    seal_path,
)
from privops.tools.simulate import build_runners, publish_business_day, run_connectors
from privops.tools.views import art15_table, exports_table, table, task_exports, yes_no
from privops.tools.worker_process import WorkerProcess

A = TypeVar("A", bound=r.Alert)

CUSTOMERS = 12
WORKER_START_TIMEOUT_S = 120.0
SILENT = System.cctv


@dataclass
class Demo:
    settings: Settings
    console: Console
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    started: list[runtime.Component] = field(default_factory=list)
    worker: WorkerProcess | None = None
    serde: Serde | None = None
    clock: Clock = field(default_factory=Clock)
    key: SigningKey | None = None
    cluster: str | None = None  # the Kafka cluster's id, which commands are signed for

    @property
    def root(self) -> Path:
        return self.settings.home / "demo" / self.run_id

    @property
    def url(self) -> str:
        return web_tls.local_url(self.settings)

    def step(self, title: str, text: str = "") -> None:
        self.console.rule(f"[bold cyan]{title}")
        if text:
            self.console.print(text)

    # --- setting up ---------------------------------------------------------------------
    def start_runtime(self) -> None:
        """Start Kafka and the registry unless they run; stop only what we started."""
        for component in runtime.components(self.settings):
            if component.start(lambda m: self.console.print(f"• {m}")):
                self.started.append(component)

    def demo_datamap(self) -> Path:
        """The company's data map with demo-sized answer deadlines (seconds, not hours)."""
        text = default_datamap().read_text(encoding="utf-8")
        text = re.sub(r"sla_seconds: \d+", "sla_seconds: 3", text)
        text = re.sub(
            r"retry: \{[^}]*\}",
            "retry: {max_attempts: 3, backoff_seconds: 1, backoff_multiplier: 2}",
            text,
        )
        path = self.root / "datamap.yaml"
        path.write_text(text)
        return path

    @property
    def app_id(self) -> str:
        """The demo worker's app id: its audit chains start with it."""
        return f"privops-demo-{self.run_id}"

    def start_worker(self) -> None:
        env = {
            **os.environ,
            "PRIVOPS_APP_ID": self.app_id,
            "PRIVOPS_DATA_DIR": str(self.root / "worker"),
            "PRIVOPS_DATAMAP": str(self.demo_datamap()),
            "PRIVOPS_CONSUMER_OFFSET_RESET": "latest",
        }
        log = self.root / "worker.log"
        self.console.print(f"• starting the privops worker (log: {log})")
        trust = web_tls.client_context(self.settings) if self.url.startswith("https") else None
        self.worker = WorkerProcess.spawn(env, self.url, log, trust=trust)
        self.worker.wait_healthy(WORKER_START_TIMEOUT_S)
        self.console.print(f"• worker ready at {self.url}")

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(30)
        for component in reversed(self.started):
            component.stop(lambda m: self.console.print(f"• {m}"))

    # --- talking to privops -------------------------------------------------------------
    async def submit(self, command: r.RequestSubmitted) -> str:
        """Sign `command` as the CLI would (the worker trusts nothing else) and publish it."""
        await self.publish(await self.sealed(command), command.subject_id)
        return command.request_id

    async def publish(self, command: r.Command, subject_id: str) -> None:
        """Sign ``command`` (sealed already, as the CLI does: privops.tools.command_sealing)
        and publish it under its subject's key."""
        assert self.serde is not None
        if self.key is None:
            self.key = signing_key(
                self.settings, command.actor, say=lambda m: self.console.print(f"• {m}")
            )
        client = client_options(self.settings, default=DPO)
        if self.cluster is None:
            self.cluster = await cluster_id(client)
        command = self.key.sign(command, deployment=self.cluster)
        async with producer(client) as prod:
            await prod.send_and_wait(COMMANDS, self.serde.encode(command), key=subject_id.encode())

    def request_command(
        self, kind: RequestType, subject: str, *, days_ago: int = 0, **extra: Any
    ) -> r.RequestSubmitted:
        received = self.clock.today() - timedelta(days=days_ago)
        return r.RequestSubmitted(
            command_id=uuid.uuid4().hex,
            request_id=f"REQ-{uuid.uuid4().hex[:12].upper()}",
            issued_at=self.clock.now(),
            actor=self.settings.actor,
            request_type=kind,
            subject_id=subject,
            received_on=received,
            **extra,
        )

    async def get(self, path: str) -> tuple[int, Any]:
        """The worker's answer, asked as the DPO."""
        return await self._ask("GET", path)

    async def _ask(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        auth = api_auth(self.settings, DPO)
        trust = web_tls.client_context(self.settings)
        async with httpx.AsyncClient(timeout=5, auth=auth, verify=trust) as client:
            resp = await client.request(method, f"{self.url}{path}", json=body)
            return resp.status_code, resp.json()

    async def sealed(self, command: r.RequestSubmitted) -> r.RequestSubmitted:
        """``command`` with its text sealed by the worker's key service."""
        plain = plaintexts(command)
        if not plain:
            return command
        fresh = new_key(command, command.request_type)
        path, body = seal_path(command.subject_id), seal_body(plain, fresh)
        status, answer = await self._ask("POST", path, body)
        if status != 200:
            raise PrivopsError(f"the worker's key service did not seal the demo's text ({status})")
        return seal_command(
            command,
            command.subject_id,
            command.request_type,
            lambda subject, asked, _new: ciphertexts(answer.get("fields"), asked, subject),
        )

    async def until(self, what: str, probe: Callable[[], Awaitable[Any]]) -> Any:
        deadline = time.monotonic() + 90
        with self.console.status(f"waiting for {what}..."):
            while time.monotonic() < deadline:
                found = await probe()
                if found:
                    return found
                await asyncio.sleep(0.5)
        raise PrivopsError(f"timed out waiting for {what}")

    async def finished(self, rid: str, states: tuple[str, ...]) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            status, body = await self.get(f"/requests/{rid}")
            return body if status == 200 and body["state"] in states else None

        result: dict[str, Any] = await self.until(f"request {rid}", probe)
        return result

    async def first_alert(
        self, rid: str, kind: type[A], what: str, where: Callable[[A], bool] = lambda _: True
    ) -> A:
        """The first alert of `kind` about a request that is ``where``, once the worker
        has published it."""
        assert self.serde is not None
        decode = self.serde.decode

        async def probe() -> A | None:
            # Alerts go to ops, not to the DPO principal: read as the worker.
            rows = await read_all(client_options(self.settings), ALERTS, decode=decode)
            alerts = (c.value for c in rows if isinstance(c.value, kind))
            return next((a for a in alerts if a.request_id == rid and where(a)), None)

        alert: A = await self.until(what, probe)
        return alert

    async def consent_until(
        self, subject_id: str, what: str, landed: Callable[[int, Any], bool], query: str = ""
    ) -> tuple[int, Any]:
        """The worker's consent answer once `landed(status, body)`: effects of a request
        reach the consent state a moment after the request itself (a directive)."""

        async def probe() -> tuple[int, Any] | None:
            answer = await self.get(f"/consent/{subject_id}{query}")
            return answer if landed(*answer) else None

        found: tuple[int, Any] = await self.until(what, probe)
        return found


@dataclass(frozen=True)
class Ending:
    """What the closing "where to look" points at."""

    request_id: str
    data_dir: Path


def _complainant(customers: list[FakeCustomer]) -> FakeCustomer:
    """The customer whose complaint about accuracy restricts their data (chapter 5)."""
    return customers[2]


def _pick(customers: list[FakeCustomer], pred: Callable[[FakeCustomer], bool]) -> FakeCustomer:
    return next(c for c in customers if pred(c))


def _recent_orders(c: FakeCustomer, clock: Clock) -> bool:
    return any(o.placed_at > clock.now() - timedelta(days=365 * 6) for o in c.orders)


async def story(demo: Demo) -> Ending:
    console, settings = demo.console, demo.settings
    demo.serde = Serde.for_settings(settings)
    await asyncio.to_thread(demo.serde.register_all)  # the worker already made the topics

    customers = seed_customers(CUSTOMERS)
    data_dir = demo.root / "systems"
    seed_stores(data_dir, customers)
    stop = asyncio.Event()
    runners = build_runners(
        settings,
        data_dir,
        knobs={SILENT: Knobs(silent=True), System.crm: Knobs(delay_seconds=1.0)},
        group_prefix=f"demo-{demo.run_id}",
        start_from="latest",
    )
    connectors = asyncio.create_task(
        run_connectors(settings, data_dir, stop=stop, customers=customers, runners=runners)
    )
    await asyncio.gather(*(runner.ready.wait() for runner in runners))
    console.print(f"• six reference systems answering over SQLite stores in {data_dir}")
    console.print(f"  ({SILENT.value} is deliberately silent; crm answers slowly)")
    try:
        rid = await _chapters(demo, customers, data_dir)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connectors, 20)
    return Ending(rid, data_dir)


NEW_SUPPLIER: Final = "Bright Energy Ltd (switching team)"
"""Where the demo's portability request asks the copies to go (Art. 20(2))."""


async def _chapters(demo: Demo, customers: list[FakeCustomer], data_dir: Path) -> str:
    """Tell the story; the id of the last request, for the closing pointers."""
    console, clock = demo.console, demo.clock
    demo.step(
        "1. A day of business",
        "Orders, CRM, telephony, marketing, web and CCTV publish Avro events to Kafka.",
    )
    counts = await publish_business_day(demo.settings, customers)
    events = table("event", "count")
    for name, n in sorted(counts.items()):
        events.add_row(name, str(n))
    console.print(events)

    async def all_known() -> bool:
        for c in customers:
            status, _ = await demo.get(f"/consent/{c.subject_id}")
            if status != 200:
                return False
        return True

    await demo.until("the worker to take in the day", all_known)

    demo.step("2. May we contact them?", "Decisions per channel, with the rule and evidence.")
    decisions = table("customer", *[c.value for c in Channel])
    for c in customers[:6]:
        cells = []
        for channel in Channel:
            # A 503 (the worker's partitions moving) is asked again, as any caller should.
            _, body = await demo.consent_until(
                c.subject_id,
                "a consent answer",
                lambda status, _body: status == 200,
                f"?purpose={Purpose.marketing.value}&channel={channel.value}",
            )
            mark = "[green]yes[/]" if body["allowed"] else "[red]no[/]"
            cells.append(f"{mark} {body['rule']}")
        decisions.add_row(c.subject_id, *cells)
    console.print(decisions)

    demo.step("3. An access request (DSAR): one calendar month, UK rules")
    subject = asked = _pick(customers, lambda c: not c.in_system(SILENT))
    rid = await demo.submit(
        demo.request_command(
            RequestType.access, subject.subject_id, identity_verified_on=clock.today()
        )
    )
    body = await demo.finished(rid, ("completed", "partially_completed"))
    manifest = body["manifest"] or {}
    console.print(f"request {rid}: [bold]{body['state']}[/], due {body['due_on']}")
    exports = exports_table(task_exports(body["tasks"]), title="Exports (the copy of the data)")
    if exports is not None:
        console.print(exports)
    console.print("[bold]Art. 15 information in the response[/]")
    console.print(art15_table(manifest))
    # The same customer's portability request: only what they gave us on consent or a
    # contract, so fewer systems and categories than the access copy (no Art. 15 manifest);
    # sent on to their new supplier too (Art. 20(2)), which the DPO does and records.
    rid = await demo.submit(
        demo.request_command(
            RequestType.portability,
            subject.subject_id,
            identity_verified_on=clock.today(),
            send_to=NEW_SUPPLIER,
        )
    )
    await demo.finished(rid, ("awaiting_review",))
    console.print(
        f"portability request {rid}: the copies wait for the DPO to send them to the new "
        "supplier the customer named (Art. 20(2)); the DPO sends them and says so"
    )
    approved = r.AccessResponseApproved(
        command_id=uuid.uuid4().hex,
        request_id=rid,
        issued_at=clock.now(),
        actor=demo.settings.actor,
        transmitted_on=clock.today(),
    )
    await demo.publish(approved, subject.subject_id)  # no text of anyone's to seal
    body = await demo.finished(rid, ("completed", "partially_completed"))
    sent = (body["manifest"] or {}).get("transmission") or {}
    console.print(
        f"portability request {rid} (Art. 20): [bold]{body['state']}[/], sent on "
        f"{sent.get('sent_on')}"
    )
    ported = exports_table(
        task_exports(body["tasks"]), title="Portable copies (machine-readable, Art. 20)"
    )
    if ported is not None:
        console.print(ported)

    demo.step("4. An erasure, subject to conditions (Art. 17(3))")
    # Neither the access request's customer (an erasure deletes their export too, and the
    # demo leaves the copy of the data to look at) nor the complaint's (chapter 5).
    subject = _pick(
        customers[1:],
        lambda c: (
            c not in (asked, _complainant(customers))
            and _recent_orders(c, clock)
            and not c.in_system(SILENT)
        ),
    )
    before = {s: _row_count(data_dir, s, subject) for s in System if subject.in_system(s)}
    rid = await demo.submit(
        demo.request_command(
            RequestType.erasure, subject.subject_id, identity_verified_on=clock.today()
        )
    )
    body = await demo.finished(rid, ("completed", "partially_completed"))
    outcome = table("system", "task", "rows before", "rows after", "kept (ground)")
    for t in body["tasks"]:
        system = System(t["system"])
        kept = "\n".join(f"{k['category']} ({k['ground']})" for k in t["keep"]) or "-"
        outcome.add_row(
            system.value,
            t["state"],
            str(before.get(system, "-")),
            str(_row_count(data_dir, system, subject)),
            kept,
        )
    console.print(f"request {rid}: [bold]{body['state']}[/]")
    console.print(outcome)
    status, consent = await demo.consent_until(
        subject.subject_id,
        "the erased subject to be suppressed",
        lambda status, body: status == 404 or (status == 200 and not body["allowed"]),
        "?purpose=marketing&channel=email",
    )
    why = consent["reason"] if status == 200 else "nothing is left on the subject"
    console.print(f"contact by email now: no ({why})")

    demo.step("5. A complaint about accuracy: restrict while we investigate (Art. 18)")
    subject = _complainant(customers)
    complaint = demo.request_command(
        RequestType.complaint, subject.subject_id, reason="my address is wrong"
    )
    await demo.submit(complaint)
    rid = await demo.submit(
        demo.request_command(
            RequestType.restriction,
            subject.subject_id,
            identity_verified_on=clock.today(),
            linked_request_id=complaint.request_id,
        )
    )
    body = await demo.finished(rid, ("completed", "partially_completed", "awaiting_systems"))
    _, state = await demo.consent_until(
        subject.subject_id,
        "the restriction to reach the consent state",
        lambda status, body: status == 200 and bool(body["restricted"]),
    )
    console.print(
        f"restriction {rid}: {body['state']}; "
        f"consent state restricted = {yes_no(state['restricted'])}"
    )
    _, complaint_body = await demo.get(f"/requests/{complaint.request_id}")
    console.print(
        f"complaint {complaint.request_id}: acknowledgement due {complaint_body['due_on']}"
    )

    demo.step(f"6. A silent system: {SILENT.value} never answers")
    subject = _pick(customers, lambda c: c.in_system(SILENT))
    rid = await demo.submit(
        demo.request_command(
            RequestType.erasure, subject.subject_id, identity_verified_on=clock.today()
        )
    )
    # The silent system's escalation (another system's failure would escalate too).
    escalated = await demo.first_alert(
        rid, r.TaskEscalated, "the escalation", where=lambda a: a.system is SILENT
    )
    console.print(
        f"[yellow]TaskEscalated[/] for {rid}: {escalated.system.value} silent after "
        f"{escalated.attempts} attempts; it keeps being re-sent at the longest backoff"
    )

    demo.step("7. A deadline approaching: an objection awaiting the DPO's decision")
    # A complaint is acknowledged at once (s.164A), so its deadline never nears; an
    # objection to legitimate-interest processing waits for `request decide-objection`.
    late = demo.request_command(
        RequestType.objection,
        customers[3].subject_id,
        days_ago=28,
        objection_scope=ObjectionScope.legitimate_interest,
    )
    late = late.model_copy(
        update={"identity_received_on": late.received_on, "identity_verified_on": late.received_on}
    )
    rid = await demo.submit(late)
    approaching = await demo.first_alert(rid, r.DeadlineApproaching, "the deadline alert")
    console.print(
        f"[yellow]DeadlineApproaching[/] for {rid}: due {approaching.due_on}, "
        f"{approaching.days_left} day(s) left"
    )

    return rid


def _row_count(data_dir: Path, system: System, customer: FakeCustomer) -> int:
    rows = open_store(data_dir, system).rows(customer.identifiers(system))
    return sum(len(v) for v in rows.values())


def where_to_look(demo: Demo, ending: Ending, *, kept: bool) -> Panel:
    """Pointers that work in the state the demo left: live commands only if what they
    ask is still running (the worker if kept; Kafka if kept or not started by the demo)."""
    rid, data_dir = ending.request_id, ending.data_dir
    lines: list[str] = []
    if kept:
        lines += [
            f"metrics      {demo.url}/metrics  (Prometheus; dashboards in deploy/grafana/)",
            f"a request    privops request status {rid}",
            "open ones    privops request list",
            "systems      the demo's simulated systems stopped with it; for them to answer",
            "             your own requests' tasks, run in another terminal:",
            f"             privops simulate --data-dir {data_dir} --no-events --from latest",
        ]
    if kept or not demo.started:
        lines += [
            f"its audit    privops audit show {rid}",
            "the chain    privops audit verify",
            f"the report   privops audit report --chain {demo.app_id}/",
        ]
    lines += [f"worker log   {demo.root / 'worker.log'}", f"stores       {data_dir}"]
    if not kept:
        stopped = "the worker and the local runtime" if demo.started else "the worker"
        lines.append(f"stopped      {stopped}; to explore afterwards run `privops demo --keep`")
    return Panel.fit("\n".join(lines), title="Where to look")


def run(settings: Settings, console: Console, *, keep: bool = False) -> None:
    console = Console(width=max(console.width, 120))
    demo = Demo(settings, console)
    demo.root.mkdir(parents=True, exist_ok=True)
    console.print(Panel.fit("privops demo: privacy operations on Kafka, end to end", style="bold"))
    try:
        demo.start_runtime()
        demo.start_worker()
        ending = asyncio.run(story(demo))
        console.print("[bold green]demo complete[/]")
    finally:
        kept = keep and demo.worker is not None and demo.worker.running
        if kept and demo.worker is not None:
            console.print(
                f"left running: the worker (pid {demo.worker.proc.pid}; stop it with "
                f"`kill {demo.worker.proc.pid}`) and the local runtime (`privops local down`)"
            )
        else:
            demo.stop()
    console.rule("[bold cyan]Where to look")
    console.print(where_to_look(demo, ending, kept=kept))
    (demo.root / "done.json").write_text(json.dumps({"run": demo.run_id}))
