"""What an access request's search details find is kept from deletion by age while the
request is open (``records.SearchPreserved`` on privacy.legal-holds.<system>).

CCTV is deleted after 30 days; a visitor's ID or a clarification can take longer than
what is left of them. Before, the search went out only once the ID was verified, and
found nothing where the footage had been."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Collection
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from privops.connectors.base import preserves_searches
from privops.connectors.metrics import metric_value
from privops.connectors.reference import (
    CctvConnector,
    exported_file,
    seed_customers,
    seed_stores,
)
from privops.connectors.reference.store import open_store, store_path
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.clock import UK
from privops.core.fieldcrypt import check_subject_id
from privops.core.topics import legal_holds_topic, preservation_key, preserved_request
from privops.core.vocab import RequestState, RequestType, System
from tests.unit.test_access_search import DETAILS, _clip_search, _found
from tests.unit.test_connector_holds import (
    ANN,
    NOW,
    TEL,
    Following,
    Recording,
    Topic,
    runner_over,
    sealed,
    state,
)
from tests.unit.test_connector_sealing import KeyService
from tests.unit.test_workflow import (
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    submit,
)

S = RequestState
CCTV_HOLDS = legal_holds_topic(System.cctv)
KEY = preservation_key("R-1")


@pytest.fixture
def stranger(ctx: wf.Context) -> wf.Context:  # noqa: F811
    return dataclasses.replace(ctx, identity=None, known_subject=False)


def _preservations(outcome: wf.Outcome) -> list[Any]:
    return [o for o in outcome.out if o.topic.startswith("privacy.legal-holds.")]


# --- the worker: told when the request is received, ended when it is finished -------------------


def test_a_search_waiting_for_id_is_preserved_at_once(stranger: wf.Context) -> None:
    outcome = wf.on_command(
        None, submit(RequestType.access, verified=False, search=DETAILS), stranger
    )
    rec = outcome.record
    assert rec is not None
    assert rec.state is S.identity_unverified
    assert not [o for o in outcome.out if isinstance(o.record, r.Task)]  # no search yet
    (told,) = _preservations(outcome)
    assert (told.topic, told.key) == (CCTV_HOLDS, KEY)
    assert isinstance(told.record, r.SearchPreserved)
    assert (told.record.request_id, told.record.subject_id) == ("R-1", rec.subject_id)
    assert (told.record.system, told.record.search) == (System.cctv, DETAILS)
    assert rec.preserved == [System.cctv]
    steps = {a.action: a for a in outcome.audit}
    assert steps["search_preserved"].after == "cctv"
    assert not any(v in f"{a.after} {a.reason}" for a in outcome.audit for v in DETAILS.values())


@pytest.mark.parametrize(
    "close",
    [
        pytest.param(lambda: command(r.RequestCancelled, reason="withdrawn"), id="cancelled"),
        pytest.param(
            lambda: command(r.RequestRefused, reason="excessive", ground="excessive"), id="refused"
        ),
    ],
)
def test_the_preservation_ends_when_the_request_is_finished(
    stranger: wf.Context, close: Any
) -> None:
    opened = wf.on_command(
        None, submit(RequestType.access, verified=False, search=DETAILS), stranger
    )
    assert opened.record is not None
    outcome = wf.on_command(opened.record, close(), stranger)
    rec = outcome.record
    assert rec is not None
    assert not rec.open
    (ended,) = _preservations(outcome)
    assert (ended.topic, ended.key, ended.record) == (CCTV_HOLDS, KEY, None)
    assert rec.preserved == []
    assert "search_released" in [a.action for a in outcome.audit]


def test_the_preservation_ends_when_the_request_is_completed(stranger: wf.Context) -> None:
    """The usual end: the footage reviewed, the response approved."""
    held = _found(stranger)
    assert held.preserved == [System.cctv]
    approved = command(r.AccessResponseApproved, not_subject=[System.cctv])
    outcome = wf.on_command(held, approved, stranger)
    assert outcome.record is not None
    assert outcome.record.state is S.completed
    (ended,) = _preservations(outcome)
    assert (ended.topic, ended.key, ended.record) == (CCTV_HOLDS, KEY, None)


def test_the_preservation_outlives_the_identity_check(stranger: wf.Context) -> None:
    """Verified, the request goes on to search: the footage stays kept until it is
    finished, and nothing is said to the systems again."""
    opened = wf.on_command(
        None, submit(RequestType.access, verified=False, search=DETAILS), stranger
    )
    assert opened.record is not None
    verified = command(r.IdentityVerified, verified_on=opened.record.received_on)
    outcome = wf.on_command(opened.record, verified, stranger)
    assert outcome.record is not None
    assert outcome.record.open
    assert _preservations(outcome) == []
    assert outcome.record.preserved == [System.cctv]


def test_a_request_without_search_details_preserves_nothing(ctx: wf.Context) -> None:  # noqa: F811
    outcome = wf.on_command(None, submit(RequestType.access, verified=False), ctx)
    assert outcome.record is not None
    assert _preservations(outcome) == []
    assert "preserved" not in outcome.record.model_dump(mode="json")  # a rollback reads it


def test_a_preservation_key_is_no_subjects() -> None:
    """A request's tombstone can never release a subject's legal holds: no subject id
    can be a preservation key."""
    with pytest.raises(ValueError, match="printable"):
        check_subject_id(preservation_key("R-1"))
    assert preserved_request(KEY) == "R-1"
    assert preserved_request("R-1") is None
    assert preserved_request("search") is None


# --- the connector runner: told to the connector ----------------------------------------


def preserved(request_id: str = "R-1", system: System = TEL, **kw: Any) -> r.SearchPreserved:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "subject_id": "visitor-1",
        "system": system,
        "search": DETAILS,
        "updated_at": NOW,
    }
    return r.SearchPreserved(**{**fields, **kw})


class Preserving(Recording):
    """Telephony standing in for a searched system: records preservations too."""

    def __init__(self, preserved_before: Collection[str] = (), **kw: Any) -> None:
        super().__init__(**kw)
        self.preserved_before = list(preserved_before)

    async def preserve(self, preserved: r.SearchPreserved) -> None:
        self.told.append(("preserve", preserved))

    async def end_preservation(self, request_id: str) -> None:
        self.told.append(("end", request_id))

    async def preserving(self) -> Collection[str]:
        return self.preserved_before


def _said(connector: Recording) -> list[tuple[str, str]]:
    return [
        (kind, told if isinstance(told, str) else getattr(told, "request_id", told.subject_id))
        for kind, told in connector.told
    ]


async def test_a_preservation_reaches_the_connector_opened_and_its_tombstone_ends_it() -> None:
    service, topic = KeyService(), Topic()
    # R-1 was preserved before this run too: the topic still has it, so it is not ended.
    connector = Preserving(preserved_before=["R-GONE", "R-1"], kept_before=[ANN])
    counted = {"system": "telephony", "outcome": "preserved"}
    before = metric_value("privops_connector_hold_records_total", **counted)
    topic.put(0, preservation_key("R-1"), sealed(service, preserved("R-1")))  # type: ignore[arg-type]
    topic.put(1, preservation_key("R-2"), sealed(service, preserved("R-2")))  # type: ignore[arg-type]
    topic.put(1, preservation_key("R-2"), None)
    topic.put(0, ANN, sealed(service, state(ANN)))
    assert topic.records[b"v0"].search["location"] != DETAILS["location"]  # sealed
    runner = runner_over(connector, topic, service.reader())

    async with Following(runner, connector) as following:
        assert following.told_when_ready is not None
    told = _said(connector)
    assert told[-1] == ("end", "R-GONE")  # preserved before, no longer on the topic
    assert sorted(told[:-1]) == [
        ("end", "R-2"),
        ("hold", ANN),
        ("preserve", "R-1"),
        ("preserve", "R-2"),
    ]
    assert told.index(("preserve", "R-2")) < told.index(("end", "R-2"))
    first = next(p for kind, p in connector.told if kind == "preserve")
    assert first.search == DETAILS  # opened
    assert runner.holds.preserved == {"R-1"}
    # A request's tombstone released no subject, nor a subject's any request.
    assert [k for k, _ in connector.told].count("release") == 0
    assert runner.holds.held == {ANN}
    assert metric_value("privops_connector_hold_records_total", **counted) == before + 2
    assert ("end", "R-1") not in _said(connector)  # still on the topic: kept


async def test_details_that_never_open_still_keep_what_was_kept() -> None:
    service, topic, connector = KeyService(), Topic(), Preserving()
    record = sealed(service, preserved())  # type: ignore[arg-type]
    service.shred("visitor-1")
    topic.put(0, KEY, record)
    runner = runner_over(connector, topic, service.reader())

    async with Following(runner, connector):
        pass
    ((kind, told),) = connector.told
    assert kind == "preserve"
    assert told.search == {}


async def test_records_that_do_not_fit_their_key_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, topic, connector = KeyService(), Topic(), Preserving()
    topic.put(0, KEY, sealed(service, state(ANN)))  # a hold under a request's key
    topic.put(0, ANN, sealed(service, preserved()))  # type: ignore[arg-type]  # and the reverse
    topic.put(1, preservation_key("R-9"), sealed(service, preserved("R-1")))  # type: ignore[arg-type]
    topic.put(1, KEY, sealed(service, preserved(system=System.cctv)))  # type: ignore[arg-type]
    runner = runner_over(connector, topic, service.reader())

    with caplog.at_level(logging.WARNING):
        async with Following(runner, connector):
            pass
    assert connector.told == []
    assert caplog.text.count("skipped") == 4
    assert DETAILS["location"] not in caplog.text


class HoldsOnly(Recording):
    """A connector that applies legal holds and knows nothing of preservation."""


class PreservesOnly(Recording):
    """One that would preserve and never end it: it must be told neither."""

    async def preserve(self, preserved: r.SearchPreserved) -> None:
        self.told.append(("preserve", preserved))


async def test_a_connector_that_cannot_preserve_is_named_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, topic, connector = KeyService(), Topic(), HoldsOnly()
    assert not preserves_searches(connector)
    assert preserves_searches(CctvConnector(Path("/nonexistent")))
    topic.put(0, KEY, sealed(service, preserved()))  # type: ignore[arg-type]
    topic.put(1, preservation_key("R-2"), sealed(service, preserved("R-2")))  # type: ignore[arg-type]
    runner = runner_over(connector, topic, service.reader())

    with caplog.at_level(logging.WARNING):
        async with Following(runner, connector):
            pass
    assert caplog.text.count("does not implement preserve and end_preservation") == 1
    assert connector.told == []


async def test_a_connector_that_would_only_preserve_is_told_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Told to preserve and never to end it, it would keep the footage for ever."""
    service, topic, connector = KeyService(), Topic(), PreservesOnly()
    assert not preserves_searches(connector)
    topic.put(0, KEY, sealed(service, preserved()))  # type: ignore[arg-type]
    topic.put(0, KEY, None)
    runner = runner_over(connector, topic, service.reader())

    with caplog.at_level(logging.WARNING):
        async with Following(runner, connector):
            pass
    assert connector.told == []
    assert "does not implement end_preservation:" in caplog.text


