"""The tamper-evident audit trail: records, their hash chain, and its verification.

Chains: one chain per chain key, and the chain key is the Kafka key of `privacy.audit`:
the request id when the event concerns a request, else the pseudonymous subject ref,
else `SYSTEM_CHAIN` (e.g. a dead letter with no usable key). Keying the topic by the
chain key puts a whole chain in one partition, so Kafka keeps its order, and chains on
different partitions never need a global order. Each record carries its chain, a
sequence number (1, 2, ... per chain) and the previous record's hash (`GENESIS` for the
first); its hash is an HMAC-SHA256, under the audit key, of the canonical JSON of every
other field, so someone who can write `privacy.audit` but does not hold the key cannot
make a chain that verifies. The key is versioned (`key_version` on the record, a keyring
of {version: key} to verify) so it can rotate without losing old chains. Version 0 is
the legacy unkeyed SHA-256 of records written before keyed hashes: still accepted (and
counted, so a report can say so), never written, refused after a keyed record of its
chain (a downgrade), and refused everywhere when verifying with `allow_legacy=False`.

`AuditChainer` holds the head (seq, hash) of each chain as plain data, so the worker
keeps it in a table and a restart continues the chains. `verify` reads records in log
order and reports every break, the first one first; `verify_log` walks a whole topic,
partition by partition. Signed chain heads kept outside Kafka (privops.core.audit_anchor)
catch what a key cannot: a topic deleted and re-produced.

Nothing here reads the clock or does I/O. Audit records never hold raw PII: text the
worker writes is cleaned of anything shaped like an email address or a phone number
first (``pii.redact``), and a record whose fields hold contact details by the rule
records have always been written under (``pii.recorded_as_contact``) is refused, on
writing and on reading (without echoing them).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Final, Literal

from privops.core.errors import ConfigError, DomainError
from privops.core.facts import MAX_CLOCK_SKEW
from privops.core.keyed_hash import hmac_sha256
from privops.core.pii import looks_like_pii, recorded_as_contact, redact
from privops.core.records import AuditEvent

GENESIS: Final = "0" * 64
SYSTEM_CHAIN: Final = "privops"
_AUDIT_NAMESPACE: Final = uuid.UUID("6f1c7a52-3d0e-5b8e-9a51-0c4a1e2f7d10")
_NAMESPACE_BYTES: Final = _AUDIT_NAMESPACE.bytes
# json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# allow_nan=False) builds this same encoder on every call.
_CANONICAL: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)

LEGACY_KEY_VERSION: Final = 0
CURRENT_KEY_VERSION: Final = 1

BreakProblem = Literal[
    "hash_mismatch",
    "missing_link",
    "seq_gap",
    "duplicate",
    "unknown_key_version",
    "unkeyed",
    "downgraded",
    "split_chain",
    "anchor_missing",
    "anchor_mismatch",
    "unanchored",
    "unkeyed_after_anchor",
    "anchors_outdated_key",
]
ChainState = dict[str, tuple[int, str]]
Keyring = Mapping[int, bytes]
"""Audit keys by version: every key whose records are to verify."""

# A record that fails one of these cannot be trusted for its place in the chain.
_UNTRUSTED: Final[frozenset[BreakProblem]] = frozenset(
    {"hash_mismatch", "unknown_key_version", "unkeyed", "downgraded"}
)


def chain_key(request_id: str | None, subject_ref: str | None, namespace: str | None = None) -> str:
    """The chain (and `privacy.audit` message key) a record belongs to.

    ``namespace`` (the worker's app id) keeps chains of different privops deployments
    that share one audit topic (a demo run, a test worker) apart.
    """
    key = request_id or subject_ref or SYSTEM_CHAIN
    return f"{namespace}/{key}" if namespace else key


INPUT_TIME_WINDOW: Final = timedelta(days=1)
"""How old an input's timestamp may be and still date its audit steps: longer than a
worker is down before its input is replayed, shorter than a backdating would matter."""
INPUT_TIME_AHEAD: Final = MAX_CLOCK_SKEW
"""How far ahead of the clock an input's timestamp is still believed (a clock's skew)."""


def step_time(stamp: object, now: datetime) -> datetime:
    """When an audit step caused by an input happened: when the input was produced (its
    Kafka record's timestamp, seconds), if that is plausible, else ``now``.

    An input replayed after a crash (its flush's outputs were out, its table writes were
    not) makes the same steps again at the same chain positions, and only with the same
    time are they the same records, which ``audit verify`` takes as redeliveries; dated
    anew they fork the chain, which verify reports as tampering (review, session 25; a
    dead letter's step was still dated by the clock, review, session 35). The producer
    sets that timestamp, so one more than a clock's skew ahead, or older than a replay
    could be, is not believed: a system must not backdate privops' own audit."""
    if not isinstance(stamp, int | float) or isinstance(stamp, bool) or not stamp > 0:
        return now
    try:
        produced = datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):  # a hostile timestamp past year 9999
        return now
    if now - INPUT_TIME_WINDOW <= produced <= now + INPUT_TIME_AHEAD:
        return produced
    return now


def derive_audit_id(*parts: str) -> str:
    """A stable audit id from what caused the event (e.g. event id and action).

    Re-processing the same input after a crash then yields the same id, so the
    re-emitted record is recognisable as the same event. The text of
    ``uuid.uuid5(_AUDIT_NAMESPACE, ...)``, formatted without building a UUID object
    (one per audit record on the hot path).
    """
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode(), usedforsecurity=False).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest[:16].hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def keyring(
    current: str | bytes,
    version: int = CURRENT_KEY_VERSION,
    previous: Mapping[int, str | bytes] | None = None,
) -> dict[int, bytes]:
    """The keyring from the current audit key and the keys it replaced.

    Keeping the replaced keys lets chains written before a rotation still verify.
    """
    ring: dict[int, bytes] = {}
    for number, key in [*(previous or {}).items(), (version, current)]:
        if number <= LEGACY_KEY_VERSION:
            raise ConfigError(f"audit key versions start at 1 (got {number})")
        if number in ring:
            raise ConfigError(f"audit key version {number} is given twice")
        secret = key.encode() if isinstance(key, str) else key
        if not secret:
            raise ConfigError(f"audit key version {number} is empty")
        ring[number] = secret
    return ring


