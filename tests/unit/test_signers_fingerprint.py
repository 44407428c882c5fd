"""What a worker's signers file trusts, as one fingerprint workers can be compared by.

Review, session 45: each command is checked against the signers file of the worker that
owns its partition, and `privops keys revoke` edits one host's file. A worker whose copy
was not replaced still took the revoked key's commands, and nothing showed that the
workers disagreed. The fingerprint (``signing_keys.signers_fingerprint``) is of what the
file trusts, not of its bytes; /health and ``privops_signers_info`` show it, and alert
PrivopsSignersDiffer fires when workers show different ones.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from privops.adapters import metrics, signing_keys
from privops.adapters.settings import Settings
from privops.core.signing import SignerKey, Signers, SigningKey

NOW = datetime(2026, 3, 2, tzinfo=UTC)
JANE = SigningKey.derive(b"signers fingerprint tests", "jane")
OMAR = SigningKey.derive(b"signers fingerprint tests", "omar")
WORKER = SigningKey.derive(b"signers fingerprint tests", "worker")
OTHER_WORKER = SigningKey.derive(b"signers fingerprint tests", "other worker")


def trusting(*entries: SignerKey) -> Signers:
    signers = Signers()
    for entry in entries:
        signers = signers.with_key(entry)
    return signers


def fingerprint(signers: Signers) -> str:
    return signing_keys.signers_fingerprint(signers)


def write(path: Path, content: bytes) -> Path:
    """Replace the file whole, as `privops keys` and a copy by rename do."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(content)
    tmp.chmod(signing_keys.SIGNERS_FILE_MODE)
    os.replace(tmp, path)
    return path


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir(mode=signing_keys.KEYS_DIR_MODE)
    return directory


def watch(path: Path, worker: SigningKey = WORKER) -> signing_keys.SignersWatch:
    return signing_keys.SignersWatch(path, (worker.entry("privops-scheduler", NOW),))


def shown() -> dict[str, float]:
    """privops_signers_info's children: fingerprint -> value."""
    return {
        sample.labels["fingerprint"]: sample.value
        for family in metrics.REGISTRY.collect()
        if family.name == "privops_signers_info"
        for sample in family.samples
    }


def test_the_fingerprint_is_of_what_is_trusted_not_of_the_file(keys_dir: Path) -> None:
    """Copies of one set of keys agree, whatever their order, layout or times: a key
    created, or revoked, at another moment on another host is trusted alike."""
    jane, omar = JANE.entry("jane.dpo", NOW), OMAR.entry("omar.dpo", NOW)
    one = trusting(jane, omar).revoked(OMAR.key_id, NOW)
    later = NOW + timedelta(days=3)
    other = trusting(OMAR.entry("omar.dpo", later), JANE.entry("jane.dpo", later)).revoked(
        OMAR.key_id, later
    )
    assert list(one.root) != list(other.root)  # another order
    assert fingerprint(one) == fingerprint(other)

    compact = json.dumps(
        dict(reversed(json.loads(one.dump()).items())), separators=(",", ":")
    ).encode()
    assert compact != one.dump()
    first = watch(write(keys_dir / "a.json", one.dump())).fingerprint
    second = watch(write(keys_dir / "b.json", compact)).fingerprint
    assert first == second == fingerprint(one)
    assert len(first) == signing_keys.FINGERPRINT_LENGTH
    assert all(c in "0123456789abcdef" for c in first)


def test_a_revocation_changes_the_fingerprint() -> None:
    signers = trusting(JANE.entry("jane.dpo", NOW), OMAR.entry("omar.dpo", NOW))
    revoked = signers.revoked(OMAR.key_id, NOW)
    assert fingerprint(revoked) != fingerprint(signers)
    assert fingerprint(revoked.revoked(JANE.key_id, NOW)) not in {
        fingerprint(signers),
        fingerprint(revoked),
    }


def test_a_key_added_changes_the_fingerprint() -> None:
    signers = trusting(JANE.entry("jane.dpo", NOW))
    assert fingerprint(signers.with_key(OMAR.entry("omar.dpo", NOW))) != fingerprint(signers)
    assert fingerprint(signers) != fingerprint(Signers())


def test_a_key_given_to_another_owner_changes_the_fingerprint() -> None:
    """A command is taken only from its actor's key: who owns a key is part of what is
    trusted."""
    assert fingerprint(trusting(JANE.entry("jane.dpo", NOW))) != fingerprint(
        trusting(JANE.entry("omar.dpo", NOW))
    )