# --- the reference CCTV system: deletion by age keeps what the search finds -------------


@pytest.fixture
def footage(tmp_path: Path) -> tuple[Path, Any]:
    customers = seed_customers(24, anchor=date(2026, 3, 2))
    seed_stores(tmp_path, customers)
    daytime = [
        c
        for person in customers
        for c in person.clips
        if 2 <= c.captured_at.astimezone(UK).hour <= 21 and c.investigation_id is None
    ]
    return tmp_path, daytime


def _clip_ids(data_dir: Path) -> set[str]:
    with closing(sqlite3.connect(store_path(data_dir, System.cctv))) as db:
        return {row[0] for row in db.execute("SELECT clip_id FROM clips")}


def _clip(data_dir: Path, clip_id: str, at: datetime, site: str, camera: str) -> None:
    """A clip filed under no one, as a camera records a passer-by."""
    with closing(sqlite3.connect(store_path(data_dir, System.cctv))) as db, db:
        db.execute(
            "INSERT INTO clips (clip_id, camera, site, captured_at, footage_uri)"
            " VALUES (?, ?, ?, ?, ?)",
            (clip_id, camera, site, at.isoformat(), f"footage/{clip_id}.mp4"),
        )


def _purge(data_dir: Path, days: int) -> Any:
    """Deletion by age ``days`` from now: every seeded clip is past its 30 days (the
    fixture's clips are under no investigation, the system's own hold)."""
    connector = CctvConnector(data_dir)
    return asyncio.run(connector.purge_expired(datetime.now(UTC) + timedelta(days=days)))


