"""The reference connectors: the SDK's contract over a :class:`ReferenceStore`, per system.

Complete, tested examples of every action (docs/connectors.md points here), plus knobs
that make a system slow, flaky or silent so privops' tracking can be exercised. Each
also applies the legal holds on its system (``hold`` / ``release``) and deletes its rows
by age (``purge_expired``, every so often with ``purge_periodically``), never before
the runner has read the holds (``ConnectorRunner.holds_ready``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

from privops.adapters.datamap_file import load_datamap
from privops.connectors.base import Answer, Connector, TransientError
from privops.connectors.holds import stopped
from privops.connectors.reference.exports import export_place
from privops.connectors.reference.store import PurgeReport, is_busy, open_store
from privops.connectors.retention import AgeLimit, age_limits, export_limit
from privops.core.datamap import DataMap
from privops.core.records import (
    Erase,
    Export,
    LegalHoldState,
    LiftRestriction,
    Rectify,
    Restrict,
    SearchPreserved,
    Task,
)
from privops.core.vocab import Category, System

log = logging.getLogger(__name__)

PurgeHook = Callable[[System, PurgeReport], None]
"""Told what each deletion by age deleted (e.g. to print it)."""


@dataclass(frozen=True)
class Knobs:
    """Misbehaviour for tests and the demo.

    - ``delay_seconds``: every call to the connector sleeps this long first (slow system).
    - ``fail_first``: the first N *deliveries* of each task id (distinct ``task.attempt``
      values seen, counted in memory per task id) raise TransientError on every in-process
      try, so the SDK answers TaskFailed(retryable=True) N times and privops must re-send;
      delivery N+1 does the work. In-process retries of one delivery count once.
    - ``silent``: consume and drop (``Answer.no_answer()``): privops re-sends after the
      SLA and escalates after its retries.
    """

    delay_seconds: float = 0.0
    fail_first: int = 0
    silent: bool = False


class ReferenceConnector(Connector):
    """A fake system's connector: the SDK's contract over a :class:`ReferenceStore`."""

    def __init__(
        self, data_dir: Path, knobs: Knobs | None = None, *, datamap: DataMap | None = None
    ) -> None:
        self.data_dir = data_dir
        self.knobs = knobs or Knobs()
        self.store = open_store(data_dir, self.system)
        # Below the export root the data map declares (the default map unless given).
        self.exports = export_place(self.system, data_dir, datamap)
        self._datamap = datamap
        self._deliveries: dict[str, set[int]] = {}

    @cached_property
    def age_limits(self) -> dict[Category, AgeLimit]:
        """The periods from collection the data map (the default map unless given) sets
        for this system's categories: what ``purge_expired`` deletes after."""
        return age_limits(self._datamap or load_datamap(), self.system)

    @cached_property
    def export_limit(self) -> timedelta | None:
        """How long the copies made for access requests are kept (the data map's
        ``access_exports``): what ``purge_expired`` deletes them after."""
        return export_limit(self._datamap or load_datamap())

    async def handle(self, task: Task) -> Answer:
        if self.knobs.silent:
            return Answer.no_answer()
        if self.knobs.delay_seconds > 0:
            await asyncio.sleep(self.knobs.delay_seconds)
        if self.knobs.fail_first > 0:
            seen = self._deliveries.setdefault(task.task_id, set())
            seen.add(task.attempt)
            if len(seen) <= self.knobs.fail_first:
                raise TransientError("simulated transient failure")
        try:
            return await super().handle(task)
        # The store held past its lock timeout (a deletion by age holds it for its round):
        # sqlite3's error is no OSError, so the runner answered it final, failed for good,
        # and replayed that to every re-send (review, session 44). Any other database
        # error (a missing table) fails the same way each time: the runner's to report.
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise TransientError("the store is busy") from exc
            raise

    async def erase(self, task: Erase) -> Answer:
        report = await asyncio.to_thread(
            self.store.erase,
            task.identifiers,
            task.categories,
            task.keep,
            task.previous_identifiers,
        )
        if not report.found:
            return Answer.not_found()
        if report.kept:
            reason = "; ".join(f"{c.value}: {g}" for c, g in sorted(report.kept.items()))
            return Answer.retained(reason, sorted(report.kept))
        return Answer.completed(records_affected=report.deleted + report.anonymised)

    async def restrict(self, task: Restrict) -> Answer:
        if task.marketing_objection:  # absolute: no restriction lift undoes it
            marked = await asyncio.to_thread(
                self.store.object_to_marketing, task.identifiers, task.previous_identifiers
            )
            return _count(marked)
        if task.objected_purposes:  # an upheld objection: those purposes only, kept apart
            objected = await asyncio.to_thread(
                self.store.object_to_purposes,
                task.identifiers,
                task.objected_purposes,
                task.previous_identifiers,
            )
            return _count(objected)
        restricted = await asyncio.to_thread(
            self.store.set_restricted, task.identifiers, True, task.previous_identifiers
        )
        return _count(restricted)

    async def lift_restriction(self, task: LiftRestriction) -> Answer:
        lifted = await asyncio.to_thread(
            self.store.set_restricted, task.identifiers, False, task.previous_identifiers
        )
        return _count(lifted)

    async def rectify(self, task: Rectify) -> Answer:
        try:
            changed = await asyncio.to_thread(
                self.store.rectify, task.identifiers, task.changes, task.previous_identifiers
            )
        except ValueError as exc:
            return Answer.failed(str(exc), retryable=False)
        # No row holds any field asked for: this system has none of that data (not found),
        # not "completed" with nothing corrected.
        return _count(None if changed == 0 else changed)

    async def export(self, task: Export) -> Answer:
        """Raises UnsafeRequestId (a permanent failure) for an id that is not path-safe."""
        ref = await asyncio.to_thread(
            self.store.export,
            task.identifiers,
            task.request_id,
            self.exports,
            task.previous_identifiers,
            task.search,
            task.categories if task.portability else None,
        )
        if ref is None:
            return Answer.not_found()
        return Answer.completed(records_affected=ref.record_count, export=ref)

    async def hold(self, state: LegalHoldState) -> None:
        await asyncio.to_thread(
            self.store.hold,
            state.subject_id,
            state.categories,
            state.hold_ids,
            state.identifiers,
            state.previous_identifiers,
        )

    async def release(self, subject_id: str) -> None:
        await asyncio.to_thread(self.store.release, subject_id)

    async def holding(self) -> Collection[str]:
        return await asyncio.to_thread(self.store.holding)

    async def preserve(self, preserved: SearchPreserved) -> None:
        why = await asyncio.to_thread(self.store.preserve, preserved.request_id, preserved.search)
        if why is not None:  # the details are the subject's: never logged
            log.warning(
                "%s: a search's finds are not kept from deletion by age: %s", self.system, why
            )

    async def end_preservation(self, request_id: str) -> None:
        await asyncio.to_thread(self.store.end_preservation, request_id)

    async def preserving(self) -> Collection[str]:
        return await asyncio.to_thread(self.store.preserving)

    async def purge_expired(self, now: datetime | None = None) -> PurgeReport:
        """Delete what is past its period now (``ReferenceStore.purge_expired``). Call it
        only once the holds are read (``ConnectorRunner.holds_ready``)."""
        when = now or datetime.now(UTC)
        return await asyncio.to_thread(
            self.store.purge_expired, when, self.age_limits, self.export_limit
        )

    async def purge_periodically(
        self,
        every: float,
        holds_ready: asyncio.Event,
        stop: asyncio.Event,
        on_purge: PurgeHook | None = None,
    ) -> None:
        """Delete by age every ``every`` seconds until ``stop``: first once the holds are
        read, and never while ``holds_ready`` is clear (a hold record not applied yet).
        Rows of unknown age (kept for ever) are warned of when their count changes."""
        undated: dict[str, int] = {}
        while not stop.is_set():
            if not holds_ready.is_set():
                await _first_of(holds_ready, stop)
                continue
            try:
                report = await self.purge_expired()
            # A round that fails (the store locked past its timeout) deletes nothing; the
            # next one tries again. Its type only: a message may quote a row.
            except Exception as exc:  # noqa: BLE001
                log.error("%s: deletion by age failed (%s)", self.system, type(exc).__name__)
                await stopped(stop, every)
                continue
            if report.total:
                done = [f"{t} {n}" for t, n in sorted(report.deleted.items()) if n]
                done += [f"access copies {report.exports}"] if report.exports else []
                counts = ", ".join(done)
                log.info("%s: deleted by age %s", self.system, counts or "statements only")
            if report.undated != undated:
                undated = report.undated
                log.warning(
                    "%s: rows never deleted by age, their collection time missing or not a "
                    "time: %s",
                    self.system,
                    ", ".join(f"{t} {n}" for t, n in sorted(undated.items())) or "none now",
                )
            if on_purge is not None:
                on_purge(self.system, report)
            await stopped(stop, every)


async def _first_of(*events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set."""
    waits = {asyncio.create_task(event.wait()) for event in events}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _count(rows: int | None) -> Answer:
    return Answer.not_found() if rows is None else Answer.completed(records_affected=rows)


class OrdersConnector(ReferenceConnector):
    system = System.orders


class CrmConnector(ReferenceConnector):
    system = System.crm


class TelephonyConnector(ReferenceConnector):
    system = System.telephony


class MarketingConnector(ReferenceConnector):
    system = System.marketing


class WebConnector(ReferenceConnector):
    system = System.web


class CctvConnector(ReferenceConnector):
    system = System.cctv


REFERENCE_CONNECTORS: dict[System, type[ReferenceConnector]] = {
    c.system: c
    for c in (
        OrdersConnector,
        CrmConnector,
        TelephonyConnector,
        MarketingConnector,
        WebConnector,
        CctvConnector,
    )
}


def reference_connector(
    system: System, data_dir: Path, knobs: Knobs | None = None, *, datamap: DataMap | None = None
) -> ReferenceConnector:
    return REFERENCE_CONNECTORS[system](data_dir, knobs, datamap=datamap)
