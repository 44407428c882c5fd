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

The file is signed with Ed25519 by the DPO who made it (their command signing key,
``privops.core.signing``), checked against the signers file the worker trusts: a worker,
which holds the audit key and may write the topic, cannot make one for a log it
rewrote. It carries the audit key version of its day, for the retired-key check above.
Files of sessions before 33 are signed with HMAC-SHA256 under a key derived from the
audit key (``alg`` says which). Whoever holds the audit key, the workers included, could
have made one, so they are read only when asked (``accept_legacy``: a file kept where no
worker could replace it), and said to prove less (contract review, session 33). So is a
file signed by a DPO key revoked since (``accept_revoked``): its date is its signer's
word.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from privops.core.audit import LEGACY_KEY_VERSION, Break, BreakProblem, Keyring, canonical_json
from privops.core.errors import DomainError, PrivopsError
from privops.core.records import AuditEvent
from privops.core.signing import Signers, SigningKey

ANCHORS_FORMAT: Final = "privops.audit.anchors/1"
SIGNATURE_ALG: Final = "Ed25519"
LEGACY_SIGNATURE_ALG: Final = "HMAC-SHA256"
_SIGNATURE_FIELDS: Final = ("alg", "signature", "signer")
_KEY_CONTEXT: Final = b"privops.audit.anchors/1"

Located = tuple[int, int, AuditEvent]
"""(partition, offset, record): a record where it stands on the topic."""


class AnchorsInvalid(DomainError):
    """Not an anchors file (unreadable, not JSON, wrong shape): the wrong file was given."""


class AnchorsForged(PrivopsError):
    """An anchors file whose signature does not check: changed since it was written."""


class AnchorsUntrusted(DomainError):
    """An anchors file whose signature checks under a key that proves less (the audit
    key of a file before 0.33, a signer's key revoked since): taken only when asked."""


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
    key_version: int | None = Field(
        default=None, description="the audit key version of its day (older files: that signed it)"
    )
    signed_by: str | None = Field(
        default=None, exclude=True, description="who signed it, as `load_anchors` found"
    )
    legacy: bool = Field(
        default=False, exclude=True, description="signed with the audit key (before 0.33)"
    )


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


def _signed_part(document: Mapping[str, Any]) -> bytes:
    return canonical_json({name: value for name, value in document.items() if name != "signature"})


def _legacy_signature(key: bytes, document: Mapping[str, Any]) -> str:
    anchor_key = hmac.digest(key, _KEY_CONTEXT, "sha256")
    return hmac.digest(anchor_key, _signed_part(document), "sha256").hex()


def dump_anchors(anchors: Anchors, signer: SigningKey, key_version: int) -> str:
    """The anchors file (JSON text), signed by ``signer`` (the DPO's key), with the audit
    key version of its day."""
    document: dict[str, Any] = anchors.model_dump(mode="json")
    for head in document["chains"].values():
        for name in ("partition", "offset", "timestamp_ms"):
            if head[name] is None:
                del head[name]
    document.update(alg=SIGNATURE_ALG, key_version=key_version, signer=signer.key_id)
    raw = signer.private.sign(_signed_part(document))
    document["signature"] = base64.b64encode(raw).decode()
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


