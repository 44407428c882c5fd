"""The worker trusts a signers file only if nobody but its owner could have written it.

Whoever can write the file (or replace it in its directory) decides whose commands the
worker takes. Before, a signers file at 0666, or in a directory at 0777, was trusted,
while a private key file at 0666 was refused (``load_key``).
"""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from privops.adapters import signing_keys
from privops.adapters.settings import Settings
from privops.core.signing import Signers, SigningKey

NOW = datetime(2026, 3, 2, tzinfo=UTC)
DPO = SigningKey.derive(b"signers trust tests", "dpo key")
WORKER = SigningKey.derive(b"signers trust tests", "worker key")


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir(mode=signing_keys.KEYS_DIR_MODE)
    return directory


def trusting_dpo(directory: Path) -> Path:
    path = directory / "signers.json"
    path.write_bytes(Signers().with_key(DPO.entry("dpo", NOW)).dump())
    path.chmod(signing_keys.SIGNERS_FILE_MODE)
    return path


def watch(path: Path) -> signing_keys.SignersWatch:
    return signing_keys.SignersWatch(path, (WORKER.entry("privops-scheduler", NOW),))


def test_a_signers_file_only_its_owner_may_write_is_trusted(keys_dir: Path) -> None:
    path = trusting_dpo(keys_dir)
    assert set(watch(path).refresh().root) == {DPO.key_id, WORKER.key_id}


@pytest.mark.parametrize(
    ("file_mode", "dir_mode", "fix"),
    [
        pytest.param(0o664, 0o700, "chmod go-w {file}", id="file-group-writable"),
        pytest.param(0o646, 0o700, "chmod go-w {file}", id="file-world-writable"),
        pytest.param(0o666, 0o700, "chmod go-w {file}", id="file-0666"),
        pytest.param(0o644, 0o770, "chmod go-w {dir}", id="directory-group-writable"),
        pytest.param(0o644, 0o777, "chmod go-w {dir}", id="directory-world-writable"),
    ],
)
def test_a_signers_file_others_may_write_trusts_no_key_until_fixed(
    keys_dir: Path,
    caplog: pytest.LogCaptureFixture,
    file_mode: int,
    dir_mode: int,
    fix: str,
) -> None:
    path = trusting_dpo(keys_dir)
    path.chmod(file_mode)
    keys_dir.chmod(dir_mode)
    watcher = watch(path)
    with caplog.at_level(logging.ERROR, logger=signing_keys.__name__):
        trusted = watcher.refresh()

    assert set(trusted.root) == {WORKER.key_id}  # its own key only: no DPO command
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert fix.format(file=path, dir=keys_dir) in line
    assert "every DPO command will be rejected" in line

    # Fixed as told, with the content untouched: trusted from the next command on.
    path.chmod(signing_keys.SIGNERS_FILE_MODE)
    keys_dir.chmod(signing_keys.KEYS_DIR_MODE)
    assert set(watcher.refresh().root) == {DPO.key_id, WORKER.key_id}


def test_a_chmod_that_opens_the_file_is_noticed_at_once(keys_dir: Path) -> None:
    path = trusting_dpo(keys_dir)
    watcher = watch(path)
    assert DPO.key_id in watcher.refresh().root
    path.chmod(0o666)  # neither size nor mtime change
    assert set(watcher.refresh().root) == {WORKER.key_id}


def test_a_sticky_world_writable_directory_lets_nobody_replace_the_file(keys_dir: Path) -> None:
    """/tmp, and secrets mounted into a container: only the file's owner (or root) may
    rename or remove it there."""
    path = trusting_dpo(keys_dir)
    keys_dir.chmod(0o1777)
    assert DPO.key_id in watch(path).refresh().root


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_signers_file_another_user_owns_is_not_trusted(
    keys_dir: Path, caplog: pytest.LogCaptureFixture, what: str
) -> None:
    path = trusting_dpo(keys_dir)
    os.chown(path if what == "file" else keys_dir, 12345, -1)
    with caplog.at_level(logging.ERROR, logger=signing_keys.__name__):
        trusted = watch(path).refresh()
    assert set(trusted.root) == {WORKER.key_id}
    assert "owned by uid 12345" in caplog.text


def test_keys_generated_by_the_cli_are_trusted_as_written(tmp_path: Path) -> None:
    """`privops keys generate` (and the local runtime and demo, through it) writes the
    signers file and its directory as the worker trusts them, whatever the umask."""
    old = os.umask(0o002)  # a group-writable default, as on some distributions
    try:
        cfg = Settings(home=tmp_path / "home")
        key, _ = signing_keys.generate(cfg, "dpo")
    finally:
        os.umask(old)
    assert stat.S_IMODE(cfg.signers_file.stat().st_mode) == signing_keys.SIGNERS_FILE_MODE
    assert key.key_id in watch(cfg.signers_file).refresh().root
