"""Anchors: signed chain heads outside Kafka catch a rewritten topic that re-hashes cleanly."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from privops.adapters.kafka import Span
from privops.adapters.settings import get_settings
from privops.adapters.signing_keys import read_signers, signing_key
from privops.cli import audit as audit_cli
from privops.core import audit_anchor
from privops.core.audit import AuditChainer, AuditEvent, verify_log
from privops.core.audit_anchor import (
    ANCHORS_FORMAT,
    LEGACY_SIGNATURE_ALG,
    AnchorBuilder,
    AnchorCheck,
    Anchors,
    AnchorsForged,
    AnchorsInvalid,
    AnchorsUntrusted,
    Located,
    build_anchors,
    check_anchors,
    dump_anchors,
    load_anchors,
)
from privops.core.signing import Signers, SigningKey
from tests.unit.test_audit import KEY, RING, T0, build, legacy_chain, rehash

NOW = T0 + timedelta(days=1)
OTHER_KEY = b"another-audit-key-0123456789"
DPO = SigningKey.derive(b"a DPO's own key, for these tests", "anchors")
SIGNERS = Signers({DPO.key_id: DPO.entry("dpo-jane", T0)})
WORKER = SigningKey.derive(KEY, "privops/worker")
"""What anyone holding the audit key (every worker) can derive: trusted by nobody here."""


def legacy_file(anchors: Anchors, key: bytes, version: int) -> str:
    """An anchors file as privops wrote them before session 33: HMAC under the audit key."""
    document = json.loads(dump_anchors(anchors, DPO, version))
    del document["signer"], document["signature"]
    document["alg"] = LEGACY_SIGNATURE_ALG
    document["signature"] = audit_anchor._legacy_signature(key, document)
    return json.dumps(document)


def place(partition: int, records: list[AuditEvent], start: int = 0) -> list[Located]:
    return [(partition, start + i, record) for i, record in enumerate(records)]


def topic() -> tuple[list[AuditEvent], list[Located]]:
    """Two keyed chains (req-1 on partition 0, req-2 on partition 1) and a legacy one."""
    chainer = AuditChainer(key=KEY)
    one, two = build(chainer, "req-1", 3), build(chainer, "req-2", 2)
    old = legacy_chain("req-old", 2)
    return one, place(0, old + one) + place(1, two)


def anchored(located: list[Located], prefix: str = "") -> Anchors:
    return build_anchors(located, topic="privacy.audit", created_at=NOW, chain_prefix=prefix)


def partitions(located: list[Located]) -> dict[int, list[AuditEvent]]:
    out: dict[int, list[AuditEvent]] = {}
    for partition, _, record in located:
        out.setdefault(partition, []).append(record)
    return out


def test_anchors_hold_every_chain_head_and_partition_end() -> None:
    one, located = topic()
    anchors = anchored(located)
    assert anchors.offsets == {0: 5, 1: 2}
    assert set(anchors.chains) == {"req-1", "req-2", "req-old"}
    assert (anchors.chains["req-1"].seq, anchors.chains["req-1"].hash) == (3, one[-1].hash)
    assert check_anchors(located, anchors) == []


def test_anchors_file_round_trips() -> None:
    _, located = topic()
    anchors = anchored(located)
    text = dump_anchors(anchors, DPO, 1)
    document = json.loads(text)
    assert document["format"] == ANCHORS_FORMAT
    assert document["key_version"] == 1
    assert document["created_at"].startswith("2026-03-03T09:30:00")
    assert load_anchors(text, RING, SIGNERS) == anchors.model_copy(
        update={"key_version": 1, "signed_by": f"dpo-jane (key {DPO.key_id})"}
    )


def test_anchors_of_an_older_privops_still_load_and_say_what_signed_them() -> None:
    """Files made before session 33 are HMAC under the audit key; kept on write-once
    storage they are still evidence, even after a rotation, and read as such."""
    _, located = topic()
    old = legacy_file(anchored(located), KEY, 1)
    # Every worker holds the audit key: without being asked to, such a file is refused.
    with pytest.raises(AnchorsUntrusted, match="--accept-legacy-anchors"):
        load_anchors(old, RING, SIGNERS)
    loaded = load_anchors(old, {1: KEY, 2: OTHER_KEY}, SIGNERS, accept_legacy=True)
    assert loaded.legacy
    assert loaded.chains == anchored(located).chains
    assert loaded.key_version == 1
    assert loaded.signed_by == "audit key version 1 (a file of an older privops)"
    document = json.loads(legacy_file(anchored(located), KEY, 1))
    document["chains"]["req-1"]["seq"] = 2
    with pytest.raises(AnchorsForged, match="fails its signature check"):
        load_anchors(json.dumps(document), RING, SIGNERS, accept_legacy=True)
    with pytest.raises(AnchorsForged, match="another audit key"):
        load_anchors(
            legacy_file(anchored(located), OTHER_KEY, 1), RING, SIGNERS, accept_legacy=True
        )
    with pytest.raises(AnchorsForged, match="version 7, which is not in the keyring"):
        load_anchors(legacy_file(anchored(located), KEY, 7), RING, SIGNERS, accept_legacy=True)


def test_a_worker_cannot_make_anchors_for_a_log_it_rewrote() -> None:
    """DESIGN.md section 8: rewriting the topic is detectable even by someone who can
    write it. A worker writes privacy.audit and holds the audit key, which signed the
    anchors files until session 33: it could sign one for its rewrite (contract review).
    Now a file is signed by a DPO's key the signers file trusts, and not revoked."""
    _, located = topic()
    by_worker = dump_anchors(anchored(located), WORKER, 1)
    with pytest.raises(AnchorsForged, match="which the signers file does not trust"):
        load_anchors(by_worker, RING, SIGNERS)
    signed = dump_anchors(anchored(located), DPO, 1)  # dated NOW
    revoked = SIGNERS.revoked(DPO.key_id, NOW)
    with pytest.raises(AnchorsForged, match=r"revoked at .* and dated after that"):
        load_anchors(signed, RING, revoked)
    # A key revoked after the file's date (its owner left): its date is the signer's
    # word, so the file is taken only when asked (its storage dates it).
    later = SIGNERS.revoked(DPO.key_id, NOW + timedelta(days=30))
    with pytest.raises(AnchorsUntrusted, match="--accept-revoked-signer"):
        load_anchors(signed, RING, later)
    kept = load_anchors(signed, RING, later, accept_revoked=True)
    assert kept.signed_by is not None
    assert "revoked at" in kept.signed_by
    assert not kept.legacy


