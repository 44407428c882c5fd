"""The worker's tables (RocksDB in production, changelogged to Kafka), and its global views.

Values are JSON dicts of the pydantic models in ``privops``; keys are raw strings, the
same bytes the topics are keyed by, so Faust's router finds a key's owner by the same
partitioner the producers used. Every input is keyed by subject id (DESIGN.md section
4), so a key is written and read only while processing the partition that owns it: a
subject's identity, consent, facts and holds, and every request and request-chain of
that subject, live on the subject's partition. What is not about one subject is a
global view (streams.global_view): the suppression list and the request index.

Agents read and write the tables only through ``streams.state`` and the ``Slot``s
below (how each table's values are decoded and encoded); the HTTP views read the newest
decided value of a subject's key through it too (``newest``), outside any agent.
"""

from __future__ import annotations

from typing import Any, TypeVar

from faust.types import TableT
from pydantic import BaseModel

from privops.adapters.key_topic import subject_partition
from privops.core import sealing
from privops.core.consent import SubjectConsent
from privops.core.erasure import SubjectFacts
from privops.core.fieldcrypt import check_subject_id
from privops.core.holds import LegalHold
from privops.core.identity import IdentityMap, subject_ref
from privops.core.request import RequestRecord
from privops.core.topics import REQUEST_INDEX, SUPPRESSION
from privops.core.workflow import CommandAnswers
from streams.app import app, settings
from streams.global_view import GlobalView
from streams.state import Slot, model_slot, state


def _table(name: str, help_: str) -> TableT[Any, Any]:
    return app.Table(
        name,
        default=None,
        # Faust derives the store's and the changelog's key codec from key_type:
        # bytes means raw (str keys are encoded as UTF-8), values stay JSON.
        key_type=bytes,
        partitions=settings.topic_partitions,
        help=help_,
    )


identities = _table("identities", "subject id -> IdentityMap (raw identifiers per system)")
consent = _table("consent", "subject id -> SubjectConsent")
subject_facts = _table("subject-facts", "subject id -> SubjectFacts (retention inputs)")
legal_holds = _table("legal-holds", "subject id -> list of LegalHold")
requests = _table("requests", "request id -> RequestRecord (on its subject's partition)")
audit_chains = _table("audit-chains", "audit chain key -> [seq, hash]")
command_answers = _table(
    "command-answers", "'commands/<partition>' -> CommandAnswers (answers no request keeps)"
)

V = TypeVar("V")

suppression = GlobalView(SUPPRESSION)  # suppression key (keyed hash) -> subject ref
request_index = GlobalView(REQUEST_INDEX)  # request id -> subject id
GLOBAL_VIEWS = (suppression, request_index)


def _json(model: BaseModel) -> Any:
    return model.model_dump(mode="json")


# The tables holding personal values seal them under the subject's key when written
# (privops.core.sealing, streams.sealing): their changelogs and stores hold ciphertext.
IDENTITIES: Slot[IdentityMap] = model_slot(identities, IdentityMap, sealing.IDENTITIES)
CONSENT: Slot[SubjectConsent] = model_slot(consent, SubjectConsent)
FACTS: Slot[SubjectFacts] = model_slot(subject_facts, SubjectFacts, sealing.FACTS)
HOLDS: Slot[list[LegalHold]] = Slot(
    legal_holds,
    lambda raw: [LegalHold.model_validate(h) for h in raw],
    lambda holds: [_json(h) for h in holds],
    sealing=sealing.HOLDS,
)
REQUESTS: Slot[RequestRecord] = model_slot(requests, RequestRecord, sealing.REQUESTS)
CHAIN_HEADS: Slot[tuple[int, str]] = Slot(audit_chains, lambda raw: (raw[0], raw[1]), list)
# No personal values (command ids, reason codes, messages that name no one): not sealed.
COMMAND_ANSWERS: Slot[CommandAnswers] = model_slot(command_answers, CommandAnswers)


def erased(subject_id: str) -> bool:
    """The subject's consent state carries an erasure's suppression (read through
    ``state``: this partition's, writes not yet flushed included, so the ingest and
    workflow agents agree the moment either decides it)."""
    return erased_at(state.partition, subject_id)


def erased_at(partition: int, subject_id: str) -> bool:
    """``erased`` on a given partition (the subject's: the flush, outside a message)."""
    return _erased_by(state.get_at(CONSENT, partition, subject_id), subject_id)


def _erased_by(current: SubjectConsent | None, subject_id: str) -> bool:
    """Erased, by the subject's consent state; for a subject with none, by the suppression
    list, which outlives every table: a worker rebuilt under a new app id never saw the
    erasure, and would otherwise make the subject a new key (review, session 24). Only
    subjects unknown here pay for the keyed hash."""
    if current is not None:
        return current.suppressed
    return listed_erased(subject_id)


def listed_erased(subject_id: str) -> bool:
    """The suppression list holds ``subject_id``'s ref: an erasure of theirs ran, whatever
    this worker's tables say (a rebuild under a new app id starts them empty). A keyed
    hash a pseudonym key (usually one): ask it only of a subject with no consent state
    here. Under every key, the ones a rotation replaced too: the list keeps the ref it
    was given, and before, a subject erased before a rotation was unknown to a rebuilt
    worker, which answered 404 and made them a new ``main`` key (review, session 44)."""
    return any(suppression.has_value(subject_ref(key, subject_id)) for key in PSEUDONYM_KEYS)


PSEUDONYM_KEYS: tuple[bytes, ...] = (
    settings.pseudonym_key.encode(),
    *(key.encode() for key in settings.pseudonym_previous_keys),
)
"""The current pseudonym key first, then the ones it replaced."""


def newest(slot: Slot[V], subject_id: str, key: str) -> V | None:
    """``key``'s newest decided value on ``subject_id``'s partition, for the HTTP views
    (``State.peek_at``): a withdrawal or an erasure answers there as soon as it is
    decided, not once its records are delivered and stored a round trip later.
    ``ValueError`` for a subject id no subject can have (checked before it is hashed and
    remembered); ``RuntimeUnavailable`` when no answer can be trusted now."""
    partition = subject_partition(check_subject_id(subject_id), settings.topic_partitions)
    return state.peek_at(slot, partition, key)


def newest_erased(subject_id: str) -> bool:
    """``erased`` by the newest decided consent state (``newest``: the key service, which
    answers as soon as an erasure is decided)."""
    return _erased_by(newest(CONSENT, subject_id, subject_id), subject_id)
