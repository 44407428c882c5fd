"""`privops keys kek show|create|rotate|retire`: the KEK file from the command line, never
printing the key. Retiring a version that still wraps stored keys is refused against
the real topic in tests/integration/test_subject_keys.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privops.adapters import kek as kekfile
from privops.adapters.settings import get_settings
from privops.cli.common import EXIT_BAD_INPUT, EXIT_NOT_FOUND
from privops.cli.main import app

runner = CliRunner()


@pytest.fixture
def kek_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("PRIVOPS_HOME", str(tmp_path))
    monkeypatch.delenv("PRIVOPS_KEK_FILE", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "keys" / "kek.json"
    get_settings.cache_clear()


def secrets(path: Path) -> list[str]:
    kek = kekfile.load(path)
    return [base64.b64encode(k.secret).decode() for k in kek.keys.values()]


def test_create_show_rotate_retire(kek_path: Path) -> None:
    created = runner.invoke(app, ["keys", "kek", "create"])
    assert created.exit_code == 0, created.output
    assert kekfile.load(kek_path).dev is False
    again = runner.invoke(app, ["keys", "kek", "create"])
    assert again.exit_code == EXIT_BAD_INPUT
    assert "rotate it instead" in again.output

    rotated = runner.invoke(app, ["keys", "kek", "rotate", "--json"])
    assert rotated.exit_code == 0, rotated.output
    shown = runner.invoke(app, ["keys", "kek", "show", "--json"])
    doc = json.loads(shown.output)
    assert [(v["version"], v["current"]) for v in doc["versions"]] == [(1, False), (2, True)]
    for output in (created.output, rotated.output, shown.output):
        assert not any(secret in output for secret in secrets(kek_path))

    current = runner.invoke(app, ["keys", "kek", "retire", "2"])
    assert current.exit_code == EXIT_BAD_INPUT
    assert "is current" in current.output
    unknown = runner.invoke(app, ["keys", "kek", "retire", "7"])
    assert unknown.exit_code == EXIT_NOT_FOUND
    assert "not in" in unknown.output
    assert sorted(kekfile.load(kek_path).keys) == [1, 2]


@pytest.mark.parametrize("args", [["retire", "0"], ["retire", "two"], ["retire"]])
def test_bad_input_exits_2(kek_path: Path, args: list[str]) -> None:
    kekfile.create(kek_path, datetime.now(UTC))
    result = runner.invoke(app, ["keys", "kek", *args])
    assert result.exit_code == EXIT_BAD_INPUT


def test_show_and_rotate_without_a_kek_file_say_how_to_make_one(kek_path: Path) -> None:
    for verb in ("show", "rotate"):
        result = runner.invoke(app, ["keys", "kek", verb])
        assert result.exit_code == EXIT_BAD_INPUT
        assert "privops keys kek create" in result.output
    assert not kek_path.exists()


def test_every_kek_verb_has_help() -> None:
    for verb in ("show", "create", "rotate", "retire"):
        result = runner.invoke(app, ["keys", "kek", verb, "--help"])
        assert result.exit_code == 0
        assert len(result.output.split("Usage:")[1]) > 80