def test_deletion_by_age_keeps_what_an_open_search_finds(footage: tuple[Path, Any]) -> None:
    data_dir, clips = footage
    clip = clips[0]
    other = next(c for c in clips if c.captured_at.date() != clip.captured_at.date())
    _clip(data_dir, "X-ELSEWHERE", clip.captured_at, "Leeds warehouse", "CAM-9 roof")
    _clip(data_dir, "X-LATER", clip.captured_at + timedelta(hours=2), clip.site, clip.camera)
    store = open_store(data_dir, System.cctv)
    assert store.preserve("R-1", _clip_search(clip.captured_at, clip.site)) is None
    assert store.preserving() == ["R-1"]

    _purge(data_dir, 400)
    left = _clip_ids(data_dir)
    assert clip.clip_id in left  # found by the search: kept
    # Deleted by age as before: another day; the same time at another place; the same
    # place at another time.
    assert not {other.clip_id, "X-ELSEWHERE", "X-LATER"} & left
    found = _found_by_search(data_dir, _clip_search(clip.captured_at, clip.site))
    assert clip.clip_id in found

    assert store.end_preservation("R-1") == 1
    _purge(data_dir, 400)
    # What the preservation kept is exactly what the export's search finds (the rest
    # left is under the system's own hold: open investigations).
    assert left - _clip_ids(data_dir) == found


