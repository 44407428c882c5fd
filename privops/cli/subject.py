"""`privops subject forget-check`: what still reads of one data subject, everywhere.

What a DPO shows a regulator after an erasure (docs/forget-check.md). Exit codes: 0
nothing remains, 1 something does, 2 bad arguments, 3 the cluster (or a store) could
not be read, or could be read only in part with nothing found in what was.

The values searched for are never printed: findings name them by label and a masked
hint (``e***@***``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from privops.adapters.acls import ADMIN, DPO
from privops.adapters.kafka import client_options
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings
from privops.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    Json,
    check_id,
    console,
    emit_json,
    err_console,
    fail,
    quiet_kafka_logs,
    settings,
)
from privops.core import forget_scan as fs
from privops.core.errors import ConfigError, DomainError, PrivopsError
from privops.tools.forget_check import Request, forget_check
from privops.tools.forget_stores import Report
from privops.tools.views import table

app = typer.Typer(help="One data subject across the whole cluster.", no_args_is_help=True)


@contextmanager
def _exits() -> Iterator[None]:
    """Exit 1 is the scan's answer ("something remains"), so no error may end with it."""
    try:
        yield
    except (ConfigError, DomainError) as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except PrivopsError as exc:
        fail(str(exc), EXIT_UNAVAILABLE)


def _values(given: list[str], from_file: Path | None) -> list[fs.Needle]:
    """The DPO's values, labelled by position (never echoed); exit 2 on a bad one."""
    values = [(f"value {i}", v) for i, v in enumerate(given, 1)]
    if from_file is not None:
        try:
            lines = from_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read --from-file {escape(str(from_file))}: {type(exc).__name__}")
        values += [
            (f"{from_file.name} line {n}", line)
            for n, line in enumerate(lines, 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    try:
        return fs.needles(values)
    except ValueError as exc:
        fail(str(exc))


def _stores(cfg: Settings, data_dir: Path | None, skip: bool) -> tuple[Path | None, str | None]:
    """The data dir to scan, or None and the warning that says why not (``--skip-stores``).
    No worker data dir where it is expected is not a scan: refused (exit 2) before an
    hour of reading. Before, the scan went on, warned, and could exit 0 "nothing
    remains" having never looked at the worker's stores (review, session 35)."""
    if skip:
        return None, "local stores not scanned (--skip-stores)"
    if data_dir is not None:
        if not data_dir.is_dir():
            fail(f"--data-dir {escape(str(data_dir))} is not a directory")
        return data_dir, None
    if not cfg.worker_data_dir.is_dir():
        fail(
            f"no worker data dir at {escape(str(cfg.worker_data_dir))}: run this where each "
            "worker runs, or pass --data-dir DIR, or --skip-stores to check the topics only"
        )
    return cfg.worker_data_dir, None


def _principal(cfg: Settings, chosen: str | None) -> str | None:
    """``admin`` on the local runtime (the dpo principal may read only its own topics);
    elsewhere PRIVOPS_KAFKA_PRINCIPAL, else ``dpo``."""
    if chosen is not None:
        return chosen
    return ADMIN if cfg.env == "dev" and cfg.kafka_password is None else None


class _Bars:
    """Rich progress on stderr, one bar per topic or store, gone when the scan ends."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self._tasks:
            self._tasks[what] = self._progress.add_task(escape(what), total=total or None)
        self._progress.update(self._tasks[what], completed=done, total=total or None)


@app.command("forget-check")
def forget_check_verb(
    subject_id: str = typer.Argument(..., help="The subject id (the Kafka key)."),
    value: list[str] = typer.Option(
        [],
        "--value",
        help="A value the subject is known by (email, phone, name); repeat it. Never printed.",
    ),
    from_file: Path | None = typer.Option(
        None, "--from-file", help="More values, one a line ('#' starts a comment)."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="The worker's data dir (default: PRIVOPS_DATA_DIR's)."
    ),
    skip_stores: bool = typer.Option(
        False, "--skip-stores", help="Scan the topics only (e.g. while the worker runs)."
    ),
    principal: str | None = typer.Option(
        None,
        "--as",
        help="Kafka principal to read as (default: admin on the local runtime, else dpo).",
    ),
    as_json: Json = False,
) -> None:
    """Scan every topic, changelog and local store for what still reads of a subject."""
    subject = check_id(subject_id, "subject id")
    needles = _values(value, from_file)
    cfg = settings()
    stores, skipped = _stores(cfg, data_dir, skip_stores)
    quiet_kafka_logs()
    with _exits():
        options = client_options(cfg, _principal(cfg, principal), default=DPO)
        serde = Serde.for_settings(cfg)
        request = Request(subject, needles, stores, skipped)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err_console,
            transient=True,
            disable=as_json,
        ) as progress:
            report = asyncio.run(forget_check(options, request, serde, _Bars(progress)))
    if as_json:
        emit_json(report.as_json())
    else:
        _print(report)
    if not report.clean:
        raise typer.Exit(EXIT_FAILED)
    if report.incomplete:
        raise typer.Exit(EXIT_UNAVAILABLE)


def _print(report: Report) -> None:
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    for problem in report.incomplete:
        console.print(f"[red]not scanned:[/] {escape(problem)}")
    if report.findings:
        out = table("topic / store", "partition", "offset", "found", "what", "where")
        for f in report.findings:
            out.add_row(
                escape(f.place),
                "-" if f.partition is None else str(f.partition),
                "-" if f.offset is None else str(f.offset),
                f.kind,
                escape(f.what),
                escape(f.where),
            )
        console.print(out)
    scanned = (
        f"{report.records} records in {report.topics} topics as {escape(report.principal)}, "
        f"{report.store_entries} entries in {report.stores} local stores; "
        f"{report.shredded} ciphertexts under destroyed keys (unreadable)"
    )
    console.print(f"[dim]scanned {scanned}[/]")
    subject = escape(report.subject_id)
    if report.findings:
        console.print(f"[bold red]{len(report.findings)} finding(s): {subject} is not forgotten[/]")
    elif report.incomplete:
        console.print(f"[bold yellow]nothing found for {subject}, but the scan is incomplete[/]")
    else:
        console.print(f"[bold green]nothing of {subject} remains readable in what was scanned[/]")
