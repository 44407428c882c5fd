"""Signed audit chain heads kept outside Kafka, so a rewritten `privacy.audit` is caught.

The keyed chain hash stops someone without the audit key from forging records, but not
someone who can delete the topic's records and produce them again: as legacy unkeyed
records (version 0, still accepted so old topics verify), or with the key if they hold
it. An anchors file holds each chain's head (seq, hash) and how far each partition had
been read when it was made; kept off the broker (write-once storage, another machine),
it lets `privops audit verify --anchors` show that the topic still holds that history.
Because a head's hash covers its prev_hash, the head commits to its whole chain.

Checks against an anchors file:
- `anchor_missing`: the anchored head is no longer on the topic (deleted or rewritten);
- `anchor_mismatch`: the record at the anchored seq is another one (rewritten);
- `unanchored`: a record stands in the part of a partition the anchors cover, but the
  anchors do not hold it (its chain is not anchored, or its seq is past the head):
  history was inserted;
- `unkeyed_after_anchor`: an unkeyed record stands at or after an anchored partition
  offset. Anchors exist only since the worker writes keyed records, so anything unkeyed
  written after one was produced by someone else;
- `anchors_outdated_key`: the file is signed with an audit key version older than a
  record in the part of the log it covers: it was signed after that key was retired,
  and a retired key is retired because it may have leaked.

`privacy.audit` keeps ten years (`AUDIT_RETENTION`), then Kafka deletes its oldest
segments. Each head carries where it stood (partition, offset) and its record's
timestamp, so a head that is gone because it is older than the retention is told apart
from one deleted early (`anchor_missing`): the first is counted as aged out, the second
is a break. Kafka deletes a segment only once its newest record is older than the
retention, so no record younger than that is gone by retention.

The file is signed with HMAC-SHA256 under a key derived from the audit key, carrying the
key's version so it still verifies after a rotation. Why not Ed25519: no signature
library is a privops dependency yet, and the audit key is already held by exactly the
worker and the DPO tooling that make and check anchors; `alg` in the file leaves room for
a DPO-key signature later.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from privops.core.audit import LEGACY_KEY_VERSION, Break, BreakProblem, Keyring, canonical_json
from privops.core.errors import DomainError, PrivopsError
from privops.core.records import AuditEvent

ANCHORS_FORMAT: Final = "privops.audit.anchors/1"
SIGNATURE_ALG: Final = "HMAC-SHA256"
_SIGNATURE_FIELDS: Final = ("alg", "signature")
_KEY_CONTEXT: Final = b"privops.audit.anchors/1"

Located = tuple[int, int, AuditEvent]
"""(partition, offset, record): a record where it stands on the topic."""


class AnchorsInvalid(DomainError):
    """Not an anchors file (unreadable, not JSON, wrong shape): the wrong file was given."""


class AnchorsForged(PrivopsError):
    """An anchors file whose signature does not check: changed since it was written."""


class ChainHead(BaseModel):
    """A chain's last record when anchored; where it stood and when it was written (files
    from before these were kept hold only seq and hash)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    seq: int = Field(ge=1)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    partition: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    timestamp_ms: int | None = None