Edit = Callable[[dict[str, Any]], None]


def _set_head_hash(doc: dict[str, Any]) -> None:
    doc["chains"]["req-1"]["hash"] = "f" * 64


def _set_head_seq(doc: dict[str, Any]) -> None:
    doc["chains"]["req-1"]["seq"] = 2


def _drop_chain(doc: dict[str, Any]) -> None:
    del doc["chains"]["req-2"]


def _add_chain(doc: dict[str, Any]) -> None:
    doc["chains"]["req-9"] = {"seq": 1, "hash": "0" * 64}


def _set_offset(doc: dict[str, Any]) -> None:
    doc["offsets"]["0"] = 1


def _set_time(doc: dict[str, Any]) -> None:
    doc["created_at"] = "2020-01-01T00:00:00Z"


def _break_shape(doc: dict[str, Any]) -> None:
    doc["chains"]["req-1"]["seq"] = "three"


def _drop_signature(doc: dict[str, Any]) -> None:
    del doc["signature"]


def _other_alg(doc: dict[str, Any]) -> None:
    doc["alg"] = "none"


def _other_version(doc: dict[str, Any]) -> None:
    doc["key_version"] = 7


def _other_signer(doc: dict[str, Any]) -> None:
    doc["signer"] = WORKER.key_id


