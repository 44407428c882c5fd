"""`privops dsar due-date` with a clarification period (--paused-from/--paused-to)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from privops.cli import dsar
from privops.cli.common import EXIT_BAD_INPUT

runner = CliRunner()
root = typer.Typer()
root.add_typer(dsar.app, name="dsar")


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(root, ["dsar", "due-date", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # UK GDPR Art. 12A (DUAA 2025), issue 14.7: received 1 Mar 2026, asked 20 Feb,
        # answered 5 Mar: only 1-5 Mar count -> 6 Apr, Easter Monday -> Tue 7 Apr.
        pytest.param(
            ("--start", "2026-03-01", "--paused-from", "2026-02-20", "--paused-to", "2026-03-05"),
            "2026-04-07",
            id="art12A-only-while-running",
        ),
        # Issue 14.6: both days included, asked 12th, received 15th = 4 days -> Tue 14 Apr.
        pytest.param(
            ("--start", "2026-03-10", "--paused-from", "2026-03-12", "--paused-to", "2026-03-15"),
            "2026-04-14",
            id="art12A-both-days",
        ),
        # Beside --paused-days: the two add up (2 + 1 same-day = 3 -> Mon 13 Apr).
        pytest.param(
            (
                "--start",
                "2026-03-10",
                "--paused-days",
                "2",
                "--paused-from",
                "2026-03-11",
                "--paused-to",
                "2026-03-11",
            ),
            "2026-04-13",
            id="with-paused-days",
        ),
        # The days given moved the due date the period's clock ran towards: 5 Feb + 10 =
        # Sun 15 -> Mon 16 Feb, so a period asked on 10 Feb counts its 3 days -> Wed 18
        # Feb. Before, it was measured against 5 Feb and counted none (review, session 43).
        pytest.param(
            (
                "--start",
                "2026-01-05",
                "--paused-days",
                "10",
                "--paused-from",
                "2026-02-10",
                "--paused-to",
                "2026-02-12",
            ),
            "2026-02-18",
            id="period-after-the-plain-month",
        ),
        # Unchanged contract without a period.
        pytest.param(("--start", "2026-03-10", "--paused-days", "3"), "2026-04-13", id="days-only"),
    ],
)
def test_due_date_with_a_clarification_period(args: tuple[str, ...], expected: str) -> None:
    code, stdout, _ = run(*args)
    assert code == 0
    assert stdout == expected + "\n"


def test_explain_shows_which_paused_days_counted_and_why() -> None:
    code, stdout, flat = run(
        "--start",
        "2026-03-01",
        "--paused-from",
        "2026-02-20",
        "--paused-to",
        "2026-03-05",
        "--explain",
    )
    assert code == 0
    assert stdout.splitlines()[0] == "2026-04-07"
    assert "14 days, both days included" in flat
    assert "5 count (2026-03-01 to 2026-03-05)" in flat
    assert "the 9 days before the clock started on 2026-03-01 do not" in flat
    assert "+ 5 days paused" in flat
    assert "Easter Monday" in flat


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--paused-from", "2026-03-02"), "give --paused-from and --paused-to together"),
        (("--paused-to", "2026-03-02"), "give --paused-from and --paused-to together"),
        (
            ("--paused-from", "2026-03-05", "--paused-to", "2026-03-02"),
            "--paused-to 2026-03-02 is before --paused-from 2026-03-05",
        ),
        (("--paused-from", "5/3/2026", "--paused-to", "2026-03-09"), "invalid date '5/3/2026'"),
    ],
)
def test_bad_clarification_period(args: tuple[str, ...], message: str) -> None:
    code, stdout, flat = run("--start", "2026-03-01", *args)
    assert code == EXIT_BAD_INPUT
    assert message in flat
    assert stdout == ""


def test_a_clarification_asked_in_the_roll_over_resumes_the_clock_from_there() -> None:
    """Due Good Friday 3 April 2026, rolled to Tuesday 7 April; asked on the 7th and
    answered on the 9th, it is due the first working day after the answer: Friday 10
    April (legal review, session 43: it printed 7 April, already past)."""
    code, stdout, flat = run(
        "--start", "2026-03-03", "--paused-from", "2026-04-07", "--paused-to", "2026-04-09",
        "--explain",
    )  # fmt: skip
    assert code == 0
    assert stdout.splitlines()[0] == "2026-04-10"
    assert "while the due date was rolled to 2026-04-07: due the first working day after" in flat
