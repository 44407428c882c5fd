"""Emitting audit events: chain heads from the ``audit-chains`` table, records to Kafka.

Called only from inside an agent's chunk (streams.state): the head is read and written
back there, and the record goes out with the agent's flush.

The chain key is "<app id>/" + the request id, else the subject ref
(privops.core.audit.chain_key), and it is also the message key, so one chain lives in one
partition, in order. The chain head is read and advanced with no await in between, so
concurrent agents on the one event loop never interleave inside a chain. Hashes are
HMACs under the audit key (settings.audit_key), which only the worker and the DPO's
verifying tools hold.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from privops.adapters import metrics
from privops.core.audit import GENESIS, chain_key, derive_audit_id, next_fields, redact
from privops.core.identity import subject_ref
from privops.core.pii import REDACT_CHARS, looks_like_pii
from privops.core.records import AuditEvent
from privops.core.topics import AUDIT
from streams.app import settings
from streams.io import output_datum
from streams.state import state
from streams.tables import CHAIN_HEADS, PSEUDONYM_KEYS

PSEUDONYM_KEY = PSEUDONYM_KEYS[0]
AUDIT_KEY = settings.audit_key.encode()
# The version new records carry; verifiers keep older versions in their keyring.
AUDIT_KEY_VERSION: int = settings.audit_key_version
_AUDIT_EVENT = AuditEvent.fullname()


@lru_cache(maxsize=65_536)
def ref(subject_id: str) -> str:
    """The pseudonymous subject ref used in audit, logs and notifications to recipients."""
    return subject_ref(PSEUDONYM_KEY, subject_id)


def audit(
    *,
    actor: str,
    action: str,
    cause: str,
    occurred_at: datetime,
    request_id: str | None = None,
    subject_id: str | None = None,
    before: str | None = None,
    after: str | None = None,
    reason: str | None = None,
    chain: str | None = None,
) -> None:
    """Append one step to its chain. ``cause`` (e.g. the event id) makes the id stable.

    ``chain`` overrides the default chain (request id, else subject ref) for steps that
    concern neither, such as dead letters; it is namespaced by the app id like the rest.
    """
    sref = ref(subject_id) if subject_id else None
    chain = f"{settings.app_id}/{chain}" if chain else chain_key(request_id, sref, settings.app_id)
    head = state.get(CHAIN_HEADS, chain) or (0, GENESIS)
    fields = next_fields(
        head,
        key=AUDIT_KEY,
        key_version=AUDIT_KEY_VERSION,
        chain=chain,
        audit_id=derive_audit_id(cause, action, str(head[0] + 1)),
        actor=actor,
        action=action,
        occurred_at=occurred_at,
        request_id=request_id,
        subject_ref=sref,
        before=_clean(before),
        after=_clean(after),
        reason=_clean(reason),
    )
    state.put(CHAIN_HEADS, chain, (head[0] + 1, str(fields["hash"])))
    metrics.count_audit_event(action)
    output_datum(AUDIT, chain, _AUDIT_EVENT, fields)


AUDIT_TEXT_CHARS = 500
"""The most of a free text (a reason, a before or after) an audit record keeps."""
WITHHELD = "[withheld: shaped like contact details]"


def _clean(text: str | None) -> str | None:
    """Audit text never carries raw contact details, whatever a caller passed in (a
    system's answer, a DPO's reason): redacted, then cut (so the cut leaves no part of
    an address or number behind), and withheld if it still looks like one (a cut can
    make one: "07700900123X" cut before its "X"). The record is then always valid:
    hostile text must not stop the worker."""
    if not text:
        return text
    if len(text) <= AUDIT_TEXT_CHARS:
        return _redacted(text)  # most texts: short, and repeating (remembered)
    return _cut(text[:REDACT_CHARS])


@lru_cache(maxsize=16_384)
def _redacted(text: str) -> str:
    return _cut(text)


def _cut(text: str) -> str:
    cleaned = redact(text)[:AUDIT_TEXT_CHARS]
    return WITHHELD if looks_like_pii(cleaned) else cleaned