def hashed_fields(record: AuditEvent) -> dict[str, object]:
    """Every field the hash covers: all but the hash itself.

    A legacy record's hash was made before `key_version` existed, so it is left out.
    """
    if record.key_version == LEGACY_KEY_VERSION:
        return record.model_dump(exclude={"hash", "key_version"})
    return record.model_dump(exclude={"hash"})


def expected_hash(record: AuditEvent, ring: Keyring) -> str:
    """The hash the record should carry; DomainError if its key version is not in `ring`."""
    if record.key_version == LEGACY_KEY_VERSION:
        key = None
    elif (key := ring.get(record.key_version)) is None:
        raise DomainError(f"audit key version {record.key_version} is not in the keyring")
    return compute_hash(record.prev_hash, hashed_fields(record), key=key)


def _canonical_value(value: object) -> object:
    if isinstance(value, datetime):  # first: the one non-plain value of every record
        if value.tzinfo is None:
            raise DomainError("audit timestamps must be timezone-aware")
        return utc_text(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    raise DomainError(f"audit field value of type {type(value).__name__} is not hashable here")


def utc_text(value: datetime) -> str:
    """An aware time as the hash covers it: UTC, microseconds, "Z" (strftime's text)."""
    text = _UTC_TEXTS.get(value)
    if text is None:
        utc = value.astimezone(UTC)
        if utc.year < 1000:  # strftime does not pad such years; isoformat does
            text = utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        else:
            text = utc.isoformat(timespec="microseconds")[:26] + "Z"
        if len(_UTC_TEXTS) >= _UTC_TEXTS_KEPT:
            _UTC_TEXTS.clear()
        _UTC_TEXTS[value] = text
    return text


# A workflow step's records share one time, and an event's changes its time: the text
# of each, remembered (bounded). Equal aware times are one instant, so one UTC text.
_UTC_TEXTS: dict[datetime, str] = {}
_UTC_TEXTS_KEPT: Final = 4096


def canonical_json(payload: object) -> bytes:
    """Sorted-key compact UTF-8 JSON: the same bytes for the same data, whoever wrote it."""
    if type(payload) is dict:
        text = _flat_json(payload)
        if text is not None:
            return text.encode("utf-8")
    return _CANONICAL.encode(payload).encode("utf-8")


# The sorted order of each key set seen (an audit record has one or two), each key with
# its JSON text and the colon: bounded, as key sets come from code, not input.
_ORDERS: dict[tuple[object, ...], tuple[tuple[str, str], ...]] = {}
_ORDERS_KEPT: Final = 256


def _flat_json(payload: dict[object, object]) -> str | None:
    """``_CANONICAL``'s text for a dict of text keys and text, int, bool or None values,
    joined here with the encoder's own string escaping (what the hash covers, ~4x
    cheaper than the encoder, which builds itself anew on each call); else None."""
    keys = tuple(payload)
    order = _ORDERS.get(keys)
    if order is None:
        names = [key for key in keys if type(key) is str]
        if len(names) != len(keys):
            return None
        order = tuple((name, encode_basestring(name) + ":") for name in sorted(names))
        if len(_ORDERS) < _ORDERS_KEPT:
            _ORDERS[keys] = order
    parts = []
    for key, prefix in order:
        value = payload[key]
        if type(value) is str:
            parts.append(prefix + encode_basestring(value))
        elif value is None:
            parts.append(prefix + "null")
        elif value is True:
            parts.append(prefix + "true")
        elif value is False:
            parts.append(prefix + "false")
        elif type(value) is int:
            parts.append(prefix + int.__repr__(value))
        else:
            return None
    return "{" + ",".join(parts) + "}"


_PLAIN: Final = frozenset({str, int, bool, type(None)})


def canonical_bytes(fields: Mapping[str, object]) -> bytes:
    """Deterministic bytes for hashing: sorted-key compact JSON, UTC microsecond times."""
    payload = dict(fields)
    for key, value in fields.items():
        if type(value) not in _PLAIN:  # one call per time, not per field (hot path)
            payload[key] = _canonical_value(value)
    return canonical_json(payload)


def compute_hash(prev_hash: str, fields: Mapping[str, object], *, key: bytes | None) -> str:
    """HMAC-SHA256 hex under `key` over the fields with `prev_hash` (any `hash` is ignored).

    ``key=None`` is the legacy unkeyed SHA-256, kept to verify records written before
    keyed hashes; it is explicit so nothing falls back to it by accident.
    """
    payload = {name: value for name, value in fields.items() if name != "hash"}
    payload["prev_hash"] = prev_hash
    data = canonical_bytes(payload)
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac_sha256(key, data).hex()


class AuditChainer:
    """Builds chained records; its state is plain data the worker persists in a table."""

    def __init__(
        self,
        state: Mapping[str, Sequence[object]] | None = None,
        *,
        key: bytes,
        key_version: int = CURRENT_KEY_VERSION,
    ) -> None:
        if key_version <= LEGACY_KEY_VERSION or not key:
            raise ConfigError("audit records are written with a key of version 1 or more")
        self._ring = {key_version: key}
        self._key_version = key_version
        self._heads: ChainState = {}
        for chain, head in (state or {}).items():
            seq, last_hash = head
            if not isinstance(seq, int) or not isinstance(last_hash, str):
                raise DomainError(f"bad audit chain state for chain {chain!r}")
            self._heads[chain] = (seq, last_hash)

    def head(self, chain: str) -> tuple[int, str]:
        """(last seq, last hash) of a chain; (0, GENESIS) before its first record."""
        return self._heads.get(chain, (0, GENESIS))

    def state(self) -> ChainState:
        return dict(self._heads)

    def observe(self, record: AuditEvent) -> None:
        """Advance a chain from a record read back (rebuilding state from the topic)."""
        if record.seq > self.head(record.chain)[0]:
            self._heads[record.chain] = (record.seq, record.hash)

    def next(
        self,
        *,
        actor: str,
        action: str,
        occurred_at: datetime,
        request_id: str | None = None,
        subject_ref: str | None = None,
        before: str | None = None,
        after: str | None = None,
        reason: str | None = None,
        audit_id: str | None = None,
        namespace: str | None = None,
        chain: str | None = None,
    ) -> AuditEvent:
        """The next record of its chain; the chain head moves only if the record is valid.

        Without `audit_id` a random one is used; prefer `derive_audit_id(...)`.
        """
        chain = chain or chain_key(request_id, subject_ref, namespace)
        fields = next_fields(
            self.head(chain),
            key=self._ring[self._key_version],
            key_version=self._key_version,
            chain=chain,
            audit_id=audit_id or str(uuid.uuid4()),
            actor=actor,
            action=action,
            occurred_at=occurred_at,
            request_id=request_id,
            subject_ref=subject_ref,
            before=before,
            after=after,
            reason=reason,
        )
        record = AuditEvent.model_validate(fields)
        self._heads[chain] = (record.seq, record.hash)
        return record


class AuditFieldError(ValueError):
    """A value an audit record may not hold. The message names the field, never the value."""


_REQUIRED: Final = ("audit_id", "chain", "actor", "action")
_OPTIONAL: Final = ("request_id", "subject_ref", "before", "after", "reason")


@lru_cache(maxsize=16_384)
def _clean_text(text: str) -> bool:
    """Whether ``text`` holds nothing shaped like raw contact details, by the audit's own
    rule (``pii.recorded_as_contact``; remembered: most audit texts repeat: actors,
    actions, statuses, a subject's chain)."""
    return not recorded_as_contact(text)


def _check(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise AuditFieldError(f"{name} must be text")
    if not _clean_text(value):
        raise AuditFieldError(f"{name} looks like raw PII (email or phone)")


def next_fields(
    head: tuple[int, str],
    *,
    key: bytes,
    key_version: int,
    chain: str,
    audit_id: str,
    actor: str,
    action: str,
    occurred_at: datetime,
    request_id: str | None = None,
    subject_ref: str | None = None,
    before: str | None = None,
    after: str | None = None,
    reason: str | None = None,
) -> dict[str, object]:
    """The record after ``head`` (seq, hash) of ``chain``, as its plain field dict (the
    Avro datum of `AuditEvent`): checked as the model checks it (non-empty ids, no raw
    PII in any text, an aware time stored in UTC), hashed, and no model built.

    The worker appends one record per consent change; `AuditChainer.next` wraps the same
    fields in the model, so both write the same bytes (a unit test holds them equal).
    Raises `AuditFieldError` (a ValueError) for a value the record may not hold.
    """
    if key_version <= LEGACY_KEY_VERSION or not key:
        raise ConfigError("audit records are written with a key of version 1 or more")
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        raise AuditFieldError("occurred_at must be timezone-aware")
    seq, prev_hash = head
    fields: dict[str, object] = {
        "audit_id": audit_id,
        "chain": chain,
        "seq": seq + 1,
        "request_id": request_id,
        "subject_ref": subject_ref,
        "actor": actor,
        "action": action,
        "before": before,
        "after": after,
        "reason": reason,
        "occurred_at": occurred_at.astimezone(UTC),
        "prev_hash": prev_hash,
        "key_version": key_version,
    }
    for name in _REQUIRED:
        _check(name, fields[name])
        if not fields[name]:
            raise AuditFieldError(f"{name} is empty")
    for name in _OPTIONAL:
        if fields[name] is not None:
            _check(name, fields[name])
    fields["hash"] = compute_hash(prev_hash, fields, key=key)
    return fields


@dataclass(frozen=True, slots=True)
class Break:
    """Where a chain is broken. `audit_id` names the record at which it shows ("" when
    what is wrong is a record that is no longer there)."""

    audit_id: str
    chain: str
    seq: int
    problem: BreakProblem
    detail: str = ""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What a walk found. Legacy records verified only as unkeyed SHA-256, which anyone
    who can write the topic can forge, so they are counted for the report."""

    checked: int
    breaks: tuple[Break, ...] = ()
    legacy: int = 0
    legacy_chains: tuple[str, ...] = ()
    truncated: tuple[str, ...] = ()
    """Chains whose first records are gone with the front of their partition (retention):
    walked from their first record present, whose hash is checked but not its link."""

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def first_break(self) -> Break | None:
        return self.breaks[0] if self.breaks else None

    def with_breaks(self, more: Iterable[Break]) -> VerifyResult:
        return replace(self, breaks=(*self.breaks, *more))


RECENT_RECORDS: Final = 100_000
"""How many of a partition's latest records a walk remembers (chain, seq and hash) to
tell a byte-identical redelivery from a rewritten seq. Redeliveries (a producer's
retry, a crash replay of what a worker had not committed) follow their first copy
closely; one further back than this is reported as a duplicate it could not compare."""


@dataclass(slots=True)
class _Walk:
    expected_seq: int = 1
    last_hash: str = GENESIS
    keyed: bool = False


def _integrity_problem(
    record: AuditEvent, walk: _Walk, ring: Keyring, allow_legacy: bool, newest: int
) -> tuple[BreakProblem, str] | None:
    """Whether the record is what its key says it is, before looking at its place.

    Keys only move forward in a partition's log (``newest``: the newest key version of
    its trusted records so far; every worker rotates at once, README): an older key
    version after a newer one, or an unkeyed record after a keyed one, is a downgrade.
    A key is retired because it may have leaked; before, a retired key (kept to verify
    old records) could still write new records that verified, and a writer with no key
    at all could add unkeyed chains that the next anchor took in (review, session 25)."""
    if record.key_version == LEGACY_KEY_VERSION:
        if not allow_legacy:
            return "unkeyed", "unkeyed (legacy SHA-256) record where keyed hashes are required"
        if walk.keyed:
            return "downgraded", "unkeyed record after keyed records of the same chain"
        if newest != LEGACY_KEY_VERSION:
            return "downgraded", "unkeyed record after keyed records of the same partition"
    elif record.key_version not in ring:
        return "unknown_key_version", (
            f"hash made with audit key version {record.key_version}, which is not in the keyring"
        )
    elif record.key_version < newest:
        return "downgraded", (
            f"made with audit key version {record.key_version} after version {newest} "
            "records of the same partition (a retired key)"
        )
    if not hmac.compare_digest(expected_hash(record, ring), record.hash):
        return "hash_mismatch", "fields do not match the record's hash"
    return None


def _link_problem(record: AuditEvent, walk: _Walk) -> tuple[BreakProblem, str] | None:
    if record.prev_hash != walk.last_hash:
        return "missing_link", f"prev_hash does not match record seq {walk.expected_seq - 1}"
    if record.seq != walk.expected_seq:
        return "seq_gap", f"expected seq {walk.expected_seq}"
    return None


class LogVerifier:
    """`verify_log` a record at a time, in memory per chain rather than per record.

    Feed each partition's records in log order, one partition after another
    (`add(partition, record)`), then take the `result()`. What it keeps: each chain's
    head on the partition being walked, each chain's home partition, the partition's
    last `RECENT_RECORDS` (chain, seq, hash), and the breaks. A ten-year topic of tens
    of millions of records verifies in the memory of its chains, not of its records.

    Problems, checked in this order for each record:
    - `unkeyed`, `downgraded`, `unknown_key_version`: the record is unkeyed where that is
      refused (everywhere without `allow_legacy`; after a keyed record of its chain or
      partition, a downgrade, always), or names a key version not in `ring`;
    - `hash_mismatch`: the record's hash is not the hash of its fields (a field was
      changed, or the hash was made without the key);
    - `duplicate`: a seq already seen on the chain, with different content (a re-produced,
      altered record). Byte-identical redeliveries are skipped when tolerated;
    - `missing_link`: prev_hash is not the previous record's hash (a record deleted or
      reordered before this one, or a record altered with its hash recomputed);
    - `seq_gap`: links correctly but skips sequence numbers;
    - `split_chain`: the chain also shows on another partition (a chain's records share
      one message key, so one partition: a copy elsewhere started again from scratch).
    After a break the walk re-anchors on the offending record, so one tampered record is
    reported once and later breaks are still found; `first_break` is exact, the breaks
    after it are best effort (a forged record can shift what follows it).

    Kafka deletes a partition's oldest records when the retention ends (ten years for
    privacy.audit), so a chain older than that starts mid-way. Given each partition's log
    start offset (`result(starts=...)`), a keyed chain whose first record present links
    to nothing, on a partition whose front is gone, is counted as `truncated` rather than
    broken; on a partition whose front is all there it is a `missing_link` as ever.
    Only a prefix of a partition can be removed, so a record missing from the middle of
    a chain is a break whatever the start.
    """

    def __init__(
        self,
        ring: Keyring,
        *,
        tolerate_exact_duplicates: bool = True,
        allow_legacy: bool = True,
        recent_records: int = RECENT_RECORDS,
    ) -> None:
        self._ring = ring
        self._tolerate = tolerate_exact_duplicates
        self._allow_legacy = allow_legacy
        self._recent_cap = recent_records
        self._partition: int | None = None
        self._done: set[int] = set()
        self._walks: dict[str, _Walk] = {}
        self._recent: dict[tuple[str, int], str] = {}
        self._newest = LEGACY_KEY_VERSION
        self._home: dict[str, int] = {}
        self._breaks: list[Break] = []
        self._split: list[Break] = []
        self._legacy_chains: dict[str, None] = {}
        self._starts_mid_way: list[tuple[int, int]] = []  # (index in _breaks, partition)
        self._checked = self._legacy = 0

    def _enter(self, partition: int) -> None:
        if partition in self._done:
            raise ValueError(f"partition {partition} was fed before: feed one after another")
        if self._partition is not None:
            self._done.add(self._partition)
        self._partition = partition
        self._walks.clear()
        self._recent.clear()
        self._newest = LEGACY_KEY_VERSION

    def add(self, partition: int, record: AuditEvent) -> None:
        if partition != self._partition:
            self._enter(partition)
        self._checked += 1
        self._place(partition, record)
        walk = self._walks.get(record.chain)
        if walk is None:
            walk = self._walks[record.chain] = _Walk()
        found = _integrity_problem(record, walk, self._ring, self._allow_legacy, self._newest)
        if found is None and record.seq < walk.expected_seq:
            seen = self._recent.get((record.chain, record.seq))
            if self._tolerate and seen == record.hash:
                return
            detail = (
                "seq seen before"
                if seen is not None
                else "seq seen before, too far back to compare"
            )
            self._breaks.append(
                Break(record.audit_id, record.chain, record.seq, "duplicate", detail)
            )
            return
        if found is None:
            found = _link_problem(record, walk)
            if found is not None and _first_present(record, walk):
                self._starts_mid_way.append((len(self._breaks), partition))
        if found is not None:
            self._breaks.append(Break(record.audit_id, record.chain, record.seq, *found))
        # A record that cannot be trusted for its seq takes the place the chain expected,
        # so the intact records after it still line up.
        untrusted = found is not None and found[0] in _UNTRUSTED
        position = walk.expected_seq if untrusted else record.seq
        self._remember(record.chain, position, record.hash)
        walk.expected_seq = position + 1
        walk.last_hash = record.hash
        if not untrusted and record.key_version != LEGACY_KEY_VERSION:
            walk.keyed = True
            self._newest = max(self._newest, record.key_version)
        elif not untrusted:
            self._legacy += 1
            self._legacy_chains[record.chain] = None

    def _remember(self, chain: str, seq: int, hash_: str) -> None:
        recent = self._recent
        recent[(chain, seq)] = hash_
        if len(recent) > self._recent_cap:
            del recent[next(iter(recent))]

    def _place(self, partition: int, record: AuditEvent) -> None:
        first = self._home.setdefault(record.chain, partition)
        if first != partition:
            self._split.append(
                Break(
                    record.audit_id,
                    record.chain,
                    record.seq,
                    "split_chain",
                    f"chain is on partition {first} and also on partition {partition}",
                )
            )
            self._home[record.chain] = partition  # one report per extra partition

    def result(self, starts: Mapping[int, int] | None = None) -> VerifyResult:
        """What the walk found; `starts`: each partition's log start offset when read."""
        cut = {
            index
            for index, partition in self._starts_mid_way
            if starts is not None and starts.get(partition, 0) > 0
        }
        return VerifyResult(
            self._checked,
            (*(b for i, b in enumerate(self._breaks) if i not in cut), *self._split),
            self._legacy,
            tuple(self._legacy_chains),
            tuple(self._breaks[i].chain for i in sorted(cut)),
        )


