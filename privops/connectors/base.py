"""The connector contract: what a business system implements, and what it answers.

A team subclasses :class:`Connector`; each action returns an :class:`Answer`, which the
runner (``privops.connectors.runner``) turns into the task-result record privops reads.
This module knows nothing of Kafka, so a connector can be tested with plain ``await``.

Besides tasks, a connector is told what legal holds keep of each subject at its system
(``hold`` / ``release``, from ``privacy.legal-holds.<system>``): the system's own deletion
by age must skip it (docs/connectors.md, "Legal holds and deletion by age"). A system
searched by details (CCTV) is also told what an open access request's search would find
(``preserve`` / ``end_preservation``): kept from deletion by age until the request is
finished (docs/connectors.md, "Searches kept from deletion by age").

``Answer`` is the connector's reply to one task, not the request workflow's ``Outcome``
(the worker's decision about a request): the two meet only through the result record.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final, Literal

from privops.core.admission import MAX_ANSWER_REASON_CHARS
from privops.core.errors import PrivopsError
from privops.core.pii import REDACT_CHARS, redact
from privops.core.records import (
    Erase,
    Export,
    ExportReference,
    LegalHoldState,
    LiftRestriction,
    NotFound,
    Rectify,
    Restrict,
    SearchPreserved,
    Task,
    TaskCompleted,
    TaskFailed,
    TaskResult,
    TaskRetained,
)
from privops.core.vocab import Category, System, TaskOutcome

NO_ANSWER: Final = "no_answer"


class TransientError(PrivopsError):
    """Raised by a connector when the task may succeed if tried again (system busy, lock)."""


@dataclass(frozen=True)
class Answer:
    """A connector's answer to one task; turned into the result record by the runner.

    ``reason`` travels to privops and its audit: never put names, emails or phones in it.
    """

    kind: TaskOutcome | Literal["no_answer"]
    records_affected: int = 0
    export: ExportReference | None = None
    reason: str = ""
    categories: tuple[Category, ...] = ()
    retryable: bool = True

    @classmethod
    def completed(cls, records_affected: int = 0, export: ExportReference | None = None) -> Answer:
        """Done: everything asked was done (``export`` for an Export task)."""
        return cls(TaskOutcome.completed, records_affected=records_affected, export=export)

    @classmethod
    def retained(cls, reason: str, categories: Sequence[Category]) -> Answer:
        """Done, but some data was kept on purpose (e.g. invoices for 6 years), and why."""
        return cls(TaskOutcome.retained, reason=reason, categories=tuple(categories))

    @classmethod
    def not_found(cls) -> Answer:
        """The identifiers match nothing in this system."""
        return cls(TaskOutcome.not_found)

    @classmethod
    def failed(cls, reason: str, retryable: bool = True) -> Answer:
        """Could not do it. ``retryable=True`` invites privops to re-send the task later."""
        return cls(TaskOutcome.failed, reason=reason, retryable=retryable)

    @classmethod
    def no_answer(cls) -> Answer:
        """Send nothing (work continues elsewhere, or a test's silent system).

        privops re-sends after the system's SLA and escalates after its retries.
        """
        return cls(NO_ANSWER)

    @property
    def final(self) -> bool:
        """Whether a re-send must get this same answer (kept in the ledger)."""
        if self.kind == NO_ANSWER:
            return False
        return not (self.kind == TaskOutcome.failed and self.retryable)

    @property
    def label(self) -> str:
        """The metric label: one of the task outcomes, or ``no_answer``."""
        return str(self.kind)

    def result(self, task: Task, answered_at: datetime) -> TaskResult | None:
        """The record privops receives; None for ``no_answer`` (nothing is sent)."""
        common = {
            "task_id": task.task_id,
            "request_id": task.request_id,
            "system": task.system,
            "answered_at": answered_at,
            "attempt": task.attempt,
        }
        # privops keeps MAX_ANSWER_REASON_CHARS of a reason; a longer one (a stack trace, a
        # dump) made an answer Kafka refused, replayed from the ledger at every restart.
        # Contact details in it (an error quoting the row) are replaced first: the reason
        # is shown to the DPO and kept with the request for years (review, session 35).
        reason = redact(self.reason[:REDACT_CHARS])[:MAX_ANSWER_REASON_CHARS]
        match self.kind:
            case TaskOutcome.completed:
                return TaskCompleted(
                    **common, records_affected=self.records_affected, export=self.export
                )
            case TaskOutcome.retained:
                return TaskRetained(**common, reason=reason, categories=list(self.categories))
            case TaskOutcome.not_found:
                return NotFound(**common)
            case TaskOutcome.failed:
                return TaskFailed(**common, reason=reason, retryable=self.retryable)
        return None


class Connector:
    """Subclass, set ``system`` and implement the actions your system supports.

    Every method gets the decoded task (``task.identifiers`` is what this system knows the
    subject by, ``task.previous_identifiers`` what it knew them by before, newest first:
    a row found by an old phone or email may be theirs, or a later holder's of a
    reassigned number or address, so take it only with an owner key that is theirs
    (docs/connectors.md, "Earlier identifiers"); ``task.categories`` what
    to act on; ``task.keep`` what to keep and why) and returns an :class:`Answer`.
    Personal fields arrive in plaintext: the runner opens the task with the subject's key
    first, and encrypts the answer's (an export's location) after, so a connector never
    handles ciphertext. Methods must be idempotent in effect: a crash between doing the
    work and recording the answer re-runs the task once.
    An action you do not implement answers ``TaskFailed(retryable=False)``.

    ``hold`` / ``release`` (and ``holding``, for a connector that keeps holds across
    restarts) are how legal holds reach the system; one that leaves them as they are
    keeps nothing for a hold, and the runner says so at start (``honours_holds``).
    """

    system: ClassVar[System]

    async def erase(self, task: Erase) -> Answer:
        return _unsupported(task)

    async def restrict(self, task: Restrict) -> Answer:
        return _unsupported(task)

    async def lift_restriction(self, task: LiftRestriction) -> Answer:
        return _unsupported(task)

    async def rectify(self, task: Rectify) -> Answer:
        return _unsupported(task)

    async def export(self, task: Export) -> Answer:
        """A copy of the subject's data, published below the data map's ``export_root``:
        ``Answer.completed(export=ExportReference(...))`` with the categories the copy
        holds (``categories``: the access letter lists those for this system, else every
        category the data map gives it), or ``Answer.not_found()``. With
        ``task.portability`` (a data portability request, Art. 20), only the subject's
        data of ``task.categories``, and not found when there is none of it
        (docs/connectors.md, "Portability")."""
        return _unsupported(task)

    async def hold(self, state: LegalHoldState) -> None:
        """The whole of what legal holds keep of ``state.subject_id`` here: replace what
        you had for them. Your deletion by age must skip their records of
        ``state.categories``. ``state.identifiers`` / ``previous_identifiers`` find them as a
        task's do (same rules for earlier identifiers, but a record an earlier email or
        phone finds that names no owner is held: over-keeping is the safe side here);
        both are empty when they could not be opened (the key gone): keep what you
        held for the subject, with these categories. Find them again before each
        deletion by age: records the subject gets later are held too. Idempotent: the
        runner reads every record again at every start.

        Not implemented here: a system that deletes by age and ignores this deletes held
        data. The runner warns at start and sets ``privops_connector_holds_ignored``."""

    async def release(self, subject_id: str) -> None:
        """No legal hold keeps anything of ``subject_id`` here any more: their records
        follow their retention periods again. Idempotent (an unknown subject: nothing)."""

    async def holding(self) -> Collection[str]:
        """The subjects you keep a hold for from before this run (a connector that keeps
        holds across restarts). Once the runner has read the holds topic to its end it
        releases those the topic no longer holds: a tombstone compacted away while the
        system was down would otherwise keep them for ever. Default: none."""
        return ()

    async def preserve(self, preserved: SearchPreserved) -> None:
        """Keep what ``preserved.search`` finds (the same rows your export's search
        finds, ``privops.core.search.window`` for the day and hours) from your deletion
        by age, until ``end_preservation(preserved.request_id)``: the access request
        waits for the subject's ID, and footage deleted meanwhile could not be searched.
        Keep the details themselves only for this (they are the subject's); ``search``
        is empty when they could not be opened (the key gone): keep what you kept for
        the request. Idempotent: the runner reads every record again at every start.

        Only a system the data map marks ``searched_by_details`` is sent one. Details you
        cannot search by: keep nothing and say so in your log (never their values);
        raising has the record tried again, and all deletion by age waits meanwhile.
        Not implemented (this or ``end_preservation``): the runner calls neither, warns
        when one arrives, and counts it ``ignored``."""

    async def end_preservation(self, request_id: str) -> None:
        """The request is finished: what its search found follows your retention
        periods again. Idempotent (an unknown request: nothing)."""

    async def preserving(self) -> Collection[str]:
        """The request ids you keep a search's finds for from before this run; as
        ``holding``, the runner ends those the topic no longer has. Default: none."""
        return ()

    async def start(self) -> None:
        """Open connections; called once before the first task."""

    async def close(self) -> None:
        """Release resources; called once when the runner stops."""

    async def handle(self, task: Task) -> Answer:
        """Dispatch by record type (the runner calls this; override to wrap every action)."""
        if isinstance(task, Erase):
            return await self.erase(task)
        if isinstance(task, Restrict):
            return await self.restrict(task)
        if isinstance(task, LiftRestriction):
            return await self.lift_restriction(task)
        if isinstance(task, Rectify):
            return await self.rectify(task)
        if isinstance(task, Export):
            return await self.export(task)
        return _unsupported(task)


def honours_holds(connector: Connector) -> bool:
    """Whether ``connector`` implements both ``hold`` and ``release`` (one without the
    other keeps holds it never lifts, or lifts what it never kept)."""
    kind = type(connector)
    return kind.hold is not Connector.hold and kind.release is not Connector.release


def unpreserving(connector: Connector) -> list[str]:
    """Which of ``preserve`` and ``end_preservation`` ``connector`` leaves as they are."""
    kind = type(connector)
    methods = ("preserve", "end_preservation")
    return [name for name in methods if getattr(kind, name) is getattr(Connector, name)]


def preserves_searches(connector: Connector) -> bool:
    """Whether ``connector`` implements both ``preserve`` and ``end_preservation``."""
    return not unpreserving(connector)


def _unsupported(task: Task) -> Answer:
    """A permanent refusal: re-sending an action the system lacks can never succeed."""
    return Answer.failed(f"{task.action} is not supported by this connector", retryable=False)