def _not_base64(doc: dict[str, Any]) -> None:
    doc["signature"] = "!" * 88


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_head_hash, "fails its signature check"),
        (_set_head_seq, "fails its signature check"),
        (_drop_chain, "fails its signature check"),
        (_add_chain, "fails its signature check"),
        (_set_offset, "fails its signature check"),
        (_set_time, "fails its signature check"),
        (_break_shape, "fails its signature check"),
        (_drop_signature, "carries no signature"),
        (_other_alg, "not signed with Ed25519"),
        (_other_version, "fails its signature check"),
        (_other_signer, "which the signers file does not trust"),
        (_not_base64, "fails its signature check"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_tampered_anchors_file_fails_its_signature_check(edit: Edit, message: str) -> None:
    _, located = topic()
    document = json.loads(dump_anchors(anchored(located), DPO, 1))
    edit(document)
    with pytest.raises(AnchorsForged, match=message):
        load_anchors(json.dumps(document), RING, SIGNERS)


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[1, 2]", '{"format": "something/1"}', '{"format": NaN}'],
    ids=["empty", "text", "list", "other-format", "nan"],
)
def test_what_is_not_an_anchors_file_is_bad_input(text: str) -> None:
    with pytest.raises(AnchorsInvalid, match="not an anchors file"):
        load_anchors(text, RING, SIGNERS)


def test_a_chain_rewritten_with_plain_hashes_passes_the_walk_but_not_the_anchors() -> None:
    """The issue's case: the topic deleted and re-produced with the chain edited and
    re-hashed as legacy SHA-256 records. The walk accepts it (legacy); anchors do not."""
    one, located = topic()
    anchors = anchored(located)
    forged = rehash(one, key_version=0, change={"after": "completed"})
    rewritten = [entry for entry in located if entry[2].chain != "req-1"] + place(0, forged, 5)
    walk = verify_log(partitions(rewritten), RING)
    assert walk.ok
    assert walk.legacy == 5
    breaks = check_anchors(rewritten, anchors)
    assert [(b.chain, b.seq, b.problem) for b in breaks] == [
        ("req-1", 3, "anchor_mismatch"),
        ("req-1", 1, "unkeyed_after_anchor"),
        ("req-1", 2, "unkeyed_after_anchor"),
        ("req-1", 3, "unkeyed_after_anchor"),
    ]
    assert breaks[0].audit_id == forged[-1].audit_id


def _deleted(_one: list[AuditEvent], rest: list[Located]) -> list[Located]:
    return rest


def _truncated(one: list[AuditEvent], rest: list[Located]) -> list[Located]:
    return rest + place(0, one[:2], 2)


def _recreated_same_offsets(one: list[AuditEvent], rest: list[Located]) -> list[Located]:
    return rest + place(0, rehash(one, key_version=0, change={"reason": "edited"}), 2)


def _rewritten_with_the_key(one: list[AuditEvent], rest: list[Located]) -> list[Located]:
    return rest + place(0, rehash(one, key_version=1, key=KEY, change={"actor": "x"}), 2)


def _inserted_chain(one: list[AuditEvent], rest: list[Located]) -> list[Located]:
    inserted = build(AuditChainer(key=KEY), "req-new", 1)
    return rest + place(0, one, 2) + place(1, inserted, 1)


def _extended_into_the_past(one: list[AuditEvent], rest: list[Located]) -> list[Located]:
    more = build(AuditChainer({"req-1": [3, one[-1].hash]}, key=KEY), "req-1", 1, start=3)
    return rest + place(0, [*one[:2], one[2], *more], 1)


