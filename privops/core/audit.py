"""The tamper-evident audit trail: records, their hash chain, and its verification.

Chains: one chain per chain key, and the chain key is the Kafka key of `privacy.audit`:
the request id when the event concerns a request, else the pseudonymous subject ref,
else `SYSTEM_CHAIN` (e.g. a dead letter with no usable key). Keying the topic by the
chain key puts a whole chain in one partition, so Kafka keeps its order, and chains on
different partitions never need a global order. Each record carries its chain, a
sequence number (1, 2, ... per chain) and the previous record's hash (`GENESIS` for the
first); its hash is SHA-256 over the canonical JSON of every other field.

`AuditChainer` holds the head (seq, hash) of each chain as plain data, so the worker
keeps it in a table and a restart continues the chains. `verify` reads records in log
order and reports every break, the first one first.

Nothing here reads the clock or does I/O. Audit records never hold raw PII: text fields
that look like an email address or a UK phone number are refused (without echoing them).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from privops.core.errors import DomainError
from privops.core.pii import looks_like_pii, redact
from privops.core.records import AuditEvent

GENESIS: Final = "0" * 64
SYSTEM_CHAIN: Final = "privops"
_AUDIT_NAMESPACE: Final = uuid.UUID("6f1c7a52-3d0e-5b8e-9a51-0c4a1e2f7d10")

BreakProblem = Literal["hash_mismatch", "missing_link", "seq_gap", "duplicate"]
ChainState = dict[str, tuple[int, str]]


def chain_key(request_id: str | None, subject_ref: str | None, namespace: str | None = None) -> str:
    """The chain (and `privacy.audit` message key) a record belongs to.

    ``namespace`` (the worker's app id) keeps chains of different privops deployments
    that share one audit topic (a demo run, a test worker) apart.
    """
    key = request_id or subject_ref or SYSTEM_CHAIN
    return f"{namespace}/{key}" if namespace else key


def derive_audit_id(*parts: str) -> str:
    """A stable audit id from what caused the event (e.g. event id and action).

    Re-processing the same input after a crash then yields the same id, so the
    re-emitted record is recognisable as the same event.
    """
    return str(uuid.uuid5(_AUDIT_NAMESPACE, "\x1f".join(parts)))


def hashed_fields(record: AuditEvent) -> dict[str, object]:
    """Every field the hash covers: all but the hash itself."""
    return record.model_dump(exclude={"hash"})


def expected_hash(record: AuditEvent) -> str:
    return compute_hash(record.prev_hash, hashed_fields(record))


def _canonical_value(value: object) -> object:
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise DomainError("audit timestamps must be timezone-aware")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    raise DomainError(f"audit field value of type {type(value).__name__} is not hashable here")


def canonical_bytes(fields: Mapping[str, object]) -> bytes:
    """Deterministic bytes for hashing: sorted-key compact JSON, UTC microsecond times."""
    payload = {key: _canonical_value(value) for key, value in fields.items()}
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def compute_hash(prev_hash: str, fields: Mapping[str, object]) -> str:
    """SHA-256 hex over the record's fields with `prev_hash` (any `hash` key is ignored)."""
    payload = {key: value for key, value in fields.items() if key != "hash"}
    payload["prev_hash"] = prev_hash
    return hashlib.sha256(canonical_bytes(payload)).hexdigest()


class AuditChainer:
    """Builds chained records; its state is plain data the worker persists in a table."""

    def __init__(self, state: Mapping[str, Sequence[object]] | None = None) -> None:
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
        seq, prev_hash = self.head(chain)
        fields: dict[str, object] = {
            "audit_id": audit_id or str(uuid.uuid4()),
            "chain": chain,
            "seq": seq + 1,
            "request_id": request_id,
            "subject_ref": subject_ref,
            "actor": actor,
            "action": action,
            "before": before,
            "after": after,
            "reason": reason,
            "occurred_at": occurred_at,
            "prev_hash": prev_hash,
        }
        draft = AuditEvent.model_validate({**fields, "hash": GENESIS})
        record = draft.model_copy(update={"hash": expected_hash(draft)})
        self._heads[chain] = (record.seq, record.hash)
        return record


@dataclass(frozen=True, slots=True)
class Break:
    """Where a chain is broken. `audit_id` names the record at which it shows."""

    audit_id: str
    chain: str
    seq: int
    problem: BreakProblem
    detail: str = ""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_break: Break | None
    breaks: tuple[Break, ...] = field(default=())


@dataclass(slots=True)
class _Walk:
    expected_seq: int = 1
    last_hash: str = GENESIS
    seen: dict[int, str] = field(default_factory=dict)


def verify(
    records: Iterable[AuditEvent], *, tolerate_exact_duplicates: bool = True
) -> VerifyResult:
    """Walk records in log order (as read from the topic), chain by chain.

    Problems, checked in this order for each record:
    - `hash_mismatch`: the record's hash is not the hash of its fields (a field was changed);
    - `duplicate`: a seq already seen on the chain, with different content (a re-produced,
      altered record). Byte-identical redeliveries are skipped when tolerated;
    - `missing_link`: prev_hash is not the previous record's hash (a record deleted or
      reordered before this one, or a record altered with its hash recomputed);
    - `seq_gap`: links correctly but skips sequence numbers.
    After a break the walk re-anchors on the offending record, so one tampered record is
    reported once and later breaks are still found; `first_break` is exact, the breaks
    after it are best effort (a forged record can shift what follows it).
    """
    walks: dict[str, _Walk] = {}
    breaks: list[Break] = []
    checked = 0
    for record in records:
        checked += 1
        walk = walks.setdefault(record.chain, _Walk())
        problem: BreakProblem | None = None
        detail = ""
        if expected_hash(record) != record.hash:
            problem, detail = "hash_mismatch", "fields do not match the record's hash"
        elif record.seq in walk.seen or record.seq < walk.expected_seq:
            if tolerate_exact_duplicates and walk.seen.get(record.seq) == record.hash:
                continue
            breaks.append(
                Break(record.audit_id, record.chain, record.seq, "duplicate", "seq seen before")
            )
            continue
        elif record.prev_hash != walk.last_hash:
            problem = "missing_link"
            detail = f"prev_hash does not match record seq {walk.expected_seq - 1}"
        elif record.seq != walk.expected_seq:
            problem, detail = "seq_gap", f"expected seq {walk.expected_seq}"
        if problem is not None:
            breaks.append(Break(record.audit_id, record.chain, record.seq, problem, detail))
        # A record failing its own hash cannot be trusted for its seq: it takes the place
        # the chain expected, so the intact records after it still line up.
        position = walk.expected_seq if problem == "hash_mismatch" else record.seq
        walk.seen[position] = record.hash
        walk.expected_seq = position + 1
        walk.last_hash = record.hash
    return VerifyResult(
        ok=not breaks,
        checked=checked,
        first_break=breaks[0] if breaks else None,
        breaks=tuple(breaks),
    )


__all__ = [
    "GENESIS",
    "SYSTEM_CHAIN",
    "AuditChainer",
    "AuditEvent",
    "Break",
    "VerifyResult",
    "chain_key",
    "compute_hash",
    "derive_audit_id",
    "expected_hash",
    "looks_like_pii",
    "redact",
    "verify",
]