class Anchors(BaseModel):
    """What one `privops audit anchor` saw: every chain's head and the partition ends."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format: Literal["privops.audit.anchors/1"] = ANCHORS_FORMAT
    topic: str = Field(min_length=1)
    created_at: AwareDatetime
    chain_prefix: str = ""
    offsets: dict[int, int] = Field(default_factory=dict)
    chains: dict[str, ChainHead] = Field(default_factory=dict)
    key_version: int | None = Field(default=None, description="the audit key that signed it")


class AnchorBuilder:
    """Anchors built a record at a time, in the memory of the chain heads."""

    def __init__(self, chain_prefix: str = "") -> None:
        self.chain_prefix = chain_prefix
        self._heads: dict[str, ChainHead] = {}
        self._offsets: dict[int, int] = {}

    def add(self, partition: int, offset: int, record: AuditEvent, timestamp_ms: int) -> None:
        self.reached(partition, offset + 1)
        if not record.chain.startswith(self.chain_prefix):
            return
        head = self._heads.get(record.chain)
        if head is None or record.seq > head.seq:
            self._heads[record.chain] = ChainHead(
                seq=record.seq,
                hash=record.hash,
                partition=partition,
                offset=offset,
                timestamp_ms=timestamp_ms,
            )

    def reached(self, partition: int, end: int) -> None:
        """Everything of `partition` before offset `end` was read."""
        self._offsets[partition] = max(self._offsets.get(partition, 0), end)

    def build(self, *, topic: str, created_at: datetime) -> Anchors:
        return Anchors(
            topic=topic,
            created_at=created_at,
            chain_prefix=self.chain_prefix,
            offsets=dict(sorted(self._offsets.items())),
            chains=dict(sorted(self._heads.items())),
        )


def build_anchors(
    records: Iterable[Located],
    *,
    topic: str,
    created_at: datetime,
    chain_prefix: str = "",
) -> Anchors:
    """The head of every chain in `records` (highest seq) and each partition's next offset,
    with no record timestamps (``AnchorBuilder`` takes them as the topic is read).

    Anchor only a log that verifies: an anchor over a break would vouch for it.
    """
    builder = AnchorBuilder(chain_prefix)
    for partition, offset, record in records:
        builder.add(partition, offset, record, 0)
    return builder.build(topic=topic, created_at=created_at)


def _signature(key: bytes, document: Mapping[str, Any]) -> str:
    signed = {name: value for name, value in document.items() if name != "signature"}
    anchor_key = hmac.digest(key, _KEY_CONTEXT, "sha256")
    return hmac.digest(anchor_key, canonical_json(signed), "sha256").hex()


def dump_anchors(anchors: Anchors, key: bytes, key_version: int) -> str:
    """The signed anchors file (JSON text) under audit key `key_version`."""
    document: dict[str, Any] = anchors.model_dump(mode="json")
    for head in document["chains"].values():
        for name in ("partition", "offset", "timestamp_ms"):
            if head[name] is None:
                del head[name]
    document.update(alg=SIGNATURE_ALG, key_version=key_version)
    document["signature"] = _signature(key, document)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


def _parse(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise AnchorsInvalid(f"not an anchors file: not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != ANCHORS_FORMAT:
        raise AnchorsInvalid(f"not an anchors file: its format is not {ANCHORS_FORMAT!r}")
    return document


def load_anchors(text: str, ring: Keyring) -> Anchors:
    """The anchors in a file, once its signature checks under a key of `ring`.

    The signature is checked before the content is read, so an edited file is reported
    as edited whatever the edit did to its shape.
    """
    document = _parse(text)
    signature, version = document.get("signature"), document.get("key_version")
    if not isinstance(signature, str) or not isinstance(version, int) or isinstance(version, bool):
        raise AnchorsForged("the anchors file carries no signature")
    if document.get("alg") != SIGNATURE_ALG:
        raise AnchorsForged(f"the anchors file is not signed with {SIGNATURE_ALG}")
    key = ring.get(version)
    if key is None:
        raise AnchorsForged(
            f"the anchors file is signed with audit key version {version}, "
            "which is not in the keyring"
        )
    if not hmac.compare_digest(_signature(key, document), signature):
        raise AnchorsForged(
            "the anchors file fails its signature check: it was changed after it was "
            "written, or written under another audit key"
        )
    content = {name: value for name, value in document.items() if name not in _SIGNATURE_FIELDS}
    try:
        return Anchors.model_validate(content)
    except ValidationError as exc:
        raise AnchorsInvalid(f"not an anchors file: {exc.error_count()} bad field(s)") from exc


def _placement_break(
    partition: int, offset: int, record: AuditEvent, anchors: Anchors
) -> Break | None:
    """Whether a record stands where the anchors say nothing could have been written."""
    end = anchors.offsets.get(partition, 0)
    if offset >= end:
        if record.key_version != LEGACY_KEY_VERSION:
            return None
        problem: BreakProblem = "unkeyed_after_anchor"
        detail = "unkeyed record written after the anchors were made"
    elif not record.chain.startswith(anchors.chain_prefix):
        return None
    else:
        head = anchors.chains.get(record.chain)
        if head is not None and record.seq <= head.seq:
            return None
        problem = "unanchored"
        detail = "record in the anchored part of the log that the anchors do not hold"
    where = f" (partition {partition} offset {offset})"
    return Break(record.audit_id, record.chain, record.seq, problem, detail + where)


@dataclass
class AnchorCheck:
    """The topic checked against anchored heads, a record at a time (log order).

    Only chains starting with `chain_prefix` are checked. A head that is still there
    passes even beside a forged copy of its seq: the chain walk reports that duplicate.
    It keeps the anchored heads' matches, not the records.
    """

    anchors: Anchors
    chain_prefix: str = ""
    matched: set[str] = field(default_factory=set)
    at_head: dict[str, str] = field(default_factory=dict)
    misplaced: list[Break] = field(default_factory=list)
    outdated_key: Break | None = None

    def add(self, partition: int, offset: int, record: AuditEvent) -> None:
        if not record.chain.startswith(self.chain_prefix):
            return
        head = self.anchors.chains.get(record.chain)
        if head is not None and record.seq == head.seq:
            if hmac.compare_digest(record.hash, head.hash):
                self.matched.add(record.chain)
            else:
                self.at_head.setdefault(record.chain, record.audit_id)
        if (found := _placement_break(partition, offset, record, self.anchors)) is not None:
            self.misplaced.append(found)
        signed = self.anchors.key_version
        if (
            self.outdated_key is None
            and signed is not None
            and offset < self.anchors.offsets.get(partition, 0)
            and record.key_version > signed
        ):
            self.outdated_key = Break(
                record.audit_id,
                record.chain,
                record.seq,
                "anchors_outdated_key",
                f"the anchors file is signed with audit key version {signed} but covers "
                f"this version {record.key_version} record: it was signed after version "
                f"{signed} was retired (partition {partition} offset {offset})",
            )

    def breaks(
        self,
        starts: Mapping[int, int] | None = None,
        *,
        now: datetime | None = None,
        retention: timedelta | None = None,
    ) -> tuple[list[Break], list[str]]:
        """(breaks, aged out): anchored heads gone or changed, records where none could
        be, and the heads gone only because they are older than `retention` at `now`
        (given `starts`, each partition's log start offset when read)."""
        breaks: list[Break] = []
        aged_out: list[str] = []
        for chain, head in self.anchors.chains.items():
            if not chain.startswith(self.chain_prefix) or chain in self.matched:
                continue
            if chain in self.at_head:
                detail = f"the record at anchored seq {head.seq} is not the anchored one"
                breaks.append(
                    Break(self.at_head[chain], chain, head.seq, "anchor_mismatch", detail)
                )
                continue
            gone = _gone_before(head, starts)
            if gone and _older_than(head, now, retention):
                aged_out.append(chain)
                continue
            detail = f"anchored seq {head.seq} is no longer on the topic: history deleted"
            if gone:
                detail += " before its retention ended"
            breaks.append(Break("", chain, head.seq, "anchor_missing", detail))
        if self.outdated_key is not None:
            breaks.insert(0, self.outdated_key)
        return breaks + self.misplaced, aged_out


def _gone_before(head: ChainHead, starts: Mapping[int, int] | None) -> bool:
    """Whether the head stood before its partition's log start (removed from the front)."""
    if starts is None or head.partition is None or head.offset is None:
        return False
    return head.offset < starts.get(head.partition, 0)


def _older_than(head: ChainHead, now: datetime | None, retention: timedelta | None) -> bool:
    if now is None or retention is None or head.timestamp_ms is None:
        return False
    return head.timestamp_ms < (now - retention).timestamp() * 1000


def check_anchors(
    records: Iterable[Located], anchors: Anchors, chain_prefix: str = ""
) -> list[Break]:
    """Breaks between the topic (`records`, log order) and the anchored heads."""
    check = AnchorCheck(anchors, chain_prefix)
    for partition, offset, record in records:
        check.add(partition, offset, record)
    return check.breaks()[0]


__all__ = [
    "ANCHORS_FORMAT",
    "AnchorBuilder",
    "AnchorCheck",
    "Anchors",
    "AnchorsForged",
    "AnchorsInvalid",
    "ChainHead",
    "Located",
    "build_anchors",
    "check_anchors",
    "dump_anchors",
    "load_anchors",
]