def test_every_field_of_a_signer_key_is_weighed_or_known_not_to_matter() -> None:
    """A field added to SignerKey (a validity window, say) may change what is trusted:
    then it belongs in ``signers_fingerprint``. created_at does not (nothing checks it),
    and revoked_at counts as revoked or not."""
    weighed, not_trust = {"owner", "public_key", "revoked_at"}, {"created_at"}
    assert set(SignerKey.model_fields) == weighed | not_trust
    base = JANE.entry("jane.dpo", NOW)
    variants = {
        "owner": base.model_copy(update={"owner": "omar.dpo"}),
        "public_key": OMAR.entry("jane.dpo", NOW),
        "revoked_at": base.model_copy(update={"revoked_at": NOW}),
        "created_at": base.model_copy(update={"created_at": NOW + timedelta(days=1)}),
    }
    for field, variant in variants.items():
        changed = fingerprint(trusting(variant)) != fingerprint(trusting(base))
        assert changed == (field in weighed), field


def test_the_workers_own_keys_are_not_in_it(keys_dir: Path) -> None:
    """The fingerprint is the file's: an operator compares the files the workers read."""
    path = write(keys_dir / "signers.json", trusting(JANE.entry("jane.dpo", NOW)).dump())
    assert watch(path, WORKER).fingerprint == watch(path, OTHER_WORKER).fingerprint


@pytest.mark.parametrize("problem", ["group-writable", "not-json", "a-directory"])
def test_a_file_trusted_no_more_shows_the_fail_closed_marker(keys_dir: Path, problem: str) -> None:
    path = write(keys_dir / "signers.json", trusting(JANE.entry("jane.dpo", NOW)).dump())
    watcher = watch(path)
    assert watcher.fingerprint == fingerprint(trusting(JANE.entry("jane.dpo", NOW)))
    if problem == "group-writable":
        path.chmod(0o664)
    elif problem == "not-json":
        write(path, b"{not json")
    else:
        path.unlink()
        path.mkdir()
    assert JANE.key_id not in watcher.refresh().root
    assert watcher.fingerprint == metrics.SIGNERS_FAIL_CLOSED
    assert shown() == {metrics.SIGNERS_FAIL_CLOSED: 1.0}


def test_no_file_shows_its_own_marker(keys_dir: Path) -> None:
    watcher = watch(keys_dir / "signers.json")
    assert watcher.fingerprint == metrics.SIGNERS_MISSING
    markers = {metrics.SIGNERS_MISSING, metrics.SIGNERS_FAIL_CLOSED}
    assert len(markers) == 2
    assert fingerprint(Signers()) not in markers  # an empty file is no missing one
    write(keys_dir / "signers.json", trusting(JANE.entry("jane.dpo", NOW)).dump())
    watcher.refresh()
    assert watcher.fingerprint == fingerprint(trusting(JANE.entry("jane.dpo", NOW)))


def test_the_metric_shows_only_the_set_trusted_now(tmp_path: Path) -> None:
    """One child at a time: the old one left at 1 would count as another worker's set,
    and its labels would grow with every change of the file."""
    cfg = Settings(home=tmp_path / "home")
    jane, _ = signing_keys.generate(cfg, "jane.dpo")
    watcher = watch(cfg.signers_file)
    before = watcher.fingerprint
    assert shown() == {before: 1.0}

    signing_keys.revoke(cfg, jane.key_id)
    watcher.refresh()
    after = watcher.fingerprint
    assert after != before
    assert shown() == {after: 1.0}

    signing_keys.generate(cfg, "omar.dpo")
    watcher.refresh()
    assert shown() == {watcher.fingerprint: 1.0}
    assert watcher.fingerprint not in {before, after}


def test_the_metric_takes_no_other_label_value() -> None:
    metrics.set_signers_fingerprint("jane.dpo@example.com")
    assert shown() == {metrics.OTHER: 1.0}
    metrics.set_signers_fingerprint("0f1e2d3c4b5a6978")
    assert shown() == {"0f1e2d3c4b5a6978": 1.0}


def test_an_unchanged_file_is_not_fingerprinted_again(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``refresh`` runs every 50 ms while commands come: the fingerprint is worked out,
    and the metric set, only when the file changed."""
    worked: list[Signers] = []
    original = signing_keys.signers_fingerprint

    def counted(signers: Signers) -> str:
        worked.append(signers)
        return original(signers)

    monkeypatch.setattr(signing_keys, "signers_fingerprint", counted)
    set_metric: list[str] = []
    monkeypatch.setattr(metrics, "set_signers_fingerprint", set_metric.append)
    signers = trusting(JANE.entry("jane.dpo", NOW))
    path = write(keys_dir / "signers.json", signers.dump())
    watcher = watch(path)
    for _ in range(100):
        watcher.refresh()
    assert (len(worked), len(set_metric)) == (1, 1)

    write(path, signers.revoked(JANE.key_id, NOW).dump())
    for _ in range(100):
        watcher.refresh()
    assert (len(worked), len(set_metric)) == (2, 2)
    assert set_metric == [fingerprint(signers), fingerprint(signers.revoked(JANE.key_id, NOW))]
