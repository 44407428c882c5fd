"""`privops dsar due-date`: the UK response deadline for a rights request.

Prints only the ISO date (for scripts); `--explain` adds the month arithmetic, the
clarification pause and the weekend/bank-holiday roll, each step from privops.core.deadlines.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import holidays
import typer

from privops.cli.common import console, fail
from privops.cli.request import parse_date
from privops.core.deadlines import add_months, due_date, is_working_day

app = typer.Typer(help="Access and rights-request deadlines (UK rules).", no_args_is_help=True)


def _day_off(day: date, names: holidays.HolidayBase) -> str:
    name = names.get(day)
    if name:
        return f"{day:%a} {day} is a bank holiday ({name})"
    return f"{day:%a} {day} is a weekend day"


def explain(start: date, *, extended: bool, paused_days: int) -> list[str]:
    """The steps from start to due date, in words (same rules as deadlines.due_date)."""
    months = 3 if extended else 1
    raw = add_months(start, months)
    lines = [f"clock starts {start:%a} {start} (day one)"]
    plain = f"{months} calendar month{'s' if months > 1 else ''}"
    reason = "extended: three months from the start" if extended else "one month"
    if raw.day != start.day:
        month_name = calendar.month_name[raw.month]
        lines.append(
            f"+ {plain} ({reason}): {month_name} {raw.year} has no day {start.day}, "
            f"so the last day of that month, {raw}"
        )
    else:
        lines.append(f"+ {plain} ({reason}): the corresponding date, {raw}")
    shifted = raw + timedelta(days=paused_days)
    if paused_days:
        lines.append(
            f"+ {paused_days} paused day{'s' if paused_days != 1 else ''} "
            f"(clarification, Art. 12A): {shifted}"
        )
    names = holidays.country_holidays(
        "GB", subdiv="ENG", years=range(shifted.year, shifted.year + 2)
    )
    day = shifted
    while not is_working_day(day):
        lines.append(f"  {_day_off(day, names)}: next day")
        day += timedelta(days=1)
    lines.append(f"due {day:%A} {day} (England and Wales working day)")
    return lines


@app.command("due-date")
def due_date_cmd(
    start: str = typer.Option(
        ...,
        "--start",
        help="Clock start, YYYY-MM-DD: the latest of receipt, identity verified, fee received.",
    ),
    extended: bool = typer.Option(
        False, "--extended", help="Extended by two further months (complex or numerous requests)."
    ),
    paused_days: int = typer.Option(
        0, "--paused-days", help="Days paused awaiting clarification (Art. 12A); 0 or more."
    ),
    show_explain: bool = typer.Option(
        False, "--explain", help="Also explain each step (month end, pause, holiday roll)."
    ),
) -> None:
    """Print the ISO due date of a response (one calendar month, UK working-day rules)."""
    start_day = parse_date(start, "--start", allow_future=True)
    if paused_days < 0:
        fail(f"--paused-days must be 0 or more, got {paused_days}")
    if paused_days > 3660:
        fail(f"--paused-days {paused_days} is implausibly long (more than ten years)")
    due = due_date(start_day, extended=extended, paused_days=paused_days)
    typer.echo(due.isoformat())
    if show_explain:
        for line in explain(start_day, extended=extended, paused_days=paused_days):
            console.print(line, highlight=False)
