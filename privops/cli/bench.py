"""`privops bench`: the DESIGN.md section 9 benchmarks, each with its same-run baseline."""

from __future__ import annotations

from collections.abc import Sequence

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from privops.cli.common import EXIT_BAD_INPUT, Json, console, emit_json, fail, handled, say
from privops.tools import bench as b
from privops.tools.bench import report

# 128 + SIGTERM, as a shell reports a process the signal ended.
EXIT_STOPPED = 143


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "[dim]n/a[/]"
    return "[green]pass[/]" if passed else "[bold red]FAIL[/]"


_DEFAULT = b.Sizes()


def _print(results: Sequence[b.Result]) -> None:
    """One table per scenario; targets and details, dimmed, under it.

    Figures never wrap (a folded number misreads); the row names take what width is left.
    """
    for scenario, rows in report.by_scenario(results).items():
        caption = report.baselines_caption(rows)
        out = Table(title=scenario, caption=caption or None, box=box.SIMPLE_HEAD)
        name, *figures = report.columns(rows)
        out.add_column(name, overflow="fold", ratio=1)
        for header in figures:  # "CPU µs/event" on two lines: the figures are short
            out.add_column(header.replace(" ", "\n", 1), justify="right", no_wrap=True)
        out.add_column("result", no_wrap=True)
        for r in rows:
            out.add_row(*map(escape, report.row(r)), _verdict(r.passed))
        console.print(out)
        for r in rows:
            if line := report.note(r):
                console.print(f"[dim]{escape(line)}[/]")


def bench(
    scenario: list[str] | None = typer.Option(
        None,
        "--scenario",
        "-s",
        help=f"Run only this scenario (repeatable): {', '.join(b.SCENARIOS)}.",
    ),
    events: int = typer.Option(
        _DEFAULT.events, min=1, help="consent-throughput: events to consume."
    ),
    subjects: int = typer.Option(
        _DEFAULT.subjects, min=1, help="consent-throughput: distinct subjects."
    ),
    rate: float = typer.Option(_DEFAULT.rate, min=1, help="command-latency: requests per second."),
    duration: float = typer.Option(
        _DEFAULT.duration, min=0.1, help="command-latency: seconds of load."
    ),
    consent_load: float = typer.Option(
        _DEFAULT.consent_load,
        "--consent-load",
        min=0,
        help="command-latency: consent events per second sent beside the commands, "
        "through the same worker (0: none; the p99 target is judged without load).",
    ),
    warmup: float = typer.Option(
        _DEFAULT.warmup,
        "--warmup",
        min=0,
        help="command-latency: seconds of commands at --rate before the measured "
        "--duration, not counted (a fresh broker's first writes; their p99 is in the "
        "details). 0: measure from the first command.",
    ),
    workers: list[str] = typer.Option(
        ["1"],
        "--workers",
        help="consent-throughput: worker processes of one group, measured as a group of "
        f"fresh workers per count; repeat or comma-separate for several (--workers 1,2), "
        f"1 to {b.MAX_WORKERS}.",
    ),
    encrypt: bool = typer.Option(
        False,
        "--encrypt",
        help="consent-throughput: also measure one worker on events whose contact details "
        "are encrypted per subject, against the same events in plaintext (CPU µs/event "
        "with and without).",
    ),
    restart_subjects: int = typer.Option(
        _DEFAULT.restart_subjects,
        "--restart-subjects",
        min=1,
        help="restart: subjects loaded before the restart (target is for 1,000,000).",
    ),
    restart_budget: float = typer.Option(
        _DEFAULT.restart_budget,
        "--restart-budget",
        min=1,
        help="restart: longest loading time, seconds; the restart is then measured with "
        "the subjects loaded by then.",
    ),
    open_requests: int = typer.Option(
        _DEFAULT.open_requests, "--open", min=1, help="sweep-scale: open requests tracked."
    ),
    timeout: float = typer.Option(
        _DEFAULT.timeout, min=1, help="consent-throughput: longest measuring window, seconds."
    ),
    port_base: int = typer.Option(
        b.DEFAULT_PORT_BASE,
        "--port-base",
        min=1024,
        max=32000,
        help="Ports of the bench's runtime: Kafka base+92, registry base+81, workers "
        "base+66 onwards (move it when two benches share a machine).",
    ),
    as_json: Json = False,
) -> None:
    """Measure the performance targets against a private local runtime (own ports).

    Starts its own Kafka and registry under a temporary home (ports 24092/24081 with the
    default --port-base, worker web ports from 24066), runs real `privops worker`
    processes, and stops everything at the end. Every rate is reported with the CPU
    microseconds per event (or command) of the worker and of its same-run baseline.
    """
    chosen = list(scenario or b.SCENARIOS)
    unknown = [s for s in chosen if s not in b.SCENARIOS]
    if unknown:
        fail(
            f"unknown scenario {unknown[0]!r}; choose from {', '.join(b.SCENARIOS)}", EXIT_BAD_INPUT
        )
    try:
        counts = b.parse_worker_counts(workers)
    except ValueError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    sizes = b.Sizes(
        events=events,
        subjects=subjects,
        rate=rate,
        duration=duration,
        consent_load=consent_load,
        warmup=warmup,
        restart_subjects=restart_subjects,
        restart_budget=restart_budget,
        open_requests=open_requests,
        timeout=timeout,
        workers=counts,
        encrypt=encrypt,
    )
    try:
        with handled():
            results = b.run(chosen, sizes, b.quiet if as_json else say, port_base=port_base)
    except b.Stopped as exc:
        fail(f"{exc}; its Kafka, registry and workers were stopped", EXIT_STOPPED)
    if as_json:
        emit_json([r.as_json() for r in results])
    else:
        _print(results)
