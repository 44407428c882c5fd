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
  written after one was produced by someone else.

The file is signed with HMAC-SHA256 under a key derived from the audit key, carrying the
key's version so it still verifies after a rotation. Why not Ed25519: no signature
library is a privops dependency yet, and the audit key is already held by exactly the
worker and the DPO tooling that make and check anchors; `alg` in the file leaves room for
a DPO-key signature later.
"""

from __future__ import annotations

import hmac
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from privops.core.audit import LEGACY_KEY_VERSION, Break, BreakProblem, Keyring, canonical_json
from privops.core.errors import DomainError, PrivopsError
from privops.core.records import AuditEvent

ANCHORS_FORMAT: Final = "privops.audit.anchors/1"
SIGNATURE_ALG: Final = "HMAC-SHA256"
_SIGNATURE_FIELDS: Final = ("alg", "key_version", "signature")
_KEY_CONTEXT: Final = b"privops.audit.anchors/1"

Located = tuple[int, int, AuditEvent]
"""(partition, offset, record): a record where it stands on the topic."""


class AnchorsInvalid(DomainError):
    """Not an anchors file (unreadable, not JSON, wrong shape): the wrong file was given."""


class AnchorsForged(PrivopsError):
    """An anchors file whose signature does not check: changed since it was written."""


class ChainHead(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    seq: int = Field(ge=1)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class Anchors(BaseModel):
    """What one `privops audit anchor` saw: every chain's head and the partition ends."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format: Literal["privops.audit.anchors/1"] = ANCHORS_FORMAT
    topic: str = Field(min_length=1)
    created_at: AwareDatetime
    chain_prefix: str = ""
    offsets: dict[int, int] = Field(default_factory=dict)
    chains: dict[str, ChainHead] = Field(default_factory=dict)


def build_anchors(
    records: Iterable[Located],
    *,
    topic: str,
    created_at: datetime,
    chain_prefix: str = "",
) -> Anchors:
    """The head of every chain in `records` (highest seq) and each partition's next offset.

    Anchor only a log that verifies: an anchor over a break would vouch for it.
    """
    heads: dict[str, ChainHead] = {}
    offsets: dict[int, int] = {}
    for partition, offset, record in records:
        offsets[partition] = max(offsets.get(partition, 0), offset + 1)
        if not record.chain.startswith(chain_prefix):
            continue
        head = heads.get(record.chain)
        if head is None or record.seq > head.seq:
            heads[record.chain] = ChainHead(seq=record.seq, hash=record.hash)
    return Anchors(
        topic=topic,
        created_at=created_at,
        chain_prefix=chain_prefix,
        offsets=dict(sorted(offsets.items())),
        chains=dict(sorted(heads.items())),
    )


def _signature(key: bytes, document: Mapping[str, Any]) -> str:
    signed = {name: value for name, value in document.items() if name != "signature"}
    anchor_key = hmac.digest(key, _KEY_CONTEXT, "sha256")
    return hmac.digest(anchor_key, canonical_json(signed), "sha256").hex()


def dump_anchors(anchors: Anchors, key: bytes, key_version: int) -> str:
    """The signed anchors file (JSON text) under audit key `key_version`."""
    document: dict[str, Any] = anchors.model_dump(mode="json")
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


def check_anchors(
    records: Iterable[Located], anchors: Anchors, chain_prefix: str = ""
) -> list[Break]:
    """Breaks between the topic (`records`, log order) and the anchored heads.

    Only chains starting with `chain_prefix` are checked. A head that is still there
    passes even beside a forged copy of its seq: the chain walk reports that duplicate.
    """
    at_head: dict[str, list[AuditEvent]] = defaultdict(list)
    misplaced: list[Break] = []
    for partition, offset, record in records:
        if not record.chain.startswith(chain_prefix):
            continue
        head = anchors.chains.get(record.chain)
        if head is not None and record.seq == head.seq:
            at_head[record.chain].append(record)
        if (found := _placement_break(partition, offset, record, anchors)) is not None:
            misplaced.append(found)
    breaks: list[Break] = []
    for chain, head in anchors.chains.items():
        if not chain.startswith(chain_prefix):
            continue
        there = at_head.get(chain, [])
        if any(hmac.compare_digest(record.hash, head.hash) for record in there):
            continue
        if not there:
            detail = f"anchored seq {head.seq} is no longer on the topic: history deleted"
            breaks.append(Break("", chain, head.seq, "anchor_missing", detail))
        else:
            detail = f"the record at anchored seq {head.seq} is not the anchored one"
            breaks.append(Break(there[0].audit_id, chain, head.seq, "anchor_mismatch", detail))
    return breaks + misplaced


__all__ = [
    "ANCHORS_FORMAT",
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