def load_anchors(
    text: str,
    ring: Keyring,
    signers: Signers,
    *,
    accept_legacy: bool = False,
    accept_revoked: bool = False,
) -> Anchors:
    """The anchors in a file, once its signature checks: by a key ``signers`` trusts
    (with ``accept_revoked``, one revoked after the file's date), or, with ``accept_legacy``, a
    file of an older privops under an audit key of ``ring``. Without it such a file is
    refused: every worker holds the audit key, so a worker that rewrote the topic could
    have made it (review, session 33). ``signed_by`` says which.

    The signature is checked before the content is read, so an edited file is reported
    as edited whatever the edit did to its shape.
    """
    document = _parse(text)
    signature, version = document.get("signature"), document.get("key_version")
    if not isinstance(signature, str) or not isinstance(version, int) or isinstance(version, bool):
        raise AnchorsForged("the anchors file carries no signature")
    alg = document.get("alg")
    if alg == SIGNATURE_ALG:
        signed_by = _check_signer(document, signature, signers, accept_revoked)
    elif alg == LEGACY_SIGNATURE_ALG:
        if not accept_legacy:
            raise AnchorsUntrusted(
                "the anchors file is signed with the audit key (a file of privops before "
                "0.33), which every worker holds: a worker that rewrote the topic could have "
                "made it. Check it anyway with --accept-legacy-anchors if it was kept where "
                "no worker could replace it, then anchor again"
            )
        _check_legacy(document, signature, version, ring)
        signed_by = f"audit key version {version} (a file of an older privops)"
    else:
        raise AnchorsForged(f"the anchors file is not signed with {SIGNATURE_ALG}")
    content = {name: value for name, value in document.items() if name not in _SIGNATURE_FIELDS}
    try:
        legacy = alg == LEGACY_SIGNATURE_ALG
        return Anchors.model_validate(content | {"signed_by": signed_by, "legacy": legacy})
    except ValidationError as exc:
        raise AnchorsInvalid(f"not an anchors file: {exc.error_count()} bad field(s)") from exc


def _check_signer(
    document: Mapping[str, Any], signature: str, signers: Signers, accept_revoked: bool
) -> str:
    """Whose trusted key signed ``document`` ("owner (key id)"), or AnchorsForged, or
    AnchorsUntrusted for a revoked key not ``accept_revoked``."""
    kid = document.get("signer")
    entry = signers.root.get(kid) if isinstance(kid, str) else None
    if entry is None:
        raise AnchorsForged(
            f"the anchors file is signed by key {kid!r}, which the signers file does not trust"
        )
    try:
        entry.verifier().verify(base64.b64decode(signature, validate=True), _signed_part(document))
    except (InvalidSignature, ValueError, binascii.Error):
        raise AnchorsForged(
            "the anchors file fails its signature check: it was changed after it was written"
        ) from None
    if entry.revoked_at is None:
        return f"{entry.owner} (key {kid})"
    # A key is revoked when its owner leaves as well as when it leaks. The file's date is
    # its signer's word, so a leaked key can backdate one: taken only when asked, for a
    # file whose write-once storage dates it before the revocation; one dated after is
    # refused outright (review, session 33).
    made = _created_at(document)
    revoked = entry.revoked_at.isoformat()
    if made is not None and made < entry.revoked_at and not accept_revoked:
        raise AnchorsUntrusted(
            f"the anchors file is signed by key {kid} of {entry.owner!r}, revoked at "
            f"{revoked}; its date is the signer's word, so whoever held a leaked key could "
            "have made it. If its storage dates it before the revocation, check it with "
            "--accept-revoked-signer"
        )
    if made is None or made >= entry.revoked_at:
        raise AnchorsForged(
            f"the anchors file is signed by key {kid} of {entry.owner!r}, revoked at "
            f"{entry.revoked_at.isoformat()}, and dated after that: anchor again with a "
            "current key"
        )
    return f"{entry.owner} (key {kid}, revoked at {entry.revoked_at.isoformat()}, after this file)"


def _created_at(document: Mapping[str, Any]) -> datetime | None:
    try:
        made = datetime.fromisoformat(str(document.get("created_at")))
    except ValueError:
        return None
    return made if made.tzinfo is not None else None


def _check_legacy(document: Mapping[str, Any], signature: str, version: int, ring: Keyring) -> None:
    key = ring.get(version)
    if key is None:
        raise AnchorsForged(
            f"the anchors file is signed with audit key version {version}, "
            "which is not in the keyring"
        )
    if not hmac.compare_digest(_legacy_signature(key, document), signature):
        raise AnchorsForged(
            "the anchors file fails its signature check: it was changed after it was "
            "written, or written under another audit key"
        )


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
