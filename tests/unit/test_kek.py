"""The KEK file (privops.adapters.kek): permissions, versions, rotation, dev vs prod."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from privops.adapters import kek as kekfile
from privops.core.errors import ConfigError
from privops.core.fieldcrypt import MAIN_SCOPE, decrypt_field, encrypt_field
from privops.core.subject_keys import KeyRing, create, rewrap

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "kek.json"


def test_a_new_kek_file_is_private_and_reads_back(path: Path) -> None:
    made = kekfile.create(path, NOW)
    assert (_mode(path), _mode(path.parent)) == (0o600, 0o700)
    loaded = kekfile.load(path)
    assert loaded.current() == made.current()
    assert (loaded.current_version, loaded.dev) == (1, False)
    assert made.current().secret.hex() not in repr(loaded)


def test_a_kek_file_is_never_replaced(path: Path) -> None:
    first = kekfile.create(path, NOW)
    with pytest.raises(kekfile.KekExists):
        kekfile.create(path, NOW)
    assert kekfile.load(path).current() == first.current()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_kek_file_open_to_others_is_refused(path: Path, mode: int) -> None:
    kekfile.create(path, NOW)
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        kekfile.load(path)
    with pytest.raises(ConfigError, match="chmod 600"):
        kekfile.provider(path, "prod", say=print)


def test_a_damaged_file_is_refused_without_echoing_it(path: Path) -> None:
    kekfile.create(path, NOW)
    doc = json.loads(path.read_text())
    secret = doc["versions"]["1"]["key"]
    doc["current"] = 7
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="current KEK version 7"):
        kekfile.load(path)
    doc["current"] = 1
    doc["versions"]["1"]["key"] = secret[:-4]
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        kekfile.load(path)
    assert secret[:-4] not in str(info.value)


def test_rotation_keeps_old_wrapped_keys_readable(path: Path) -> None:
    v1 = kekfile.create(path, NOW)
    record, key = create("subj-ann", MAIN_SCOPE, v1.current(), NOW)
    token = encrypt_field(key, "subj-ann", "identifiers.email", "ann@example.com")

    v2 = kekfile.rotate(path, NOW)
    assert (v2.current_version, sorted(v2.keys), _mode(path)) == (2, [1, 2], 0o600)
    reloaded = kekfile.load(path)
    ring = KeyRing(reloaded.unwrapper())
    ring.apply(record.key_id, record)
    assert decrypt_field(token, "subj-ann", "identifiers.email", ring.get) == "ann@example.com"

    new_record, _ = create("subj-bob", MAIN_SCOPE, reloaded.current(), NOW)
    assert kekfile.stale([record, new_record], reloaded) == [record]
    moved = rewrap(record, reloaded.version(1), reloaded.current())
    assert kekfile.stale([moved, new_record], reloaded) == []

    retired = kekfile.retire(path, 1)
    assert sorted(retired.keys) == [2]
    after = KeyRing(kekfile.load(path).unwrapper())
    after.apply(moved.key_id, moved)
    assert decrypt_field(token, "subj-ann", "identifiers.email", after.get) == "ann@example.com"
    after.apply(record.key_id, record)  # an old copy, still under the retired version
    with pytest.raises(kekfile.UnknownKekVersion):
        after.get(record.key_id)


def test_the_current_version_cannot_be_retired(path: Path) -> None:
    kekfile.create(path, NOW)
    with pytest.raises(ConfigError, match="is current"):
        kekfile.retire(path, 1)
    with pytest.raises(kekfile.UnknownKekVersion):
        kekfile.retire(path, 5)


def test_dev_creates_a_marked_kek_on_the_spot(path: Path) -> None:
    said: list[str] = []
    made = kekfile.provider(path, "dev", say=said.append)
    assert made.dev
    assert len(said) == 1
    assert "development KEK" in said[0]
    assert kekfile.provider(path, "dev", say=said.append).current() == made.current()
    assert len(said) == 1


def test_prod_refuses_a_missing_or_development_kek(path: Path) -> None:
    with pytest.raises(ConfigError, match="no KEK file") as missing:
        kekfile.provider(path, "prod", say=print)
    # A connector is told to copy the workers' file: one of its own unwraps nothing.
    assert "takes a copy of that same file" in str(missing.value)
    assert not path.exists()
    kekfile.provider(path, "dev", say=lambda _: None)
    with pytest.raises(ConfigError, match="development KEK"):
        kekfile.provider(path, "prod", say=print)


def test_prod_accepts_its_own_kek(path: Path) -> None:
    made = kekfile.create(path, NOW)
    assert kekfile.provider(path, "prod", say=print).current() == made.current()


def test_processes_starting_together_in_dev_share_one_kek(path: Path) -> None:
    barrier = threading.Barrier(4)
    found: list[bytes] = []

    def start() -> None:
        barrier.wait()
        found.append(kekfile.provider(path, "dev", say=lambda _: None).current().secret)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4
    assert len(set(found)) == 1


def test_a_running_process_follows_a_rotation(path: Path) -> None:
    """Workers keep running through `privops keys kek rotate`: new keys are wrapped under
    the new version at once, and records re-wrapped under it open."""
    kekfile.create(path, NOW)
    watch = kekfile.KekWatch(path, "prod", say=print)
    ring = KeyRing(watch.unwrapper())
    assert watch.current().version == 1
    rotated = kekfile.rotate(path, NOW)
    record, key = create("subj-ann", MAIN_SCOPE, rotated.current(), NOW)
    assert ring.add(record) == key  # version 2 unknown when the watch last looked
    assert watch.current().version == 2


def test_a_watch_keeps_the_last_good_kek_when_the_file_goes_bad(path: Path) -> None:
    kekfile.create(path, NOW)
    watch = kekfile.KekWatch(path, "prod", say=print)
    good = watch.current()
    os.chmod(path, 0o644)
    assert watch.current() == good
    with pytest.raises(kekfile.UnknownKekVersion):
        watch.version(9)
