"""`privops bench`: the DESIGN.md section 9 benchmarks, each with its same-run baseline."""

from __future__ import annotations

import typer

from privops.cli.common import EXIT_BAD_INPUT, Json, console, emit_json, fail, handled, say
from privops.tools import bench as b
from privops.tools.views import table


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bool":
        return "yes" if value else "no"
    if unit == "x":
        return f"{value:.2f}x"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:,.2f} {unit}"


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "[dim]n/a[/]"
    return "[green]pass[/]" if passed else "[bold red]FAIL[/]"


_DEFAULT = b.Sizes()


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
    restart_subjects: int = typer.Option(
        _DEFAULT.restart_subjects,
        "--restart-subjects",
        min=1,
        help="restart: subjects loaded before the restart (target is for 1,000,000).",
    ),
    open_requests: int = typer.Option(
        _DEFAULT.open_requests, "--open", min=1, help="sweep-scale: open requests tracked."
    ),
    timeout: float = typer.Option(
        _DEFAULT.timeout, min=1, help="consent-throughput: longest measuring window, seconds."
    ),
    as_json: Json = False,
) -> None:
    """Measure the performance targets against a private local runtime (own ports).

    Starts its own Kafka and registry under a temporary home (ports 24092/24081, worker
    web port 24066), runs a real `privops worker`, and stops everything at the end.
    """
    chosen = list(scenario or b.SCENARIOS)
    unknown = [s for s in chosen if s not in b.SCENARIOS]
    if unknown:
        fail(
            f"unknown scenario {unknown[0]!r}; choose from {', '.join(b.SCENARIOS)}", EXIT_BAD_INPUT
        )
    sizes = b.Sizes(
        events=events,
        subjects=subjects,
        rate=rate,
        duration=duration,
        restart_subjects=restart_subjects,
        open_requests=open_requests,
        timeout=timeout,
    )
    with handled():
        results = b.run(chosen, sizes, b.quiet if as_json else say)
    if as_json:
        emit_json([r.as_json() for r in results])
    else:
        out = table("scenario", "measured", "value", "baseline", "ratio", "target", "result")
        for r in results:
            out.add_row(
                r.scenario,
                r.metric,
                _fmt(r.measured, r.unit),
                _fmt(r.baseline, r.unit),
                "-" if r.ratio is None else f"{r.ratio:.2f}x",
                r.target or "-",
                _verdict(r.passed),
            )
        console.print(out)
        for r in results:
            if r.details:
                console.print(f"[dim]{r.scenario} / {r.metric}: {r.details}[/]")
