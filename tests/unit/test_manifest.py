"""The Art. 15 access manifest: built from the real data map and export answers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core.consent.fold import apply_all
from privops.core.consent.model import ConsentFact, FactKind
from privops.core.datamap import DataMap
from privops.core.erasure import SubjectFacts
from privops.core.errors import DomainError
from privops.core.identity import merge
from privops.core.manifest import (
    FLAG_WORDS,
    ICO_WEBSITE,
    MAX_LISTED_REQUESTS,
    WITHHELD_GROUND,
    OwnRecords,
    PastRequest,
    Review,
    build_access_manifest,
    render_manifest_text,
)
from privops.core.records import ExportReference
from privops.core.vocab import Category, Channel, LawfulBasis, Purpose, System

REAL = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SUBJECT = "jane.doe@example.com"  # a PII-shaped subject id: must never reach the text
REF = "sr_0123456789abcdef01234567"


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap(REAL)


def ref(system: System, count: int) -> ExportReference:
    return ExportReference(
        location=f"file:///exports/REQ-1/{system.value}.json",
        record_count=count,
        checksum=f"sha256:{system.value}-abc",
    )


@pytest.fixture(scope="module")
def full(dm: DataMap) -> dict[str, object]:
    exports = [(s, ref(s, 2)) for s in dm.holdings() if s is not System.cctv]
    return build_access_manifest("REQ-1", SUBJECT, REF, dm, dm.holdings(), exports, NOW)


def test_the_dpos_review_redacts_and_withholds_copies_and_says_why(dm: DataMap) -> None:
    exports = [(s, ref(s, 2)) for s in dm.holdings()]
    review = Review(
        redacted=frozenset({System.telephony}),
        withheld=frozenset({System.cctv}),
        reason="Other visitors are in every frame.",
    )
    m = build_access_manifest("REQ-1", SUBJECT, REF, dm, dm.holdings(), exports, NOW, review=review)
    listed = {e["system"]: e for e in m["exports"]}
    assert "cctv" not in listed  # the copy is left out ...
    assert m["missing_exports"] == []  # ... and not told as one still to come
    assert m["withheld_exports"] == [{"system": "cctv", "ground": WITHHELD_GROUND}]
    assert [s for s, e in listed.items() if e["redacted"]] == ["telephony"]
    assert m["review_reason"] == "Other visitors are in every frame."
    assert m["totals"]["exports"] == 5
    assert any(s["system"] == "cctv" for s in m["systems"])  # cctv still holds the data
    text = render_manifest_text(m)
    assert "not provided from cctv: it would disclose information about other people" in text
    assert "(redacted to protect other people)" in text
    assert "Our reasons: Other visitors are in every frame." in text


def test_identifies_request_and_controller(full: dict[str, object]) -> None:
    assert full["request_id"] == "REQ-1"
    assert full["subject_ref"] == REF
    assert full["generated_at"] == "2026-03-02T09:30:00+00:00"
    controller = full["controller"]
    assert isinstance(controller, dict)
    assert controller["name"] == "ALL LED Limited"
    assert controller["ico_registration"] == "ZA242691"


def test_purposes_carry_lawful_basis_and_legitimate_interest(full: dict[str, object]) -> None:
    purposes = {p["name"]: p for p in full["purposes"]}  # type: ignore[attr-defined]
    assert purposes["goods_and_services"]["lawful_basis"] == "contract"
    assert purposes["customer_support"]["lawful_basis"] == "legitimate_interest"
    assert "Answering customers" in purposes["customer_support"]["legitimate_interest"]
    assert purposes["legal_obligations"]["lawful_basis"] == "legal_obligation"


def test_categories_have_retention_period_or_criteria(full: dict[str, object]) -> None:
    cats = {c["category"]: c for c in full["categories"]}  # type: ignore[attr-defined]
    assert set(cats) == {c.value for c in Category}
    assert cats["purchases"]["retention"]["period_years"] == 6  # from the financial year end
    assert "6 years" in cats["purchases"]["retention"]["criteria"]
    assert cats["contact"]["retention"]["period_days"] is None
    assert cats["contact"]["retention"]["criteria"]
    assert "orders" in cats["purchases"]["systems"]


def test_recipients_transfers_sources_and_automated_decisions(full: dict[str, object]) -> None:
    names = [r["name"] for r in full["recipients"]]  # type: ignore[attr-defined]
    assert "Credit reference agencies" in names
    transfers = full["transfers"]
    assert isinstance(transfers, list)
    assert [t["country"] for t in transfers] == ["US"]
    assert "International Data Transfer Addendum" in transfers[0]["safeguard"]
    sources = full["sources"]
    assert isinstance(sources, list)
    assert any("Credit reference agencies" in s["source"] for s in sources)
    adm = full["automated_decisions"]
    assert isinstance(adm, list)
    assert [a["purpose"] for a in adm] == ["credit_accounts"]
    assert adm[0]["solely_automated"] is False
    assert adm[0]["profiling"] is True


def test_rights_include_every_right_and_the_ico(full: dict[str, object]) -> None:
    rights = {r["right"]: r for r in full["rights"]}  # type: ignore[attr-defined]
    for right in ("access", "rectification", "erasure", "restriction", "objection", "complaint"):
        assert right in rights
    assert ICO_WEBSITE == "www.ico.org.uk"
    assert ICO_WEBSITE in rights["complaint"]["description"]
    # Art. 22 was replaced by Arts. 22A-22D (DUAA 2025 s.80, from 5 February 2026): the
    # safeguards of Art. 22C, not a right not to be subject to such a decision.
    automated = rights["automated_decisions"]
    assert automated["article"] == "UK GDPR Arts. 22A-22D"
    for safeguard in ("make representations", "review it", "contest it"):
        assert safeguard in automated["description"]
    assert full["complaint"] == {
        "authority": "Information Commissioner's Office",
        "website": "www.ico.org.uk",
    }


def test_exports_totals_and_missing(full: dict[str, object], dm: DataMap) -> None:
    exports = full["exports"]
    assert isinstance(exports, list)
    assert [e["system"] for e in exports] == ["orders", "crm", "telephony", "marketing", "web"]
    assert exports[0] == {
        "system": "orders",
        "location": "file:///exports/REQ-1/orders.json",
        "record_count": 2,
        "checksum": "sha256:orders-abc",
        "media_type": "application/json",
        "redacted": False,
    }
    assert full["missing_exports"] == ["cctv"]
    assert full["withheld_exports"] == []
    assert full["review_reason"] is None
    assert full["totals"] == {
        "systems": 6,
        "categories": 8,
        "purposes": len(dm.purposes),
        "recipients": len(dm.recipients),
        "exports": 5,
        "records": 10,
    }


def test_only_what_is_held(dm: DataMap) -> None:
    holdings = {System.cctv: {Category.cctv}, System.web: set()}
    m = build_access_manifest(
        "REQ-2", "C-9", REF, dm, holdings, [(System.cctv, ref(System.cctv, 1))], NOW
    )
    assert [p["name"] for p in m["purposes"]] == ["premises_security"]
    assert [c["category"] for c in m["categories"]] == ["cctv"]
    assert [r["name"] for r in m["recipients"]] == ["Law enforcement agencies (on valid request)"]
    assert m["recipients"][0]["categories"] == ["cctv"]
    assert m["transfers"] == []
    assert m["automated_decisions"] == []
    assert m["sources"] == []
    assert m["systems"] == [
        {
            "system": "cctv",
            "description": dm.systems[System.cctv].description,
            "categories": ["cctv"],
        }
    ]
    assert m["missing_exports"] == []


def test_nothing_held(dm: DataMap) -> None:
    m = build_access_manifest("REQ-3", "C-0", REF, dm, {}, [], NOW)
    assert m["purposes"] == []
    assert m["categories"] == []
    assert m["totals"]["records"] == 0
    assert "nobody outside" in render_manifest_text(m)


def test_naive_now_is_refused(dm: DataMap) -> None:
    with pytest.raises(DomainError):
        build_access_manifest("REQ-4", "C-1", REF, dm, {}, [], datetime(2026, 1, 1))


def test_text_is_a_letter_without_the_subject_id(full: dict[str, object]) -> None:
    text = render_manifest_text(full)
    assert SUBJECT not in text
    assert "REQ-1" in text
    assert REF in text
    assert "www.ico.org.uk" in text
    assert "sha256:orders-abc" in text
    assert "could not be provided from: cctv" in " ".join(text.split())
    assert "International Data Transfer Addendum" in text
    assert "Credit reference agencies" in text
    assert "Lawful basis: legitimate interest." in text
    assert text.endswith("\n")


def test_json_serialisable(full: dict[str, object]) -> None:
    assert json.loads(json.dumps(full)) == full


# --- what privops itself holds -----------------------------------------------------------


def consent_fact(kind: FactKind, at: datetime, event: str, **fields: object) -> ConsentFact:
    return ConsentFact(
        event_id=event,
        occurred_at=at,
        source=System.crm,
        kind=kind,
        evidence=f"form {event}",
        **fields,
    )


@pytest.fixture(scope="module")
def own() -> OwnRecords:
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)
    facts = [
        consent_fact(FactKind.granted, at, "e1", purpose=Purpose.marketing,
                     channel=Channel.email, basis=LawfulBasis.consent),
        consent_fact(FactKind.tps_listed, at.replace(month=7), "e2"),
        consent_fact(FactKind.restricted, at.replace(month=8), "e3"),
    ]  # fmt: skip
    consent, _ = apply_all(None, SUBJECT, facts)
    identity = merge(None, SUBJECT, System.orders, {"customer_id": "C-1", "email": SUBJECT}, at)
    identity = merge(identity, SUBJECT, System.telephony, {"phone": "+447700900123"}, at)
    # The systems have the subject's new number and customer number since: only privops
    # keeps the old ones.
    later = at + timedelta(days=30)
    identity = merge(identity, SUBJECT, System.telephony, {"phone": "+447700900999"}, later)
    identity = merge(identity, SUBJECT, System.orders, {"customer_id": "C-2"}, later)
    money = SubjectFacts(latest_financial_record_at=at, open_debt=True, balance_at=at)
    return OwnRecords(consent=consent, identity=identity, facts=money)


def test_privops_own_records_are_listed(dm: DataMap, own: OwnRecords) -> None:
    m = build_access_manifest("REQ-5", SUBJECT, REF, dm, {}, [], NOW, own=own)
    records = m["privacy_records"]
    assert m["manifest_version"] == 5
    assert records["preferences"] == [
        {
            "purpose": "marketing",
            "channel": "email",
            "status": "granted",
            "basis": "consent",
            "since": "2025-06-01T12:00:00+00:00",
            "source": "crm",
            "evidence": "form e1",
        }
    ]
    assert [(f["flag"], f["since"][:10], f["evidence"]) for f in records["flags"]] == [
        ("tps_listed", "2025-07-01", "form e2"),
        ("restricted", "2025-08-01", "form e3"),
    ]
    assert records["known_in"] == [
        {
            "system": "orders",
            "identifier_kinds": ["customer_id", "email"],
            "identifiers": {"customer_id": "C-2", "email": SUBJECT},
            "earlier": {"customer_id": ["C-1"]},  # the only copy left
        },
        {
            "system": "telephony",
            "identifier_kinds": ["phone"],
            "identifiers": {"phone": "+447700900999"},
            "earlier": {"phone": ["+447700900123"]},
        },
    ]
    assert records["retention_facts"] == {
        "latest_financial_record": "2025-06-01",
        "open_debt": True,
    }
    kept = {k["record"]: k for k in records["kept"]}
    assert set(kept) == {
        "preferences", "identifiers", "retention_facts", "suppression_list",
        "rights_requests", "audit_trail",
    }  # fmt: skip
    assert str(dm.request_records.period_days) in kept["rights_requests"]["kept"]
    assert "erased" in kept["preferences"]["kept"]
    assert "indefinitely" in kept["suppression_list"]["kept"]
    assert "10 years" in kept["audit_trail"]["kept"]
    assert "legal claim" in m["kept_longer"]


def test_the_letter_names_identifiers_by_kind_never_by_value(dm: DataMap, own: OwnRecords) -> None:
    # The values are in the JSON, the subject's copy, stored and sent sealed; the letter
    # is a summary of it.
    m = build_access_manifest("REQ-5", SUBJECT, REF, dm, {}, [], NOW, own=own)
    text = render_manifest_text(m)
    for value in ("C-1", "C-2", SUBJECT, "7700900123", "7700900999"):
        assert value not in text
    assert "legal claim" in text
    assert "identifiers our systems knew you by before" in " ".join(text.split())
    assert "marketing by email: granted (basis: consent; since 2025-06-01, from crm)" in text
    assert "Telephone Preference Service" in text
    assert "orders (customer_id, email); telephony (phone)" in text
    assert "latest financial record 2025-06-01; open debt" in text


def test_privops_own_records_of_a_subject_it_knows_nothing_of(dm: DataMap) -> None:
    m = build_access_manifest("REQ-6", "C-0", REF, dm, {}, [], NOW)
    records = m["privacy_records"]
    assert (records["preferences"], records["flags"], records["known_in"]) == ([], [], [])
    assert records["retention_facts"] == {}
    assert "no choices about our communications" in render_manifest_text(m)


def test_every_flag_a_marker_can_hold_has_words() -> None:
    # Every kind but a per-channel grant or withdrawal ends up on a subject-wide marker.
    assert set(FLAG_WORDS) == set(FactKind) - {FactKind.granted, FactKind.withdrawn}


def test_a_number_change_is_one_flag_not_two(dm: DataMap) -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    consent, _ = apply_all(
        None,
        SUBJECT,
        [
            consent_fact(FactKind.tps_listed, at, "e1"),
            consent_fact(FactKind.tps_no_objection, at.replace(day=2), "e2"),
            consent_fact(FactKind.number_changed, at.replace(day=3), "e3"),
        ],
    )
    assert consent is not None
    assert consent.tps
    assert consent.tps_waiver
    m = build_access_manifest("REQ-7", SUBJECT, REF, dm, {}, [], NOW, own=OwnRecords(consent))
    assert [f["flag"] for f in m["privacy_records"]["flags"]] == ["number_changed"]


def test_the_subjects_other_requests_are_listed_newest_first(dm: DataMap) -> None:
    """The record of a rights request is the subject's personal data too (Art. 15(1)):
    each listed with its type, dates and state, never its reasons."""
    earlier = (
        PastRequest("REQ-1", "erasure", date(2025, 1, 3), "partially_completed", date(2025, 1, 20)),
        PastRequest("REQ-2", "objection", date(2025, 3, 1), "in_progress"),
        PastRequest("REQ-0", "erasure", date(2024, 9, 9), "completed", date(2024, 9, 9), ours=True),
    )  # fmt: skip
    m = build_access_manifest(
        "REQ-5", SUBJECT, REF, dm, {}, [], NOW, own=OwnRecords(requests=earlier)
    )
    listed = m["privacy_records"]["rights_requests"]
    assert listed["count"] == 3
    assert [(p["request_id"], p["closed_on"], p["started_by"]) for p in listed["listed"]] == [
        ("REQ-2", None, "request"),
        ("REQ-1", "2025-01-20", "request"),
        ("REQ-0", "2024-09-09", "us"),
    ]
    text = " ".join(render_manifest_text(m).split())
    assert "your other requests to us that we keep a record of: 3" in text
    assert "REQ-1: erasure, received 2025-01-03, partially completed on 2025-01-20" in text
    assert "REQ-2: objection, received 2025-03-01, in progress" in text
    assert "REQ-0: erasure (started by us when a retention period ended)" in text


def test_an_upheld_objection_says_what_it_stopped_in_the_data_maps_words(dm: DataMap) -> None:
    """A legitimate-interest objection the DPO upheld is a standing choice of the
    subject's, as a marketing objection is among the flags (session 34's note)."""
    earlier = (
        PastRequest("REQ-3", "objection", date(2025, 3, 1), "completed", date(2025, 3, 9),
                    upheld_purposes=("customer_support",)),
        PastRequest("REQ-2", "objection", date(2025, 2, 1), "refused", date(2025, 2, 9)),
    )  # fmt: skip
    m = build_access_manifest(
        "REQ-5", SUBJECT, REF, dm, {}, [], NOW, own=OwnRecords(requests=earlier)
    )
    upheld, refused = m["privacy_records"]["rights_requests"]["listed"]
    described = dm.purposes["customer_support"].description
    assert upheld["objection_upheld_for"] == [
        {"purpose": "customer_support", "description": described}
    ]
    assert "objection_upheld_for" not in refused
    text = " ".join(render_manifest_text(m).split())
    assert f"upheld: we stopped using your data for {described.rstrip('.')}" in text
    assert text.count("upheld:") == 1


def test_a_subject_with_very_many_requests_gets_a_response_that_can_be_sent(dm: DataMap) -> None:
    many = tuple(
        PastRequest(f"REQ-{i:05}", "access", date(2020, 1, 1) + timedelta(days=i), "completed")
        for i in range(MAX_LISTED_REQUESTS + 7)
    )
    m = build_access_manifest("REQ-X", SUBJECT, REF, dm, {}, [], NOW, own=OwnRecords(requests=many))
    listed = m["privacy_records"]["rights_requests"]
    assert listed["count"] == MAX_LISTED_REQUESTS + 7
    assert len(listed["listed"]) == MAX_LISTED_REQUESTS
    assert listed["listed"][0]["request_id"] == f"REQ-{MAX_LISTED_REQUESTS + 6:05}"  # newest
    assert "and 7 earlier ones" in render_manifest_text(m)


def test_no_other_requests_no_line_in_the_letter(dm: DataMap) -> None:
    m = build_access_manifest("REQ-6", SUBJECT, REF, dm, {}, [], NOW)
    assert m["privacy_records"]["rights_requests"] == {"count": 0, "listed": []}
    assert "other requests to us" not in render_manifest_text(m)