@pytest.mark.parametrize(
    ("rewrite", "found"),
    [
        (_deleted, [("req-1", 3, "anchor_missing")]),
        (_truncated, [("req-1", 3, "anchor_missing")]),
        (_recreated_same_offsets, [("req-1", 3, "anchor_mismatch")]),
        (_rewritten_with_the_key, [("req-1", 3, "anchor_mismatch")]),
        (_inserted_chain, [("req-new", 1, "unanchored")]),
        (_extended_into_the_past, [("req-1", 4, "unanchored")]),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_rewritten_history_is_caught_by_the_anchors(
    rewrite: Callable[[list[AuditEvent], list[Located]], list[Located]],
    found: list[tuple[str, int, str]],
) -> None:
    one, located = topic()
    anchors = anchored(located)
    rest = [entry for entry in located if entry[2].chain != "req-1"]
    breaks = check_anchors(rewrite(one, rest), anchors)
    assert [(b.chain, b.seq, b.problem) for b in breaks] == found
    assert all(b.detail for b in breaks)


def test_history_gone_names_no_record() -> None:
    _, located = topic()
    breaks = check_anchors([], anchored(located))
    assert [(b.chain, b.problem, b.audit_id) for b in breaks] == [
        ("req-1", "anchor_missing", ""),
        ("req-2", "anchor_missing", ""),
        ("req-old", "anchor_missing", ""),
    ]


def test_chains_growing_after_the_anchor_are_fine() -> None:
    one, located = topic()
    anchors = anchored(located)
    more = build(AuditChainer({"req-1": [3, one[-1].hash]}, key=KEY), "req-1", 2, start=3)
    new_chain = build(AuditChainer(key=KEY), "req-3", 1)
    grown = located + place(0, more, 5) + place(3, new_chain)
    assert verify_log(partitions(grown), RING).ok
    assert check_anchors(grown, anchors) == []


def test_unkeyed_records_written_after_the_anchor_are_forged() -> None:
    """The worker wrote keyed records before anchors existed: anything unkeyed later,
    even a whole new chain the walk accepts as legacy, came from someone else."""
    _, located = topic()
    anchors = anchored(located)
    injected = legacy_chain("req-fake", 2)
    grown = located + place(2, injected)
    assert verify_log(partitions(grown), RING).ok
    breaks = check_anchors(grown, anchors)
    assert [(b.chain, b.problem) for b in breaks] == [("req-fake", "unkeyed_after_anchor")] * 2
    assert "partition 2 offset 0" in breaks[0].detail


def test_head_beside_a_forged_copy_is_left_to_the_walk() -> None:
    one, located = topic()
    anchors = anchored(located)
    copy = one[-1].model_copy(update={"reason": "edited"})
    with_copy = [*located, (0, 5, copy)]
    assert check_anchors(with_copy, anchors) == []
    walk = verify_log(partitions(with_copy), RING)
    assert walk.first_break is not None
    assert walk.first_break.problem == "hash_mismatch"


def test_anchors_and_checks_follow_the_chain_prefix() -> None:
    _, located = topic()
    anchors = anchored(located, prefix="req-1")
    assert set(anchors.chains) == {"req-1"}
    assert anchors.offsets == {0: 5, 1: 2}  # the whole log was read
    assert check_anchors(located, anchors) == []  # other chains are not "unanchored"
    rest = [entry for entry in located if entry[2].chain != "req-1"]
    assert check_anchors(rest, anchors, chain_prefix="req-2") == []
    assert [b.problem for b in check_anchors(rest, anchors, chain_prefix="req-1")] == [
        "anchor_missing"
    ]


def test_a_head_gone_with_the_retention_is_aged_out_not_deleted() -> None:
    """privacy.audit keeps ten years: a head older than that is gone by retention, and
    anchors kept for longer (the notice's retention of some records is longer) must not
    fail verify for it. A head younger than the retention that is gone before its
    partition's log start was deleted (DeleteRecords, a lowered retention): a break."""
    chainer = AuditChainer(key=KEY)
    old, kept = build(chainer, "req-old", 2), build(chainer, "req-kept", 2)
    ten_years = timedelta(days=3660)
    long_ago = int((NOW - ten_years - timedelta(days=1)).timestamp() * 1000)
    builder = AnchorBuilder()
    for offset, record in enumerate(old + kept):
        builder.add(0, offset, record, long_ago if record.chain == "req-old" else stamp(offset))
    anchors = builder.build(topic="privacy.audit", created_at=NOW)
    assert (anchors.chains["req-old"].partition, anchors.chains["req-old"].offset) == (0, 1)
    check = AnchorCheck(anchors)
    for offset, record in enumerate(old + kept):
        if offset >= 3:  # the partition's front (offsets 0-2) is gone
            check.add(0, offset, record)
    breaks, aged_out = check.breaks({0: 3}, now=NOW, retention=ten_years)
    assert aged_out == ["req-old"]
    assert [(b.chain, b.problem) for b in breaks] == []
    too_early, _ = check.breaks({0: 3}, now=NOW, retention=ten_years * 2)
    assert [(b.chain, b.problem) for b in too_early] == [("req-old", "anchor_missing")]
    assert "before its retention ended" in too_early[0].detail
    unknown, _ = check.breaks(None, now=NOW, retention=ten_years)
    assert [b.problem for b in unknown] == ["anchor_missing"]


def test_anchors_signed_with_a_retired_key_over_newer_records_are_refused() -> None:
    """A retired audit key is kept to verify old records and old anchors; a file it signed
    that covers records of a newer key was signed after the rotation (review, session
    25: `load_anchors` accepted it, so a leaked retired key could vouch for a rewrite)."""
    chainer = AuditChainer(key=KEY)
    before = build(chainer, "req-1", 1)
    after = build(AuditChainer(key=OTHER_KEY, key_version=2), "req-2", 1)
    ring = {1: KEY, 2: OTHER_KEY}
    located = place(0, before + after)
    made_after = load_anchors(dump_anchors(anchored(located), DPO, 1), ring, SIGNERS)
    breaks = check_anchors(located, made_after)
    assert [(b.problem, b.chain) for b in breaks] == [("anchors_outdated_key", "req-2")]
    made_before = load_anchors(dump_anchors(anchored(located[:1]), DPO, 1), ring, SIGNERS)
    assert check_anchors(located, made_before) == []
    current = load_anchors(dump_anchors(anchored(located), DPO, 2), ring, SIGNERS)
    assert check_anchors(located, current) == []


def test_anchor_time_must_be_aware() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        build_anchors([], topic="privacy.audit", created_at=datetime(2026, 1, 1))


# --- the CLI: `privops audit anchor` and `verify --anchors`, on a log given to it ------------

runner = CliRunner()


@pytest.fixture
def starts() -> dict[int, int]:
    """Each partition's log start offset as the scan reports it (0: nothing aged out)."""
    return {}


@pytest.fixture
def on_topic(monkeypatch: pytest.MonkeyPatch, starts: dict[int, int]) -> list[Located]:
    """What `scan_audit` reads: a mutable list standing for privacy.audit, in log order
    per partition; each record's timestamp is its offset's minute after T0."""
    records: list[Located] = []

    def scan(visit: audit_cli.Visit) -> audit_cli.AuditScan:
        ends: dict[int, int] = {}
        for partition, offset, record in sorted(records, key=lambda e: (e[0], e[1])):
            visit(partition, offset, stamp(offset), record)
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        spans = [Span(p, starts.get(p, 0), end) for p, end in sorted(ends.items())]
        return audit_cli.AuditScan(spans=spans)

    monkeypatch.setattr(audit_cli, "scan_audit", scan)
    monkeypatch.setattr(audit_cli, "audit_keyring", lambda: (RING, 1))
    return records


def stamp(offset: int) -> int:
    return int((T0 + timedelta(minutes=offset)).timestamp() * 1000)


def session_dpo() -> SigningKey:
    """The CLI's DPO key in this test session's home (dev: made and trusted on first use)."""
    return signing_key(get_settings(), "dpo", say=lambda _: None, create=True)


def session_signers() -> Signers:
    return read_signers(get_settings().signers_file)


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(audit_cli.app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


def test_cli_anchor_then_verify_round_trip(on_topic: list[Located], tmp_path: Path) -> None:
    _, located = topic()
    on_topic.extend(located)
    out = tmp_path / "anchors.json"
    code, text = cli("anchor", "--out", str(out))
    assert code == 0, text
    assert "anchored 3 chain head(s)" in text
    made = load_anchors(out.read_text(), RING, session_signers())
    assert made.chains.keys() == {"req-1", "req-2", "req-old"}
    assert made.signed_by == f"dpo (key {session_dpo().key_id})"
    code, text = cli("verify", "--anchors", str(out))
    assert code == 0, text
    assert "against 3 chain head(s) anchored" in text
    assert "OK" in text
    code, text = cli("verify", "--anchors", str(out), "--json")
    report = json.loads(text)
    assert report["ok"] is True
    assert report["anchors"]["chains"] == 3
    assert report["legacy"] == {"records": 2, "chains": ["req-old"]}


def test_cli_verify_with_anchors_catches_a_plain_rehashed_rewrite(
    on_topic: list[Located], tmp_path: Path
) -> None:
    one, located = topic()
    on_topic.extend(located)
    out = tmp_path / "anchors.json"
    assert cli("anchor", "--out", str(out))[0] == 0
    forged = rehash(one, key_version=0, change={"after": "completed"})
    on_topic[:] = [e for e in located if e[2].chain != "req-1"] + place(0, forged, 5)
    code, text = cli("verify")
    assert code == 0, text  # plain re-hashing passes: legacy records, reported as such
    assert "5 unkeyed record(s) in 2 chain(s)" in text
    code, text = cli("verify", "--anchors", str(out))
    assert code == 1, text
    assert "BROKEN chain req-1 at seq 3" in text
    assert "anchor_mismatch" in text
    assert cli("verify", "--require-keyed")[0] == 1


def test_cli_refuses_to_anchor_a_broken_log(on_topic: list[Located], tmp_path: Path) -> None:
    one, located = topic()
    on_topic.extend([*located, (0, 5, one[1].model_copy(update={"reason": "edited"}))])
    out = tmp_path / "anchors.json"
    code, text = cli("anchor", "--out", str(out))
    assert code == 1
    assert "not anchoring a broken log" in text
    assert not out.exists()


def test_cli_never_overwrites_an_anchors_file(on_topic: list[Located], tmp_path: Path) -> None:
    on_topic.extend(topic()[1])
    out = tmp_path / "anchors.json"
    out.write_text("earlier evidence")
    code, text = cli("anchor", "--out", str(out))
    assert code == 2
    assert "already exists" in text
    assert out.read_text() == "earlier evidence"


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (None, 2, "cannot read the anchors file"),
        ("not json", 2, "not an anchors file"),
        ("tampered", 1, "fails its signature check"),
    ],
    ids=["missing", "not-anchors", "tampered"],
)
def test_cli_verify_rejects_a_bad_anchors_file(
    on_topic: list[Located], tmp_path: Path, content: str | None, code: int, message: str
) -> None:
    on_topic.extend(topic()[1])
    path = tmp_path / "anchors.json"
    if content == "tampered":
        document = json.loads(dump_anchors(anchored(on_topic), session_dpo(), 1))
        document["chains"]["req-1"]["seq"] = 1
        path.write_text(json.dumps(document))
    elif content is not None:
        path.write_text(content)
    got, text = cli("verify", "--anchors", str(path))
    assert (got, message in text) == (code, True), text


def test_cli_keyring_comes_from_the_audit_key_setting() -> None:
    ring, version = audit_cli.audit_keyring()
    assert version == 1
    assert ring == {1: get_settings().audit_key.encode()}


def _signed(anchors: Anchors, **changes: Any) -> str:
    return dump_anchors(anchors.model_copy(update=changes), session_dpo(), 1)


@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        ({"topic": "privacy.audit-staging"}, 2, "anchors the topic 'privacy.audit-staging'"),
        ({"created_at": datetime.now(UTC) + timedelta(days=30)}, 1, "in the future"),
    ],
    ids=["other-topic", "future"],
)
def test_cli_verify_refuses_anchors_of_another_topic_or_from_the_future(
    on_topic: list[Located], tmp_path: Path, changes: dict[str, Any], code: int, message: str
) -> None:
    """Both were signed and read without a look (review, session 25): a file anchoring
    another topic checked nothing against this one, and one dated ahead proves nothing."""
    on_topic.extend(topic()[1])
    path = tmp_path / "anchors.json"
    path.write_text(_signed(anchored(on_topic), **changes))
    got, text = cli("verify", "--anchors", str(path))
    assert (got, message in text) == (code, True), text


