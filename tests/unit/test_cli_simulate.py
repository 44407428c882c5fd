"""`privops simulate` knobs: SYSTEM=NUMBER options parsed, bad ones refused by name."""

from __future__ import annotations

import pytest
import typer

from privops.cli.common import EXIT_BAD_INPUT
from privops.cli.simulate import parse_knobs
from privops.connectors.reference import Knobs
from privops.core.vocab import System


@pytest.mark.parametrize(
    ("slow", "fail_first", "silent", "expected"),
    [
        ([], [], [], {}),
        (["crm=3"], ["orders=2"], ["cctv"], {
            System.crm: Knobs(delay_seconds=3.0),
            System.orders: Knobs(fail_first=2),
            System.cctv: Knobs(silent=True),
        }),
        (["CRM = 2.5", "web=0"], [], [], {
            System.crm: Knobs(delay_seconds=2.5), System.web: Knobs(delay_seconds=0.0),
        }),
        (["crm=1"], ["crm=3"], ["crm"], {
            System.crm: Knobs(delay_seconds=1.0, fail_first=3, silent=True),
        }),
    ],
)  # fmt: skip
def test_knobs(
    slow: list[str], fail_first: list[str], silent: list[str], expected: dict[System, Knobs]
) -> None:
    assert parse_knobs(slow, fail_first, silent) == expected


@pytest.mark.parametrize(
    ("slow", "fail_first", "silent", "message"),
    [
        (["crm"], [], [], "--slow expects SYSTEM=SECONDS, e.g. --slow crm=3 (got 'crm')"),
        (["crm=x"], [], [], "--slow crm=x: SECONDS must be a number, e.g. --slow crm=2.5"),
        (["crm=-1"], [], [], "--slow crm=-1: SECONDS must be between 0 and 3600"),
        (["crm=nan"], [], [], "--slow crm=nan: SECONDS must be between 0 and 3600"),
        (["pigeon=1"], [], [], "--slow: unknown system 'pigeon'; use one of orders, crm,"),
        ([], ["orders=2.5"], [], "--fail-first orders=2.5: N must be a whole number, e.g. orders"),
        ([], ["orders=101"], [], "--fail-first orders=101: N must be between 0 and 100"),
        ([], ["orders="], [], "--fail-first expects SYSTEM=N, e.g. --fail-first orders=2"),
        ([], [], ["nope"], "--silent: unknown system 'nope'"),
    ],
)  # fmt: skip
def test_bad_knobs_exit_2_naming_the_option(
    slow: list[str],
    fail_first: list[str],
    silent: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit) as exc:
        parse_knobs(slow, fail_first, silent)
    assert exc.value.exit_code == EXIT_BAD_INPUT
    assert message in " ".join(capsys.readouterr().err.split())
