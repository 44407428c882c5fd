"""The bench's report as text cells: one table per scenario, CPU beside every rate.

Plain strings (no rich markup), so the CLI only lays them out and tests can read them.
The table has to stay readable in an 80-column terminal: short units in the cells, the
CPU unit in the header, targets and details on the lines under the table.
"""

from __future__ import annotations

from collections.abc import Sequence

from privops.tools.bench.measure import Result

# How a unit is written in a cell (the JSON keeps the full unit).
_SHORT_UNITS: dict[str, str] = {"events/s": "/s"}


def fmt_value(value: float | None, unit: str) -> str:
    if value is None or value != value:  # NaN: nothing was measured
        return "-"
    if unit == "bool":
        return "yes" if value else "no"
    if unit == "x":
        return f"{value:.2f}x"
    short = _SHORT_UNITS.get(unit)
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{text}{short}" if short else f"{text} {unit}"


def fmt_cpu(us: float | None) -> str:
    """CPU microseconds, with the digits that matter at its size."""
    if us is None or us != us:
        return "-"
    return f"{us:,.0f}" if us >= 100 else f"{us:,.1f}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None or ratio != ratio:
        return "-"
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x"


def columns(results: Sequence[Result]) -> tuple[str, ...]:
    """A scenario table's headers; the CPU columns name the unit its rows share."""
    pers = {r.cpu_per for r in results if r.cpu_us is not None or r.baseline_cpu_us is not None}
    cpu = f"CPU µs/{pers.pop()}" if len(pers) == 1 else "CPU µs"
    return ("measured", "value", cpu, "baseline", cpu, "ratio")


def row(result: Result) -> list[str]:
    """A result's cells, in `columns` order (the verdict is the caller's to add)."""
    return [
        result.metric,
        fmt_value(result.measured, result.unit),
        fmt_cpu(result.cpu_us),
        fmt_value(result.baseline, result.unit),
        fmt_cpu(result.baseline_cpu_us),
        fmt_ratio(result.ratio),
    ]


def note(result: Result) -> str:
    """The line under the table for a row with a target or details ("" for neither)."""
    parts = [f"target {result.target}"] if result.target else []
    parts += [f"{key} {value}" for key, value in result.details.items()]
    return f"{result.metric.strip()}: " + "; ".join(parts) if parts else ""


def by_scenario(results: Sequence[Result]) -> dict[str, list[Result]]:
    """Results grouped by scenario, in the order the scenarios ran."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.scenario, []).append(result)
    return groups


def baselines_caption(results: Sequence[Result]) -> str:
    """Which baselines a scenario's rows compare with, named once under its table."""
    names = list(dict.fromkeys(r.baseline_name for r in results if r.baseline_name))
    return "baselines (same run): " + "; ".join(names) if names else ""