def test_cli_verify_says_what_retention_removed(
    on_topic: list[Located], starts: dict[int, int], tmp_path: Path
) -> None:
    """A partition whose front aged out verifies, and the report says so."""
    chainer = AuditChainer(key=KEY)
    on_topic.extend(place(0, build(chainer, "req-1", 5)[2:], 7))
    starts[0] = 7
    code, text = cli("verify")
    assert code == 0, text
    assert "partition 0 starts at offset 7" in text
    assert "1 chain(s) began before their partition's start" in text
    report = json.loads(cli("verify", "--json")[1])
    assert report["retention"]["partition_starts"] == {"0": 7}
    assert report["retention"]["truncated_chains"] == ["req-1"]
    starts[0] = 0
    code, text = cli("verify")
    assert code == 1, text
    assert "missing_link" in text


def test_cli_verify_of_an_empty_topic_with_a_chain_prefix_is_ok(on_topic: list[Located]) -> None:
    """A deployment that has written nothing yet: every --chain matches nothing, and that
    was exit 2 "no chain starts with it" (session 25's note). A typo on a topic with
    records is still exit 2."""
    code, text = cli("verify", "--chain", "privops/")
    assert code == 0, text
    assert "checked 0 audit record(s)" in text
    on_topic.extend(topic()[1])
    assert cli("verify", "--chain", "privops-typo/")[0] == 2


