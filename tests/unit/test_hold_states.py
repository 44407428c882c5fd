"""Legal holds reach the systems holding what they keep (``fanout.hold_states``).

Before, a hold blocked only the erasures privops sent: a system deleting call recordings
after 90 days, as the data map tells it to, deleted the held ones too. Each system
holding a held category now gets the whole of what holds keep of the subject there on
its own compacted ``privacy.legal-holds.<system>`` topic, and a tombstone once nothing is
held there; no other system hears of it, and the DPO's reason never travels.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.fanout import hold_states
from privops.core.holds import LegalHold, update_holds
from privops.core.identity import merge, new_values
from privops.core.request import Out
from privops.core.topics import LEGAL_HOLDS_PREFIX, legal_holds_topic
from privops.core.vocab import Category, System
from tests.unit.test_superseded_fanout import (
    NEW_EMAIL,
    NEW_PHONE,
    NOW,
    OLD_PHONE,
    SUBJECT,
    ctx,
)

REASON = "a claim: solicitor's letter of 3 March"


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def place(hold_id: str, *categories: Category) -> r.LegalHoldPlaced:
    return r.LegalHoldPlaced(
        command_id=f"{hold_id}:place",
        request_id=hold_id,
        issued_at=NOW,
        actor="dpo",
        hold_id=hold_id,
        subject_id=SUBJECT,
        categories=list(categories),
        reason=REASON,
    )


def release(hold_id: str) -> r.LegalHoldReleased:
    return r.LegalHoldReleased(
        command_id=f"{hold_id}:release",
        request_id=hold_id,
        issued_at=NOW + timedelta(minutes=1),
        actor="dpo",
        hold_id=hold_id,
        subject_id=SUBJECT,
    )


def by_system(outs: list[Out]) -> dict[System, r.LegalHoldState | None]:
    found: dict[System, r.LegalHoldState | None] = {}
    for out in outs:
        if not out.topic.startswith(LEGAL_HOLDS_PREFIX):
            continue
        system = System(out.topic.removeprefix(LEGAL_HOLDS_PREFIX))
        assert out.key == SUBJECT
        assert out.record is None or isinstance(out.record, r.LegalHoldState)
        found[system] = out.record
    return found


def holding(dm: DataMap, category: Category) -> set[System]:
    return {s for s, spec in dm.systems.items() if category in spec.categories}


def test_a_hold_reaches_each_system_holding_its_categories_and_no_other(dm: DataMap) -> None:
    outcome = wf.on_hold(place("H-1", Category.interactions), ctx(dm))
    assert outcome.rejected is None
    assert outcome.message == (
        "hold H-1 placed; hold records written for crm, telephony (their connectors keep it"
        " from deletion by age; privops does not confirm they do)"
    )
    states = by_system(outcome.out)
    assert set(states) == holding(dm, Category.interactions) == {System.crm, System.telephony}
    telephony = states[System.telephony]
    assert telephony is not None
    assert (telephony.categories, telephony.hold_ids) == ([Category.interactions], ["H-1"])
    assert telephony.identifiers == {"phone": NEW_PHONE}
    assert telephony.previous_identifiers == {"phone": [OLD_PHONE]}
    assert telephony.updated_at == ctx(dm).now
    # The CRM never reported the subject: found by what it looks people up by.
    crm = states[System.crm]
    assert crm is not None
    assert crm.identifiers["email"] == NEW_EMAIL
    # The DPO's reason stays with privops (sealed in its holds table).
    sent = "".join(s.model_dump_json() for s in states.values() if s is not None)
    assert "solicitor" not in sent


def test_each_record_is_the_whole_state_and_the_last_release_a_tombstone(dm: DataMap) -> None:
    context = ctx(dm)
    holds: tuple[LegalHold, ...] = ()
    for cmd in (place("H-1", Category.interactions), place("H-2", Category.contact)):
        holds = update_holds(holds, cmd).holds
    both = by_system(hold_states(context, SUBJECT, holds, {Category.contact}))
    crm = both[System.crm]
    assert crm is not None
    assert (crm.categories, crm.hold_ids) == (
        [Category.contact, Category.interactions],
        ["H-1", "H-2"],
    )
    assert set(both) == holding(dm, Category.contact)

    # H-2 released: the CRM keeps what H-1 holds; orders holds no interactions.
    holds = update_holds(holds, release("H-2")).holds
    after = by_system(hold_states(context, SUBJECT, holds, {Category.contact}))
    crm = after[System.crm]
    assert crm is not None
    assert (crm.categories, crm.hold_ids) == ([Category.interactions], ["H-1"])
    assert after[System.orders] is None

    # H-1 released too: nothing is held anywhere.
    holds = update_holds(holds, release("H-1")).holds
    last = by_system(hold_states(context, SUBJECT, holds, {Category.interactions}))
    assert last == dict.fromkeys(holding(dm, Category.interactions))


def test_a_system_that_cannot_find_the_subject_gets_a_tombstone(dm: DataMap) -> None:
    """No camera reference is known: CCTV could find nothing to keep."""
    outcome = wf.on_hold(place("H-3", Category.cctv), ctx(dm))
    assert by_system(outcome.out) == {System.cctv: None}
    assert (
        outcome.message
        == "hold H-3 placed; not sent to cctv: privops knows no identifier they find the"
        " subject by; tell them by hand (it reaches them when privops learns one)"
    )


def test_a_release_through_the_workflow_tells_the_systems(dm: DataMap) -> None:
    placed = update_holds((), place("H-1", Category.interactions)).holds
    outcome = wf.on_hold(release("H-1"), dataclasses.replace(ctx(dm), holds=placed))
    assert outcome.rejected is None
    topics = [o.topic for o in outcome.out if o.topic.startswith(LEGAL_HOLDS_PREFIX)]
    assert topics == sorted(legal_holds_topic(s) for s in (System.crm, System.telephony))
    assert all(o.record is None for o in outcome.out if o.topic in topics)


def test_new_values_tells_a_new_value_from_a_later_sighting() -> None:
    before = merge(None, SUBJECT, System.crm, {"email": "a@example.com"}, NOW)
    later = merge(before, SUBJECT, System.crm, {"email": "a@example.com"}, NOW + timedelta(1))
    assert later is not before
    assert not new_values(before, later)
    assert new_values(
        before, merge(before, SUBJECT, System.crm, {"email": "b@example.com"}, NOW + timedelta(1))
    )
    assert new_values(before, merge(before, SUBJECT, System.orders, {"customer_id": "C-9"}, NOW))
    # A late event's older value is kept as an earlier one, not a new current value.
    late = merge(before, SUBJECT, System.crm, {"email": "old@example.com"}, NOW - timedelta(1))
    assert not new_values(before, late)
