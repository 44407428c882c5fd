"""One release number: the package's, the wheel's and the CLI's."""

from __future__ import annotations

import tomllib

from typer.testing import CliRunner

from privops import __version__
from privops.cli.main import app
from tests.conftest import REPO


def test_the_package_and_the_wheel_carry_the_same_release() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__


def test_the_cli_says_its_release() -> None:
    out = CliRunner().invoke(app, ["--version"])
    assert out.exit_code == 0
    assert out.stdout.strip() == f"privops {__version__}"