def _first_present(record: AuditEvent, walk: _Walk) -> bool:
    """Whether a keyed record is the first of its chain in the partition, past seq 1:
    what a chain whose front aged out looks like."""
    return (
        walk.expected_seq == 1
        and walk.last_hash == GENESIS
        and record.seq > 1
        and record.key_version != LEGACY_KEY_VERSION
    )


def verify(
    records: Iterable[AuditEvent],
    ring: Keyring,
    *,
    tolerate_exact_duplicates: bool = True,
    allow_legacy: bool = True,
) -> VerifyResult:
    """Walk records in log order (as read from one partition), chain by chain: the
    problems `LogVerifier` names."""
    walker = LogVerifier(
        ring, tolerate_exact_duplicates=tolerate_exact_duplicates, allow_legacy=allow_legacy
    )
    for record in records:
        walker.add(0, record)
    return walker.result()


def verify_log(
    partitions: Mapping[int, Sequence[AuditEvent]],
    ring: Keyring,
    *,
    allow_legacy: bool = True,
) -> VerifyResult:
    """Walk a whole topic: each partition in log order, and no chain in two partitions."""
    walker = LogVerifier(ring, allow_legacy=allow_legacy)
    for partition in sorted(partitions):
        for record in partitions[partition]:
            walker.add(partition, record)
    return walker.result()


__all__ = [
    "CURRENT_KEY_VERSION",
    "GENESIS",
    "LEGACY_KEY_VERSION",
    "SYSTEM_CHAIN",
    "AuditChainer",
    "AuditEvent",
    "AuditFieldError",
    "Break",
    "Keyring",
    "LogVerifier",
    "VerifyResult",
    "canonical_json",
    "chain_key",
    "compute_hash",
    "derive_audit_id",
    "expected_hash",
    "keyring",
    "looks_like_pii",
    "next_fields",
    "redact",
    "step_time",
    "verify",
    "verify_log",
]