def test_cli_verify_takes_an_old_anchors_file_only_when_asked(
    on_topic: list[Located], tmp_path: Path
) -> None:
    """A file signed with the audit key (before 0.33) could have been made by any
    worker; it is checked only with --accept-legacy-anchors, and said to prove less."""
    on_topic.extend(topic()[1])
    path = tmp_path / "old-anchors.json"
    path.write_text(legacy_file(anchored(on_topic), KEY, 1))
    code, text = cli("verify", "--anchors", str(path))
    assert code == 2, text  # a question of trust, not a break in the chains
    assert "--accept-legacy-anchors" in text
    code, text = cli("verify", "--anchors", str(path), "--accept-legacy-anchors")
    assert code == 0, text
    assert "signed with the audit key, which the workers hold too" in text
    code, text = cli("verify", "--anchors", str(path), "--accept-legacy-anchors", "--json")
    assert json.loads(text)["anchors"]["legacy_signature"] is True


def test_cli_anchors_need_the_signers_file_and_a_trusted_key(
    on_topic: list[Located], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing signers file was reported as forgery (exit 1), and `anchor` signed with
    a key the workers do not trust, writing a file that could never verify (review)."""
    on_topic.extend(topic()[1])
    made = tmp_path / "anchors.json"
    code, text = cli("anchor", "--out", str(made))
    assert code == 0, text
    monkeypatch.setenv("PRIVOPS_SIGNERS_FILE", str(tmp_path / "nowhere.json"))
    get_settings.cache_clear()
    try:
        code, text = cli("verify", "--anchors", str(made))
        assert code == 2, text
        assert "no signers file at" in text
        assert "nowhere.json" in text
        monkeypatch.setenv("PRIVOPS_SIGNERS_FILE", str(tmp_path / "other-signers.json"))
        (tmp_path / "other-signers.json").write_text("{}")
        get_settings.cache_clear()
        code, text = cli("anchor", "--out", str(tmp_path / "again.json"))
        assert code == 2, text
        assert "is not in the signers file" in text
        assert not (tmp_path / "again.json").exists()
    finally:
        monkeypatch.delenv("PRIVOPS_SIGNERS_FILE")
        get_settings.cache_clear()
