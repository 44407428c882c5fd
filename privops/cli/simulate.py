"""`privops simulate`: the six reference business systems, answering privops' tasks.

Seeds each system's SQLite store with fake customers (once), optionally publishes a day of
business to ``<system>.events``, then runs every reference connector until Ctrl-C. Each
system applies the legal holds on it and deletes its rows by age (``--purge-every``), as
the data map's periods say, once it has read the holds.

Like real systems, they encrypt the events' personal fields under each subject's key from
privops' key service, and open their tasks through it: the worker must be running
(``--worker-url``; ``--plaintext`` publishes unencrypted events, as before encryption).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import typer
from aiokafka.errors import KafkaError
from rich.markup import escape
from rich.table import Table

from privops.adapters import web_tls
from privops.adapters.settings import Settings
from privops.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    choices,
    console,
    fail,
    run_async,
    say,
    settings,
)
from privops.connectors.encryption import worker_url as default_worker_url
from privops.connectors.reference import (
    MAX_CUSTOMERS,
    FakeCustomer,
    Knobs,
    PurgeReport,
    open_store,
    seed_customers,
)
from privops.connectors.reference import seed_stores as _seed_stores
from privops.connectors.sdk import serve_metrics
from privops.core.errors import ConfigError, RuntimeUnavailable
from privops.core.records import Task, TaskCompleted, TaskFailed, TaskResult, TaskRetained
from privops.core.vocab import System
from privops.tools.simulate import (
    DEFAULT_CUSTOMERS,
    build_runners,
    default_data_dir,
    publish_business_day,
)
from privops.tools.simulate import run_connectors as _run_connectors
from privops.tools.views import table

app = typer.Typer(
    help="Simulated business systems (reference connectors) answering privops' tasks.",
    no_args_is_help=False,
)

SYSTEM_NAMES = choices(System)
N = TypeVar("N", int, float)
PURGE_EVERY_S = 3600.0


def _system(raw: str, option: str, example: str) -> System:
    try:
        return System(raw.strip().lower())
    except ValueError:
        fail(f"{option}: unknown system {raw!r}; use one of {SYSTEM_NAMES} (e.g. {example})")


def _assignments(values: Sequence[str], option: str, unit: str, example: str) -> dict[System, str]:
    out: dict[System, str] = {}
    for raw in values:
        name, sep, value = raw.partition("=")
        if not sep or not value.strip():
            fail(f"{option} expects SYSTEM={unit}, e.g. {example} (got {raw!r})")
        out[_system(name, option, example)] = value.strip()
    return out


def _bounded(
    values: Sequence[str],
    option: str,
    unit: str,
    example: str,
    *,
    parse: Callable[[str], N],
    what: str,
    sample: str,
    upper: int,
) -> dict[System, N]:
    """SYSTEM=NUMBER options, each from 0 to `upper`; exit 2 naming the one at fault."""
    out: dict[System, N] = {}
    for system, value in _assignments(values, option, unit, example).items():
        try:
            out[system] = parse(value)
        except ValueError:
            fail(f"{option} {system}={value}: {unit} must be {what}, e.g. {sample.format(system)}")
        if not 0 <= out[system] <= upper:
            fail(f"{option} {system}={value}: {unit} must be between 0 and {upper}")
    return out


def parse_knobs(
    slow: Sequence[str], fail_first: Sequence[str], silent: Sequence[str]
) -> dict[System, Knobs]:
    """--slow/--fail-first/--silent options as per-system Knobs; bad input exits 2."""
    delays = _bounded(
        slow,
        "--slow",
        "SECONDS",
        "--slow crm=3",
        parse=float,
        what="a number",
        sample="--slow {}=2.5",
        upper=3600,
    )
    failures = _bounded(
        fail_first,
        "--fail-first",
        "N",
        "--fail-first orders=2",
        parse=int,
        what="a whole number",
        sample="{}=2",
        upper=100,
    )
    quiet = {_system(raw, "--silent", "--silent cctv") for raw in silent}
    return {
        system: Knobs(
            delay_seconds=delays.get(system, 0.0),
            fail_first=failures.get(system, 0),
            silent=system in quiet,
        )
        for system in {*delays, *failures, *quiet}
    }


def usable_data_dir(target: Path) -> Path:
    """The stores' directory, made if missing; exit 2 before anything is seeded,
    published or started, rather than a traceback from SQLite half-way through."""
    where = f"--data-dir {escape(str(target))}"
    if target.exists() and not target.is_dir():
        fail(f"{where} is a file, not a directory: give a directory for the systems' stores")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{where}: cannot create it ({exc.strerror}); give a directory you can write to")
    if not os.access(target, os.W_OK | os.X_OK):
        fail(f"{where}: not writable by this user; give a directory you can write to")
    return target


def _describe(result: TaskResult | None) -> str:
    if result is None:
        return "[yellow]no answer (silent)[/]"
    if isinstance(result, TaskCompleted):
        extra = f", export {result.export.record_count} records" if result.export else ""
        return f"[green]completed[/] ({result.records_affected} rows{extra})"
    if isinstance(result, TaskRetained):
        kept = ", ".join(c.value for c in result.categories)
        return f"[cyan]retained[/] ({kept})"
    if isinstance(result, TaskFailed):
        kind = "retryable" if result.retryable else "final"
        return f"[red]failed[/] ({kind}: {result.reason})"
    return "[magenta]not found[/]"


def _on_answer(task: Task, result: TaskResult | None, duplicate: bool) -> None:
    again = " [dim](already answered: re-sent from ledger)[/]" if duplicate else ""
    console.print(
        f"[dim]{datetime.now().astimezone():%H:%M:%S}[/] "
        f"[bold]{task.system.value:<9}[/] {task.action.value:<16} task {task.task_id} "
        f"attempt {task.attempt} -> {_describe(result)}{again}"
    )


def _on_purge(system: System, report: PurgeReport) -> None:
    if not report.total and not report.undated:
        return
    counts = [f"{table} {n}" for table, n in sorted(report.deleted.items()) if n]
    if report.statements:
        counts.append(f"supplementary statements {report.statements}")
    if report.exports:
        counts.append(f"access copies {report.exports}")
    line = f"deleted by age (past the data map's period, not held): {', '.join(counts)}"
    if not report.total:
        line = "deleted nothing by age"
    if report.undated:
        kept = ", ".join(f"{table} {n}" for table, n in sorted(report.undated.items()))
        line += f"; kept, of unknown age (no collection time, or not a time): {kept}"
    console.print(
        f"[dim]{datetime.now().astimezone():%H:%M:%S}[/] [bold]{system.value:<9}[/] {line}"
    )


def _store_table(data_dir: Path, seeded: dict[System, bool]) -> Table:
    out = table("system", "store", "state", "rows")
    for system, now in seeded.items():
        store = open_store(data_dir, system)
        counts = ", ".join(f"{t.name} {store.count(t.name)}" for t in store.spec.tables)
        out.add_row(system.value, str(store.path), "seeded now" if now else "existing", counts)
    return out


async def _publish(
    cfg: Settings, people: Sequence[FakeCustomer], day: date | None, url: str, plaintext: bool
) -> None:
    how = "in plaintext" if plaintext else f"encrypted under keys from {url}"
    say(f"publishing a business day for {len(people)} customers to <system>.events ({how}) ...")
    try:
        counts = await publish_business_day(
            cfg, people, date=day, worker_url=url, plaintext=plaintext
        )
    except ConfigError as exc:  # the broker let this system's principal write nothing
        fail(str(exc))
    except RuntimeUnavailable as exc:
        if isinstance(exc.__cause__, KafkaError):  # a send to <system>.events failed
            fail(str(exc), EXIT_UNAVAILABLE)
        fail(
            f"{exc}; start the worker (`privops worker`) or point --worker-url at one, "
            "or publish unencrypted events with --plaintext",
            EXIT_UNAVAILABLE,
        )
    published = table("event", "published")
    for name, n in sorted(counts.items()):
        published.add_row(name, str(n))
    console.print(published)


async def _main(
    cfg: Settings,
    data_dir: Path,
    customers: int,
    events: bool,
    day: date | None,
    knobs: dict[System, Knobs],
    reset: bool,
    group_prefix: str | None = None,
    start_from: str = "earliest",
    url: str | None = None,
    plaintext: bool = False,
    purge_every: float = PURGE_EVERY_S,
) -> None:
    people = seed_customers(customers)
    seeded = await asyncio.to_thread(_seed_stores, data_dir, people, reset=reset)
    console.print(_store_table(data_dir, seeded))
    url = url or default_worker_url(cfg)
    if events:
        await _publish(cfg, people, day, url, plaintext)
    for system, k in sorted(knobs.items()):
        say(
            f"{system.value}: delay {k.delay_seconds}s, "
            f"fail first {k.fail_first}, silent {k.silent}"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    say(
        f"connectors running for {SYSTEM_NAMES} against {cfg.kafka_bootstrap}; "
        "exports in " + str(data_dir / "exports") + " — Ctrl-C to stop"
    )
    runners = build_runners(
        cfg,
        data_dir,
        knobs=knobs,
        group_prefix=group_prefix,
        start_from="latest" if start_from == "latest" else "earliest",
        on_answer=_on_answer,
        worker_url=url,
    )

    async def announce_ready() -> None:
        await asyncio.gather(*(runner.ready.wait() for runner in runners))
        say("connectors ready: partitions assigned")

    async def announce_holds() -> None:
        await asyncio.gather(*(runner.holds_ready.wait() for runner in runners))
        held = sum(len(runner.holds.kept) for runner in runners)
        searches = sum(len(runner.holds.preserved) for runner in runners)
        every = f"every {purge_every:g} s" if purge_every > 0 else "off (--purge-every 0)"
        say(
            f"legal holds read: {held} held across the systems, {searches} open searches' "
            f"finds kept; deletion by age {every}"
        )

    announcements = [asyncio.create_task(announce_ready()), asyncio.create_task(announce_holds())]
    stats = await _run_connectors(
        cfg,
        data_dir,
        knobs=knobs,
        stop=stop,
        customers=people,
        runners=runners,
        purge_every=purge_every,
        on_purge=_on_purge,
    )
    for announcement in announcements:
        announcement.cancel()
    total = sum(s.handled for s in stats.values())
    say(f"stopped; {total} task deliveries handled")


@app.callback(invoke_without_command=True)
def simulate(
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Where the systems' SQLite stores live (default: $PRIVOPS_HOME/systems; "
        "PRIVOPS_HOME defaults to ~/.cache/privops).",
    ),
    customers: int = typer.Option(
        DEFAULT_CUSTOMERS,
        "--customers",
        min=1,
        max=MAX_CUSTOMERS,
        help="Fake customers to seed (only when a store is created).",
    ),
    events: bool = typer.Option(
        True, "--events/--no-events", help="Publish a business day to <system>.events first."
    ),
    day: str | None = typer.Option(
        None,
        "--date",
        help="Business day to publish, YYYY-MM-DD, not in the future (default: today, up to now).",
    ),
    slow: list[str] = typer.Option(
        [], "--slow", metavar="SYSTEM=SECONDS", help="Delay each task of a system."
    ),
    fail_first: list[str] = typer.Option(
        [],
        "--fail-first",
        metavar="SYSTEM=N",
        help="Fail the first N deliveries of each task (transient) before doing it.",
    ),
    silent: list[str] = typer.Option(
        [], "--silent", metavar="SYSTEM", help="Consume that system's tasks and never answer."
    ),
    reset: bool = typer.Option(False, "--reset", help="Delete and re-seed the stores."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=1, max=65535, help="Serve connector metrics on this port."
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1",
        "--metrics-host",
        help="The address --metrics-port listens on: 0.0.0.0 in a container, so that a "
        "Prometheus on another host (the compose service) scrapes it.",
    ),
    group_prefix: str | None = typer.Option(
        None,
        "--group-prefix",
        help="Tells this run's consumer groups apart: each system's group is "
        "privops-connector-<system>-<this> (its principal may use no other); a new value "
        "starts fresh.",
    ),
    start_from: str = typer.Option(
        "earliest",
        "--from",
        help="Where a new consumer group starts: earliest (every task on the topics) or latest.",
    ),
    worker_url: str | None = typer.Option(
        None,
        "--worker-url",
        help="privops' key service (any worker's HTTP API), for the events' and tasks' keys "
        "(default: PRIVOPS_WEB_URL, else http(s)://PRIVOPS_WEB_HOST:PRIVOPS_WEB_PORT; "
        "PRIVOPS_WEB_CA is the CA it trusts for https).",
    ),
    plaintext: bool = typer.Option(
        False,
        "--plaintext",
        help="Publish the events' personal fields unencrypted, as systems did before "
        "encryption (a migration demo).",
    ),
    purge_every: float = typer.Option(
        PURGE_EVERY_S,
        "--purge-every",
        min=0,
        metavar="SECONDS",
        help="Each system deletes its rows past the data map's periods from collection "
        "(privops ropa lists them), but what a legal hold, its own hold or a restriction "
        "keeps: first once it has read the legal holds, then every SECONDS; 0: never.",
    ),
) -> None:
    """Seed the six reference systems, publish a day of business, answer tasks until Ctrl-C."""
    knobs = parse_knobs(slow, fail_first, silent)
    if start_from not in ("earliest", "latest"):
        fail(f"--from {start_from!r}: use earliest or latest", EXIT_BAD_INPUT)
    business_day: date | None = None
    if day is not None:
        try:
            business_day = date.fromisoformat(day)
        except ValueError:
            fail(f"--date {day!r}: use YYYY-MM-DD, e.g. --date 2026-03-02", EXIT_BAD_INPUT)
        if business_day > datetime.now(UTC).date():
            fail(
                f"--date {day}: a business day that has not happened yet (privops refuses "
                "events dated ahead of its clock); use today or an earlier day",
                EXIT_BAD_INPUT,
            )
    cfg = settings()
    target = usable_data_dir(data_dir or default_data_dir(cfg))
    if metrics_port is not None:
        try:
            serve_metrics(metrics_port, metrics_host)
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            fail(f"--metrics-port {metrics_port} on {metrics_host}: cannot listen ({why})")
        say(f"connector metrics on http://{metrics_host}:{metrics_port}/metrics")
    if worker_url is not None:
        try:  # as the connectors will take it: an origin, never a password in the clear
            worker_url = web_tls.api_url(cfg, worker_url)
        except ConfigError as exc:
            fail(f"--worker-url: {exc}", EXIT_BAD_INPUT)
    run_async(
        lambda: _main(
            cfg,
            target,
            customers,
            events,
            business_day,
            knobs,
            reset,
            group_prefix,
            start_from,
            worker_url,
            plaintext,
            purge_every,
        )
    )