def _found_by_search(data_dir: Path, details: dict[str, str]) -> set[str]:
    task = r.Export(
        task_id="T-1",
        request_id="R-1",
        subject_id="visitor-1",
        system=System.cctv,
        issued_at=NOW,
        identifiers={},
        search=details,
    )
    answered = asyncio.run(CctvConnector(data_dir).handle(task))
    assert answered.export is not None
    path = exported_file(data_dir, answered.export.location)
    assert path is not None
    rows = json.loads(path.read_text())["found_by_search"]["clips"]["rows"]
    return {row["clip_id"] for row in rows}


def test_a_visit_past_midnight_is_found_and_kept(footage: tuple[Path, Any]) -> None:
    """Hours that end before they start run on into the next day, for the export's
    search and the preservation alike (review, session 37)."""
    data_dir, clips = footage
    day = clips[0].captured_at.astimezone(UK).date()
    late = datetime.combine(day + timedelta(days=1), datetime.min.time(), UK) + timedelta(
        minutes=40
    )
    _clip(data_dir, "X-NIGHT", late.astimezone(UTC), "Braintree depot", "CAM-03 loading bay")
    details = {"date": day.isoformat(), "times": "23:30-01:00", "location": "Braintree"}
    assert "X-NIGHT" in _found_by_search(data_dir, details)
    store = open_store(data_dir, System.cctv)
    assert store.preserve("R-1", details) is None
    _purge(data_dir, 400)
    assert "X-NIGHT" in _clip_ids(data_dir)


def test_details_that_did_not_open_keep_what_was_kept(footage: tuple[Path, Any]) -> None:
    data_dir, clips = footage
    store = open_store(data_dir, System.cctv)
    store.preserve("R-1", _clip_search(clips[0].captured_at, clips[0].site))
    store.preserve("R-1", {})
    _purge(data_dir, 400)
    assert clips[0].clip_id in _clip_ids(data_dir)


def test_what_cannot_be_kept_is_said_and_never_holds_deletion_back(tmp_path: Path) -> None:
    """A preservation the store cannot apply is told, naming no detail: raised, it would
    be tried again for ever with every deletion by age waiting (review, session 37)."""
    seed_stores(tmp_path, seed_customers(2, anchor=date(2026, 3, 2)))
    cctv = open_store(tmp_path, System.cctv)
    why = cctv.preserve("R-1", {"location": "Leeds counter"})
    assert why is not None
    assert "cannot be searched by" in why
    assert "Leeds" not in why
    telephony = open_store(tmp_path, System.telephony)
    assert telephony.preserve("R-1", DETAILS) == "this system has no table searched by details"
    assert (cctv.preserving(), telephony.preserving()) == ([], [])


def test_any_number_of_open_searches_is_one_deletion_by_age(footage: tuple[Path, Any]) -> None:
    """Each open search was a condition of its own: about 900 made the statement deeper
    than SQLite parses, and CCTV's deletion by age failed every round (review, session
    37)."""
    data_dir, clips = footage
    clip = clips[0]
    store = open_store(data_dir, System.cctv)
    wide = {**_clip_search(clip.captured_at, clip.site), "location": "x" * 280 + " " + clip.site}
    for n in range(1_500):
        assert store.preserve(f"R-{n}", wide if n % 2 else DETAILS) is None
    _purge(data_dir, 400)
    assert clip.clip_id in _clip_ids(data_dir)
