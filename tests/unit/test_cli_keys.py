"""`privops keys generate|list|revoke`, the key files on disk, the CLI signing what it
publishes, and the worker's view of the signers file (re-read when it changes)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from privops.adapters import signing_keys
from privops.adapters.settings import Settings, get_settings
from privops.cli.common import EXIT_BAD_INPUT, EXIT_NOT_FOUND
from privops.cli.main import app
from privops.cli.request import publish as publish_module
from privops.cli.request.publish import signed_for
from privops.cli.request.publish import signing_keys as actor_keys
from privops.core import records as r
from privops.core.errors import ConfigError
from privops.core.signing import SigningKey
from privops.core.vocab import RequestType
from tests.unit.test_cli_request_waits import FAKE_CLUSTER, FakeBroker, Run, broker, run

__all__ = ["broker"]  # the fake broker fixture, used by the last test

NOW = datetime(2026, 3, 2, tzinfo=UTC)


@dataclass(frozen=True)
class Home:
    path: Path

    @property
    def keys(self) -> Path:
        return self.path / "keys"

    @property
    def signers(self) -> Path:
        return self.keys / "signers.json"

    def settings(self) -> Settings:
        get_settings.cache_clear()
        return get_settings()


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Home]:
    monkeypatch.setenv("PRIVOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PRIVOPS_ENV", "dev")
    for name in ("PRIVOPS_SIGNERS_FILE", "PRIVOPS_SIGNING_KEY_FILE", "PRIVOPS_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield Home(tmp_path)
    get_settings.cache_clear()


def keys(*args: str) -> Run:
    result = CliRunner().invoke(app, ["keys", *args], env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def generated(owner: str = "dpo") -> dict[str, str]:
    out = keys("generate", "--owner", owner, "--json")
    assert out.code == 0, out.flat
    answer: dict[str, str] = json.loads(out.stdout)
    return answer


def listed() -> list[dict[str, str | None]]:
    out = keys("list", "--json")
    assert out.code == 0, out.flat
    rows: list[dict[str, str | None]] = json.loads(out.stdout)
    return rows


# --- generate ------------------------------------------------------------------------------


def test_generate_writes_a_private_key_only_its_owner_reads_and_trusts_its_public_key(
    home: Home,
) -> None:
    answer = generated("dpo")

    key_file = home.keys / "dpo.key"
    assert answer == {
        "key_id": answer["key_id"],
        "owner": "dpo",
        "key_file": str(key_file),
        "signers_file": str(home.signers),
    }
    assert mode(key_file) == 0o600
    assert mode(home.keys) == 0o700
    key = signing_keys.load_key(key_file)
    assert key.key_id == answer["key_id"]
    trusted = signing_keys.read_signers(home.signers).root[key.key_id]
    assert (trusted.owner, trusted.revoked_at) == ("dpo", None)


def test_generate_says_where_everything_went(home: Home) -> None:
    out = keys("generate", "--owner", "alice")
    assert out.code == 0, out.flat
    assert f"private key in {home.keys / 'alice.key'}" in out.flat
    assert f"public key trusted in {home.signers}" in out.flat


def test_generate_never_overwrites_a_key(home: Home) -> None:
    first = generated("dpo")
    before = (home.keys / "dpo.key").read_bytes()

    out = keys("generate", "--owner", "dpo")

    assert out.code == EXIT_BAD_INPUT
    assert "already exists; keys are never overwritten" in out.flat
    assert (home.keys / "dpo.key").read_bytes() == before
    assert [row["key_id"] for row in listed()] == [first["key_id"]]


@pytest.mark.usefixtures("home")
def test_generate_into_a_chosen_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "jane.pem"
    out = keys("generate", "--owner", "jane", "--key-file", str(target))
    assert out.code == 0, out.flat
    assert mode(target) == 0o600
    assert [row["owner"] for row in listed()] == ["jane"]


@pytest.mark.parametrize(
    ("owner", "words"),
    [
        ("jane@example.com", "is not a principal name"),
        ("Jane Doe", "is not a principal name"),
        ("../dpo", "is not a principal name"),
        ("", "is not a principal name"),
        ("privops", "reserved for privops' own principals"),
        ("privops-scheduler", "reserved for privops' own principals"),
    ],
)
def test_generate_refuses_an_owner_that_is_not_a_plain_principal_name(
    home: Home, owner: str, words: str
) -> None:
    out = keys("generate", "--owner", owner)
    assert out.code == EXIT_BAD_INPUT
    assert words in out.flat
    assert "jane@example.com" not in out.flat  # never repeated (review, session 43)
    assert not home.keys.exists() or list(home.keys.glob("*.key")) == []


# --- list and revoke -----------------------------------------------------------------------


def test_list_with_no_keys_says_so(home: Home) -> None:
    out = keys("list")
    assert out.code == 0
    assert f"no keys in {home.signers}" in out.flat
    assert listed() == []


@pytest.mark.usefixtures("home")
def test_list_shows_every_key_with_owner_and_dates() -> None:
    a, b = generated("alice"), generated("bob")
    rows = {row["key_id"]: row for row in listed()}
    assert {k: v["owner"] for k, v in rows.items()} == {a["key_id"]: "alice", b["key_id"]: "bob"}
    assert all(row["revoked_at"] is None and row["created_at"] for row in rows.values())
    table = keys("list")
    assert table.code == 0
    assert a["key_id"] in table.stdout
    assert "alice" in table.stdout


@pytest.mark.usefixtures("home")
def test_revoke_marks_the_key_revoked_and_keeps_it_listed() -> None:
    kid = generated("dpo")["key_id"]

    out = keys("revoke", kid)
    assert out.code == 0, out.flat
    assert f"key {kid} of dpo revoked at" in out.flat
    [row] = listed()
    assert row["revoked_at"] is not None
    again = keys("revoke", kid.upper(), "--json")  # revoking twice keeps the first time
    assert again.code == 0
    assert json.loads(again.stdout)["revoked_at"] == row["revoked_at"]
    assert "revoked" in keys("list").stdout


@pytest.mark.parametrize(
    ("key_id", "code", "words"),
    [
        ("0123456789abcdef", EXIT_NOT_FOUND, "no key 0123456789abcdef in"),
        ("dpo", EXIT_BAD_INPUT, "invalid key id 'dpo': 16 hex digits"),
        ("0123456789abcdeg", EXIT_BAD_INPUT, "invalid key id"),
    ],
)
@pytest.mark.usefixtures("home")
def test_revoke_of_an_unknown_or_malformed_key_id(key_id: str, code: int, words: str) -> None:
    generated("dpo")
    out = keys("revoke", key_id)
    assert out.code == code
    assert words in out.flat
    assert listed()[0]["revoked_at"] is None


def test_a_broken_signers_file_is_a_clear_error(home: Home) -> None:
    home.keys.mkdir()
    home.signers.write_text("{oops")
    out = keys("list")
    assert out.code == EXIT_BAD_INPUT
    assert f"the signers file {home.signers} is not a valid signers file" in out.flat


# --- the key the CLI signs with ------------------------------------------------------------


def test_in_dev_a_missing_key_is_created_once_and_then_reused(home: Home) -> None:
    said: list[str] = []
    first = signing_keys.signing_key(home.settings(), "dpo", say=said.append)
    again = signing_keys.signing_key(home.settings(), "dpo", say=said.append)

    assert first.key_id == again.key_id
    assert len(said) == 1
    assert f"created a development signing key for 'dpo' (key id {first.key_id})" in said[0]
    assert mode(home.keys / "dpo.key") == 0o600
    assert signing_keys.read_signers(home.signers).root[first.key_id].owner == "dpo"


def test_outside_dev_a_missing_key_says_how_to_make_one(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVOPS_ENV", "prod")
    monkeypatch.setenv("PRIVOPS_PSEUDONYM_KEY", "a-real-pseudonym-key-0123")
    monkeypatch.setenv("PRIVOPS_AUDIT_KEY", "a-real-audit-key-0123456789")
    with pytest.raises(ConfigError, match=r"run `privops keys generate --owner dpo`"):
        signing_keys.signing_key(home.settings(), "dpo", say=print)
    assert not (home.keys / "dpo.key").exists()


def test_a_key_others_can_read_is_refused(home: Home) -> None:
    signing_keys.signing_key(home.settings(), "dpo", say=lambda _m: None)
    (home.keys / "dpo.key").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others: chmod 600 it"):
        signing_keys.signing_key(home.settings(), "dpo", say=print)


def test_the_configured_key_file_is_the_configured_actors(
    home: Home, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mine = tmp_path / "secure" / "me.key"
    monkeypatch.setenv("PRIVOPS_SIGNING_KEY_FILE", str(mine))
    cfg = home.settings()
    assert signing_keys.key_file(cfg, cfg.actor) == mine
    assert signing_keys.key_file(cfg, "jane") == mine.parent / "jane.key"


def _erasure(actor: str = "dpo") -> r.RequestSubmitted:
    return r.RequestSubmitted(
        command_id="c-1",
        request_id="R-1",
        issued_at=NOW,
        actor=actor,
        request_type=RequestType.erasure,
        subject_id="S-1",
        received_on=date(2026, 3, 1),
    )


def test_the_cli_signs_each_command_with_its_actors_key(
    home: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def cluster_id(_client: object) -> str:
        return FAKE_CLUSTER  # the id of the cluster the commands go to, asked of it

    monkeypatch.setattr(publish_module, "cluster_id", cluster_id)
    unsigned = [_erasure("dpo"), _erasure("jane"), _erasure("dpo")]
    keys = actor_keys(unsigned, home.settings())
    commands = asyncio.run(signed_for(unsigned, keys, "127.0.0.1:1"))

    trusted = signing_keys.read_signers(home.signers)
    assert [trusted.verify(c, FAKE_CLUSTER).owner for c in commands] == ["dpo", "jane", "dpo"]
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("created a development signing key") == 2


@pytest.mark.parametrize(
    ("env", "actor", "words"),
    [
        ({"PRIVOPS_ENV": "prod"}, "dpo", "run `privops keys generate --owner dpo`"),
        ({}, "jane@example.com", "is not a principal name"),
    ],
)
def test_the_cli_refuses_to_publish_what_it_cannot_sign(
    home: Home,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    actor: str,
    words: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PRIVOPS_PSEUDONYM_KEY", "a-real-pseudonym-key-0123")
    monkeypatch.setenv("PRIVOPS_AUDIT_KEY", "a-real-audit-key-0123456789")
    with pytest.raises(typer.Exit) as exc:
        actor_keys([_erasure(actor)], home.settings())
    assert exc.value.exit_code == EXIT_BAD_INPUT
    err = " ".join(capsys.readouterr().err.split())
    assert words in err
    assert "jane@example.com" not in err


def test_request_verbs_publish_signed_commands(home: Home, broker: FakeBroker) -> None:
    out = run("erase", "--subject", "C-1", "--verified-now")
    assert out.code == 0, out.flat
    [sent] = broker.sent
    assert signing_keys.read_signers(home.signers).verify(sent, FAKE_CLUSTER).owner == "dpo"
    assert "created a development signing key for 'dpo'" in out.stderr


# --- the worker's view of the signers file -------------------------------------------------


WORKER = SigningKey.derive(b"worker secret", "worker key")


def test_the_worker_rereads_the_signers_file_when_it_changes(home: Home) -> None:
    cfg = home.settings()
    watch = signing_keys.SignersWatch(cfg.signers_file, (WORKER.entry("privops-scheduler", NOW),))
    assert set(watch.refresh().root) == {WORKER.key_id}  # no file yet: its own key only

    key, _ = signing_keys.generate(cfg, "dpo")
    assert watch.refresh().root[key.key_id].revoked_at is None

    signing_keys.revoke(cfg, key.key_id)
    assert watch.refresh().root[key.key_id].revoked_at is not None
    assert watch.refresh() is watch.refresh()  # unchanged: not read again


def test_a_broken_signers_file_trusts_no_file_key(home: Home) -> None:
    cfg = home.settings()
    key, _ = signing_keys.generate(cfg, "dpo")
    watch = signing_keys.SignersWatch(cfg.signers_file, (WORKER.entry("privops-scheduler", NOW),))
    assert key.key_id in watch.refresh().root

    cfg.signers_file.write_text('{"truncated": ')
    os.utime(cfg.signers_file, ns=(1, 1))  # a different mtime whatever the clock's grain
    assert set(watch.refresh().root) == {WORKER.key_id}
