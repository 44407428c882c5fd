"""`privops dsar due-date`: the UK response deadline for a rights request.

Prints only the ISO date (for scripts); `--explain` adds the month arithmetic, the
clarification pause (which of its days counted, and why) and the weekend/bank-holiday
roll, each step from privops.core.deadlines; `--json` gives the date, the days that
paused it and those steps as one object.

`--paused-days` (days already counted, e.g. from an earlier clarification) and
`--paused-from/--paused-to` (a period, of which only the days while the clock runs
count) add up: a request can have had more than one clarification.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import holidays
import typer

from privops.cli.common import Json, console, emit_json, fail
from privops.cli.request import parse_date
from privops.core.deadlines import (
    CountedPause,
    Pause,
    add_months,
    count_pauses,
    due_date,
    is_working_day,
)
from privops.core.errors import DomainError

app = typer.Typer(help="Access and rights-request deadlines (UK rules).", no_args_is_help=True)

_MAX_PAUSED_DAYS = 3660  # ten years: anything longer is a typo


def _days(n: int) -> str:
    return f"{n} day{'s' if n != 1 else ''}"


def _day_off(day: date, names: holidays.HolidayBase) -> str:
    name = names.get(day)
    if name:
        return f"{day:%a} {day} is a bank holiday ({name})"
    return f"{day:%a} {day} is a weekend day"


def _month_step(start: date, extended: bool) -> tuple[date, str]:
    months = 3 if extended else 1
    raw = add_months(start, months)
    plain = f"{months} calendar month{'s' if months > 1 else ''}"
    reason = "extended: three months from the start" if extended else "one month"
    if raw.day != start.day:
        month_name = calendar.month_name[raw.month]
        return raw, (
            f"+ {plain} ({reason}): {month_name} {raw.year} has no day {start.day}, "
            f"so the last day of that month, {raw}"
        )
    return raw, f"+ {plain} ({reason}): the corresponding date, {raw}"


def _pause_line(start: date, counted: CountedPause) -> str:
    """Why the days of one clarification period did or did not stop the clock."""
    pause = counted.pause
    whole = (pause.answered - pause.asked).days + 1
    head = (
        f"clarification asked {pause.asked}, received {pause.answered} (UK GDPR Art. 12A): "
        f"{_days(whole)}, both days included"
    )
    if pause.asked > counted.running_until:
        return f"{head}; none count: asked after the due date {counted.running_until}"
    if counted.counted_from is None:
        return f"{head}; none count: all before the clock started on {start}"
    if counted.counted_from > pause.asked:
        skipped = (counted.counted_from - pause.asked).days
        return (
            f"{head}; {counted.days} count ({counted.counted_from} to {pause.answered}): "
            f"the {_days(skipped)} before the clock started on {start} do not"
        )
    line = f"{head}; all {counted.days} count (the clock was running)"
    if counted.moves > counted.days:
        line += (
            f"; asked after the month's end, while the due date was rolled to "
            f"{counted.running_until}: due the first working day after the answer, as it "
            f"was the first after the month's end ({_days(counted.moves)} in all)"
        )
    return line


def explain(
    start: date, *, extended: bool, paused_days: int, pauses: tuple[Pause, ...] = ()
) -> list[str]:
    """The steps from start to due date, in words (same rules as deadlines.due_date)."""
    raw, month_line = _month_step(start, extended)
    lines = [f"clock starts {start:%a} {start} (day one)", month_line]
    counted = count_pauses(start, pauses, extended=extended, already=paused_days)
    lines += [_pause_line(start, c) for c in counted]
    total = paused_days + sum(c.moves for c in counted)
    shifted = raw + timedelta(days=total)
    if paused_days:
        lines.append(f"{_days(paused_days)} paused as given (--paused-days)")
    if total and any(c.moves > c.days for c in counted):
        lines.append(f"+ {_days(total)} (clarification, Art. 12A, as above): {shifted}")
    elif total:
        lines.append(f"+ {_days(total)} paused (clarification, Art. 12A): {shifted}")
    names = holidays.country_holidays(
        "GB", subdiv="ENG", years=range(shifted.year, shifted.year + 2)
    )
    day = shifted
    while not is_working_day(day):
        lines.append(f"  {_day_off(day, names)}: next day")
        day += timedelta(days=1)
    lines.append(f"due {day:%A} {day} (England and Wales working day)")
    return lines


def _pause_option(paused_from: str | None, paused_to: str | None) -> tuple[Pause, ...]:
    if paused_from is None and paused_to is None:
        return ()
    if paused_from is None or paused_to is None:
        fail(
            "give --paused-from and --paused-to together "
            "(the days clarification was asked for and received)"
        )
    asked = parse_date(paused_from, "--paused-from", allow_future=True)
    answered = parse_date(paused_to, "--paused-to", allow_future=True)
    if answered < asked:
        fail(f"--paused-to {answered} is before --paused-from {asked}")
    return (Pause(asked, answered),)


@app.command("due-date")
def due_date_cmd(
    start: str = typer.Option(
        ...,
        "--start",
        help="Clock start, YYYY-MM-DD: the latest of receipt of the request, receipt of "
        "the identity information, receipt of a required fee.",
    ),
    extended: bool = typer.Option(
        False, "--extended", help="Extended by two further months (complex or numerous requests)."
    ),
    paused_days: int = typer.Option(
        0,
        "--paused-days",
        help="Days paused awaiting clarification (Art. 12A), already counted; 0 or more. "
        "Adds to a --paused-from/--paused-to period (an earlier clarification). Only an "
        "access request's clock stops so: leave both out for any other request.",
    ),
    paused_from: str | None = typer.Option(
        None,
        "--paused-from",
        help="Day clarification was asked for, YYYY-MM-DD (with --paused-to); only the days "
        "while the clock runs count.",
    ),
    paused_to: str | None = typer.Option(
        None, "--paused-to", help="Day the clarification was received, YYYY-MM-DD (included)."
    ),
    show_explain: bool = typer.Option(
        False, "--explain", help="Also explain each step (month end, pause, holiday roll)."
    ),
    as_json: Json = False,
) -> None:
    """Print the ISO due date of a response (one calendar month, UK working-day rules)."""
    start_day = parse_date(start, "--start", allow_future=True)
    if paused_days < 0:
        fail(f"--paused-days must be 0 or more, got {paused_days}")
    if paused_days > _MAX_PAUSED_DAYS:
        fail(f"--paused-days {paused_days} is implausibly long (more than ten years)")
    pauses = _pause_option(paused_from, paused_to)
    try:
        # The days given already moved the due date the period's clock ran towards:
        # without them, a period asked after the month's plain end counted nothing.
        counted = count_pauses(start_day, pauses, extended=extended, already=paused_days)
    except DomainError as exc:
        fail(str(exc))
    from_periods = sum(c.moves for c in counted)
    due = due_date(start_day, extended=extended, paused_days=paused_days + from_periods)
    lines = (
        explain(start_day, extended=extended, paused_days=paused_days, pauses=pauses)
        if show_explain or as_json
        else []
    )
    if as_json:
        emit_json(
            {
                "due_on": due.isoformat(),
                "start": start_day.isoformat(),
                "extended": extended,
                "paused_days_given": paused_days,
                "clarifications": [
                    {
                        "asked": c.pause.asked.isoformat(),
                        "received": c.pause.answered.isoformat(),
                        "days_counted": c.days,
                        # what it moved the month's end by: its days, and for one asked
                        # while the due date was rolled, the days up to it (from 0.43)
                        "days_moved": c.moves,
                    }
                    for c in counted
                ],
                "paused_days_total": paused_days + from_periods,
                "explanation": lines,
            }
        )
        return
    typer.echo(due.isoformat())
    for line in lines:
        console.print(line, highlight=False)
