"""The Art. 15 access-response manifest, assembled from the data map and export answers.

Pure: the worker calls `build_access_manifest` once every system has answered its Export
task, and sends the result (and `render_manifest_text`) on `privacy.notifications`.
Everything a subject is entitled to under Art. 15(1)-(2) comes from the data map (policy
as data): purposes with their lawful basis, categories, recipients and transfers abroad
with their safeguard, retention or its criteria, the source where it was not the subject,
the rights (including complaint to the ICO) and automated decision-making. The copy of
the data itself is the export files; the manifest only references them.

privops is itself one of the places the subject's data is held, so the manifest has a
section of its own for it (``privacy_records``, Art. 15(1) and (3)): the communication
choices privops keeps as the authoritative record (each with when, from which system,
on what basis and the system's evidence: the proof of consent of Art. 7(1)), the
subject-wide flags (an objection, TPS, a restriction, the suppression list, the cookie
choice) with theirs, the identifiers each system knows the subject by and the earlier
ones privops keeps (the only copy of a value a system has since replaced, and one
privops still uses to find the subject's older records), the facts
about accounts and payments that decide how long financial records are kept, and how
long privops keeps each of these records. Legal holds and investigations are not
listed: a hold's or an investigation's existence may be what a crime investigation
needs kept from the subject (DPA 2018 Sch. 2 para. 2), which only the DPO can judge, so
an access response of a subject under one is audited ``access_withheld`` for the DPO to
review (``fanout.finish``), and every response says that data may be kept longer while a
legal claim or an investigation needs it.

``render_manifest_text`` carries no raw identifier: the subject appears as the request
id and the pseudonymous subject ref, and the identifiers by their kind. The JSON, which
is the subject's copy, carries their identifiers (and the subject id, for routing); it
is stored and sent sealed under the subject's key (privops.core.sealing), like the rest
of the request. The identifiers are those the systems reported for the subject, as the
systems' own exports carry theirs: an identity map that joined two people (a shared
email) would show one person's to the other, as those exports would; that is an
accuracy fault of the systems' data (Art. 5(1)(d)) for the DPO to correct, not
something the letter can tell apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from privops.core.consent.model import ConsentEntry, FactKind, Marker, SubjectConsent
from privops.core.datamap import DataMap, PurposeSpec, Recipient
from privops.core.erasure import Disclosure, SubjectFacts
from privops.core.errors import DomainError
from privops.core.identity import MAX_PREVIOUS, Identifier, IdentityMap
from privops.core.records import ExportReference
from privops.core.topics import AUDIT_RETENTION_YEARS
from privops.core.vocab import Category, System

# 2: the ``privacy_records`` section (what privops itself holds on the subject) and
# ``kept_longer``; 3: ``privacy_records.rights_requests`` (their other requests on record);
# 4: the DPO's review (``exports[].redacted``, ``withheld_exports``, ``review_reason``);
# 5: ``rights_requests.listed[].objection_upheld_for`` (an upheld Art. 21(1) objection).
MANIFEST_VERSION: Final = 5
WITHHELD_GROUND: Final = (
    "it would disclose information about other people, and it is not reasonable to "
    "disclose it without their consent (UK GDPR Art. 15(4); DPA 2018 Sch. 2 para. 16); "
    "our reasons say more"
)
KEPT_LONGER: Final = (
    "Any of this data may be kept longer than the periods given while it is needed for a "
    "legal claim (UK GDPR Art. 17(3)(e)) or the investigation of a crime or an incident, "
    "and only for as long as that lasts."
)
ICO_WEBSITE: Final = "www.ico.org.uk"

RIGHTS: Final[tuple[dict[str, str], ...]] = (
    {
        "right": "access",
        "article": "UK GDPR Art. 15",
        "description": "To a copy of your personal data and the information in this letter.",
    },
    {
        "right": "rectification",
        "article": "UK GDPR Art. 16",
        "description": "To have inaccurate personal data corrected and incomplete data completed.",
    },
    {
        "right": "erasure",
        "article": "UK GDPR Art. 17",
        "description": (
            "To have your personal data erased where there is no good reason to keep it; "
            "data we must keep by law is kept for its retention period and then erased."
        ),
    },
    {
        "right": "restriction",
        "article": "UK GDPR Art. 18",
        "description": (
            "To have processing restricted (stored only) while accuracy or an objection "
            "is checked, or instead of erasure."
        ),
    },
    {
        "right": "portability",
        "article": "UK GDPR Art. 20",
        "description": (
            "To receive data you gave us under consent or contract in a machine-readable "
            "format, or have it sent to another organisation."
        ),
    },
    {
        "right": "objection",
        "article": "UK GDPR Art. 21",
        "description": (
            "To object to processing based on legitimate interests; an objection to "
            "direct marketing (and profiling for it) is always upheld."
        ),
    },
    {
        "right": "automated_decisions",
        # Art. 22 as replaced by Arts. 22A-22D (Data (Use and Access) Act 2025 s.80, in
        # force 5 February 2026): such decisions are allowed with these safeguards
        # (Art. 22C), and barred on special category data without consent or law.
        "article": "UK GDPR Arts. 22A-22D",
        "description": (
            "Where a decision that significantly affects you is based solely on automated "
            "processing: to be told of it, to make representations about it, to have a "
            "person review it, and to contest it."
        ),
    },
    {
        "right": "withdraw_consent",
        "article": "UK GDPR Art. 7(3)",
        "description": (
            "To withdraw consent at any time, without affecting processing before the withdrawal."
        ),
    },
    {
        "right": "complaint",
        "article": "UK GDPR Art. 77",
        "description": (
            "To complain to the Information Commissioner's Office (ICO), "
            f"{ICO_WEBSITE}, although we ask you to contact our DPO first."
        ),
    },
)


@dataclass(frozen=True, slots=True)
class PastRequest:
    """One rights request of the subject whose record privops keeps: what the access
    response lists of it (no reason, no task detail: the DPO's words may name others)."""

    request_id: str
    request_type: str
    received_on: date
    state: str
    closed_on: date | None = None
    # Started by privops itself (a follow-up erasure when a retention period ended).
    ours: bool = False
    # An objection's purposes the DPO upheld it for (a standing choice of the subject's,
    # as a marketing objection is among the flags; empty otherwise).
    upheld_purposes: tuple[str, ...] = ()


MAX_LISTED_REQUESTS: Final = 100
"""The newest requests an access response lists one by one; it counts every one. A
subject who sent thousands would otherwise make a response too large to send (a Kafka
record); the DPO gives the rest on request."""


@dataclass(frozen=True, slots=True)
class OwnRecords:
    """What privops itself holds on the subject: their consent state, identity map, the
    facts that decide retention (each None when privops has none) and the records of
    their other rights requests."""

    consent: SubjectConsent | None = None
    identity: IdentityMap | None = None
    facts: SubjectFacts | None = None
    requests: tuple[PastRequest, ...] = ()


@dataclass(frozen=True)
class Review:
    """What the DPO did to a response held for review (``fanout.review_systems``): the
    systems whose copy is the DPO's redacted one, those whose copy is left out, and the
    DPO's reason, told to the subject (Art. 12(4))."""

    redacted: frozenset[System] = frozenset()
    withheld: frozenset[System] = frozenset()
    reason: str | None = None
    # A portability response whose subject asked for the copies to be sent to another
    # organisation (UK GDPR Art. 20(2)): the day the DPO sent them, or why that was not
    # technically feasible.
    transmitted_on: date | None = None
    not_feasible: str | None = None


def export_entry(system: System, ref: ExportReference, review: Review) -> dict[str, Any]:
    """One copy sent to the subject, as a response's record lists it."""
    return {
        "system": system.value,
        "location": ref.location,
        "record_count": ref.record_count,
        "checksum": ref.checksum,
        "media_type": ref.media_type,
        "redacted": system in review.redacted,
    }


def build_access_manifest(
    request_id: str,
    subject_id: str,
    subject_ref: str,
    datamap: DataMap,
    holdings: Mapping[System, set[Category]],
    exports: Iterable[tuple[System, ExportReference]],
    now: datetime,
    disclosures: Iterable[Disclosure] = (),
    own: OwnRecords = OwnRecords(),
    review: Review = Review(),
) -> dict[str, Any]:
    """The Art. 15 response for one access request, as plain JSON-able data.

    `holdings` is what each system holds on the subject (systems with no categories are
    ignored); `exports` are the systems' export answers. Purposes are those covering a
    held category in a system that holds it (or in any system when the purpose names
    none); recipients are those receiving a held category, and those the systems report
    actually disclosing the subject's data to (`disclosures`: Art. 15(1)(c), listed in
    `disclosed` with the categories and when, not the recipients' own references).
    `own` is what privops itself holds (the ``privacy_records`` section); `review` what
    the DPO redacted or left out of the copy (the systems still hold that data: only the
    copy is withheld).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise DomainError("now must be timezone-aware")
    held_by_system = {
        system: sorted(cats, key=_category_order)
        for system, cats in sorted(holdings.items(), key=lambda kv: _system_order(kv[0]))
        if cats
    }
    held = sorted({c for cats in held_by_system.values() for c in cats}, key=_category_order)
    export_list = sorted(
        ((s, ref) for s, ref in exports if s not in review.withheld),
        key=lambda se: (_system_order(se[0]), se[1].location),
    )
    purposes = _purposes(datamap, held_by_system)
    by_name = {r.name: r for r in datamap.recipients}
    # Not the dated disclosures to a recipient the data map exempts from rights-request
    # notices (law enforcement): telling a subject when the police received their data
    # could prejudice an investigation (DPA 2018 Sch. 2 para. 2); it stays among the
    # recipients by category, as the data map declares it.
    disclosed = sorted(
        (
            d
            for d in disclosures
            if d.recipient not in by_name or by_name[d.recipient].notify_on_rights_requests
        ),
        key=lambda d: (d.recipient, d.first_at),
    )
    # Those receiving a held category for one of the subject's purposes: a credit
    # reference agency receives contact details, but only of those with credit accounts.
    # One exempt from rights-request notices (an authority) is listed by what it may
    # receive whatever the purposes: listed only with its purposes, a subject none of
    # them serves would learn from its name alone that their data went to it (above).
    serving = {name for name, _ in purposes}
    recipients = [
        r
        for r in datamap.recipients_of(held)
        if serving.intersection(r.purposes) or not r.notify_on_rights_requests
    ]
    recipients += [
        by_name[name]
        for name in dict.fromkeys(d.recipient for d in disclosed)
        if name in by_name and by_name[name] not in recipients
    ]
    reached = sorted({*held, *(c for d in disclosed for c in d.categories)}, key=_category_order)
    org = datamap.organisation

    return {
        "manifest_version": MANIFEST_VERSION,
        "kind": "access_response",
        "request_id": request_id,
        "subject_id": subject_id,
        "subject_ref": subject_ref,
        "generated_at": now.astimezone(UTC).isoformat(),
        "controller": {
            "name": org.controller,
            "address": org.address,
            "ico_registration": org.ico_registration,
            "dpo": org.dpo.model_dump(mode="json"),
        },
        "systems": [
            {
                "system": system.value,
                "description": datamap.systems[system].description
                if system in datamap.systems
                else "",
                "categories": [c.value for c in cats],
            }
            for system, cats in held_by_system.items()
        ],
        "categories": [_category_entry(datamap, c, held_by_system) for c in held],
        "purposes": [_purpose_entry(datamap, name, spec, held) for name, spec in purposes],
        "recipients": [_recipient_entry(r, reached) for r in recipients],
        "disclosed": [
            {
                "recipient": d.recipient,
                "categories": [c.value for c in d.categories],
                "first_at": d.first_at.astimezone(UTC).isoformat(),
                "last_at": d.last_at.astimezone(UTC).isoformat(),
            }
            for d in disclosed
        ],
        "transfers": [
            {
                "recipient": r.name,
                "country": r.country,
                "safeguard": r.transfer_safeguard,
                "categories": [c.value for c in r.categories if c in reached],
            }
            for r in recipients
            if r.outside_uk_eea
        ],
        "sources": _sources(purposes),
        "automated_decisions": [
            {
                "purpose": name,
                "solely_automated": spec.automated_decision.solely_automated,
                "profiling": spec.automated_decision.profiling,
                "description": spec.automated_decision.description,
                "logic": spec.automated_decision.logic,
                "consequences": spec.automated_decision.consequences,
            }
            for name, spec in purposes
            if spec.automated_decision is not None
        ],
        "rights": [dict(r) for r in RIGHTS],
        "complaint": {
            "authority": "Information Commissioner's Office",
            "website": ICO_WEBSITE,
        },
        "exports": [export_entry(system, ref, review) for system, ref in export_list],
        "missing_exports": [
            s.value
            for s in held_by_system
            if s not in {system for system, _ in export_list} and s not in review.withheld
        ],
        "withheld_exports": [
            {"system": s.value, "ground": WITHHELD_GROUND}
            for s in sorted(review.withheld, key=_system_order)
        ],
        "review_reason": review.reason,
        "kept_longer": KEPT_LONGER,
        "privacy_records": _privacy_records(datamap, own),
        "totals": {
            "systems": len(held_by_system),
            "categories": len(held),
            "purposes": len(purposes),
            "recipients": len(recipients),
            "exports": len(export_list),
            "records": sum(ref.record_count for _, ref in export_list),
        },
    }


def render_manifest_text(manifest: Mapping[str, Any]) -> str:
    """A plain-text, letter-like summary of a manifest (no raw subject identifiers)."""
    sections = (
        _text_header,
        _text_categories,
        _text_privacy_records,
        _text_purposes,
        _text_recipients,
        _text_sources,
        _text_automated,
        _text_exports,
        _text_rights,
    )
    lines = [line for section in sections for line in section(manifest)]
    return "\n".join(lines) + "\n"


def _text_header(m: Mapping[str, Any]) -> list[str]:
    controller, totals = m["controller"], m["totals"]
    return [
        f"Your access request {m['request_id']} (reference {m['subject_ref']})",
        f"From {controller['name']}, {controller['address']}",
        f"ICO registration {controller['ico_registration']}",
        "",
        (
            f"We hold personal data about you in {totals['systems']} system(s): "
            f"{totals['categories']} categories of data, {totals['records']} record(s) in "
            f"{totals['exports']} export file(s)."
        ),
    ]


def _text_categories(m: Mapping[str, Any]) -> list[str]:
    lines = ["", "The data we hold and how long we keep it:"]
    for cat in m["categories"]:
        lines.append(f"  - {cat['category']}: {cat['description']}")
        lines.append(f"    held in: {', '.join(cat['systems'])}")
        retention = cat.get("retention")
        if retention:
            lines.append(f"    kept: {retention['summary']}. {retention['criteria']}")
    if m.get("kept_longer"):
        lines.append(f"  {m['kept_longer']}")
    return lines


def _text_privacy_records(m: Mapping[str, Any]) -> list[str]:
    own = m.get("privacy_records")
    if not own:  # a manifest of version 1, made before the section
        return []
    lines = ["", "What our privacy system itself records about you:"]
    lines += [
        f"  - {p['purpose']} by {p['channel']}: {p['status'].replace('_', ' ')} "
        f"(basis: {p['basis'].replace('_', ' ')}; since {p['since'][:10]}, from {p['source']})"
        for p in own["preferences"]
    ] or ["  - no choices about our communications"]
    lines += [f"  - {f['description']} (since {f['since'][:10]})" for f in own["flags"]]
    if own["known_in"]:
        known = "; ".join(
            f"{k['system']} ({', '.join(k['identifier_kinds'])})" for k in own["known_in"]
        )
        lines.append(f"  - the systems that know you, and by what: {known}")
        if any(k.get("earlier") for k in own["known_in"]):
            lines.append(
                "  - and identifiers our systems knew you by before, which we keep to find "
                "your older records (listed in the attached document)"
            )
    if facts := own["retention_facts"]:
        words = [f"{name.replace('_', ' ')} {value}" for name, value in facts.items()]
        words = [w.removesuffix(" True") for w in words]
        lines.append(f"  - what decides how long financial records are kept: {'; '.join(words)}")
    lines += _text_rights_requests(own.get("rights_requests"))
    lines.append("  - how long we keep these records:")
    lines += [f"    {k['record'].replace('_', ' ')}: {k['kept']}" for k in own["kept"]]
    return lines


def _text_rights_requests(requests: Mapping[str, Any] | None) -> list[str]:
    if not requests or not requests["count"]:  # none, or a response made before the list
        return []
    lines = [f"  - your other requests to us that we keep a record of: {requests['count']}"]
    for p in requests["listed"]:
        by = " (started by us when a retention period ended)" if p["started_by"] == "us" else ""
        kind, state = p["type"].replace("_", " "), p["state"].replace("_", " ")
        now = f"{state} on {p['closed_on']}" if p["closed_on"] else state
        lines.append(f"    {p['request_id']}: {kind}{by}, received {p['received_on']}, {now}")
        if upheld := p.get("objection_upheld_for"):
            words = "; ".join(u["description"].rstrip(".") for u in upheld)
            lines.append(f"      upheld: we stopped using your data for {words}")
    if requests["count"] > len(requests["listed"]):
        lines.append(
            f"    and {requests['count'] - len(requests['listed'])} earlier ones: our DPO "
            "sends you their list on request"
        )
    return lines


def _text_purposes(m: Mapping[str, Any]) -> list[str]:
    lines = ["", "Why we use it (purposes and lawful basis):"]
    for p in m["purposes"]:
        basis = p["lawful_basis"].replace("_", " ")
        lines.append(f"  - {p['description']} Lawful basis: {basis}.")
        if p.get("legitimate_interest"):
            lines.append(f"    Our legitimate interest: {p['legitimate_interest']}")
    return lines


def _text_recipients(m: Mapping[str, Any]) -> list[str]:
    lines = ["", "Who receives it:"]
    lines += [
        f"  - {r['name']} ({r['country']}): {', '.join(r['categories'])}" for r in m["recipients"]
    ] or ["  - nobody outside our organisation"]
    if m.get("disclosed"):
        lines += ["", "Who your data was actually sent to:"]
        lines += [
            f"  - {d['recipient']}: {', '.join(d['categories'])} "
            f"({d['first_at'][:10]} to {d['last_at'][:10]})"
            for d in m["disclosed"]
        ]
    if m["transfers"]:
        lines += ["", "Transfers outside the UK/EEA and their safeguards:"]
        lines += [
            f"  - {t['recipient']} ({t['country']}): {t['safeguard']}" for t in m["transfers"]
        ]
    return lines


def _text_sources(m: Mapping[str, Any]) -> list[str]:
    if not m["sources"]:
        return []
    return ["", "Where we got data that did not come from you:"] + [
        f"  - {s['source']} (for {s['purpose']})" for s in m["sources"]
    ]


def _text_automated(m: Mapping[str, Any]) -> list[str]:
    lines = ["", "Automated decision-making and profiling:"]
    for a in m["automated_decisions"]:
        kind = "solely automated" if a["solely_automated"] else "not solely automated"
        lines.append(f"  - {a['description']} ({kind})")
        lines.append(f"    logic: {a['logic']}")
        lines.append(f"    consequences: {a['consequences']}")
    if not m["automated_decisions"]:
        lines.append("  - none")
    return lines


def _text_exports(m: Mapping[str, Any]) -> list[str]:
    lines = ["", "Your copy of the data (export files):"]
    lines += [
        f"  - {e['system']}: {e['location']} ({e['record_count']} record(s), "
        f"checksum {e['checksum']})"
        + (" (redacted to protect other people)" if e.get("redacted") else "")
        for e in m["exports"]
    ]
    lines += [
        f"  - not provided from {w['system']}: {w['ground']}" for w in m.get("withheld_exports", [])
    ]
    if m.get("review_reason"):
        lines.append(f"  Our reasons: {m['review_reason']}")
    if m.get("missing_exports"):
        lines.append(
            f"  - could not be provided from: {', '.join(m['missing_exports'])} (our Data "
            "Protection Officer is following this up and will write to you)"
        )
    return lines


def _text_rights(m: Mapping[str, Any]) -> list[str]:
    lines = ["", "Your rights:"]
    lines += [
        f"  - {r['right'].replace('_', ' ')} ({r['article']}): {r['description']}"
        for r in m["rights"]
    ]
    return [
        *lines,
        "",
        f"Questions: our Data Protection Officer, {m['controller']['dpo']['email']}.",
        f"You can complain to the {m['complaint']['authority']} at {m['complaint']['website']}.",
    ]


# --- pieces ------------------------------------------------------------------------------


def _category_order(category: Category) -> int:
    return list(Category).index(category)


def _system_order(system: System) -> int:
    return list(System).index(system)


def _purposes(
    datamap: DataMap, held_by_system: Mapping[System, list[Category]]
) -> list[tuple[str, PurposeSpec]]:
    """The purposes the subject's data serves: those with a category held in one of their
    systems (any system, for a purpose naming none) and, for one that says what makes it
    the subject's (``applies_when_held``), one of those held there too."""
    out: list[tuple[str, PurposeSpec]] = []
    for name, spec in datamap.purposes.items():
        systems = spec.systems or tuple(held_by_system)
        held = {c for s in systems for c in held_by_system.get(s, ())}
        if held.intersection(spec.categories) and (
            not spec.applies_when_held or held.intersection(spec.applies_when_held)
        ):
            out.append((name, spec))
    return out


def _category_entry(
    datamap: DataMap, category: Category, held_by_system: Mapping[System, list[Category]]
) -> dict[str, Any]:
    spec = datamap.categories.get(category)
    rule = datamap.retention.get(category)
    return {
        "category": category.value,
        "description": spec.description if spec else category.value,
        "systems": [s.value for s, cats in held_by_system.items() if category in cats],
        "retention": (
            {
                "summary": rule.describe(),
                "period_days": rule.period_days,
                "period_years": rule.period_years,
                "period_from": rule.period_from.value,
                "ground": rule.ground,
                "criteria": rule.criteria,
            }
            if rule
            else None
        ),
    }


def _purpose_entry(
    datamap: DataMap, name: str, spec: PurposeSpec, held: list[Category]
) -> dict[str, Any]:
    return {
        "name": name,
        "description": spec.description,
        "lawful_basis": spec.lawful_basis.value,
        "legitimate_interest": spec.legitimate_interest,
        "categories": [c.value for c in spec.categories if c in held],
        "recipients": [r.name for r in datamap.recipients_for_purpose(name)],
    }


def _recipient_entry(recipient: Recipient, held: list[Category]) -> dict[str, Any]:
    return {
        "name": recipient.name,
        "kind": recipient.kind.value,
        "description": recipient.description,
        "categories": [c.value for c in recipient.categories if c in held],
        "country": recipient.country,
        "outside_uk_eea": recipient.outside_uk_eea,
        "transfer_safeguard": recipient.transfer_safeguard,
    }


def _sources(purposes: list[tuple[str, PurposeSpec]]) -> list[dict[str, str]]:
    return [{"purpose": name, "source": spec.source} for name, spec in purposes if spec.source]


# --- privops' own records -----------------------------------------------------------------

FLAG_WORDS: Final[Mapping[FactKind, str]] = {
    FactKind.objected: "you objected to direct marketing (and profiling for it)",
    FactKind.opted_back_in: "you opted back in after objecting to direct marketing",
    FactKind.tps_listed: "your telephone number is on the Telephone Preference Service list",
    FactKind.tps_unlisted: "your telephone number is not on the Telephone Preference Service list",
    FactKind.tps_no_objection: (
        "you told us you do not object to our marketing calls although your number is on "
        "the Telephone Preference Service list"
    ),
    FactKind.number_changed: (
        "your telephone number changed, so an earlier Telephone Preference Service check, "
        "or your notice that you do not object to our calls, no longer applies"
    ),
    FactKind.restricted: "the use of your data is restricted: we only store it",
    FactKind.restriction_lifted: "a restriction on the use of your data was lifted",
    FactKind.suppressed: (
        "you are on our suppression list, so that we never contact you again after an erasure"
    ),
    FactKind.marketing_cookies_refused: "you refused marketing cookies",
    FactKind.marketing_cookies_accepted: "you accepted marketing cookies",
}
"""How the manifest words each subject-wide flag privops keeps (``SubjectConsent``'s
markers): every kind a marker can hold has its words (a unit test checks)."""

_FLAG_FIELDS: Final = tuple(
    name for name, spec in SubjectConsent.model_fields.items() if spec.annotation == Marker | None
)
"""The subject-wide markers of a consent state (objection, TPS, waiver, restriction,
suppression, cookies), read from the model, so a marker added there is listed too."""


def _privacy_records(datamap: DataMap, own: OwnRecords) -> dict[str, Any]:
    consent, identity, facts = own.consent, own.identity, own.facts
    entries = sorted(
        consent.entries.values() if consent else (),
        key=lambda e: (e.purpose.value, e.channel.value),
    )
    # One line a fact: a number change is kept on both the TPS screening and the waiver.
    flags = {
        (m.kind, m.event_id): m
        for name in _FLAG_FIELDS
        if (m := getattr(consent, name, None)) is not None
    }
    return {
        "description": (
            "Our privacy system's own records about you: the choices you made about our "
            "communications, the identifiers each of our systems knows you by, and how "
            "long we keep these records."
        ),
        "preferences": [_preference(e) for e in entries],
        "flags": [_flag(m) for m in sorted(flags.values(), key=lambda m: m.occurred_at)],
        "known_in": [
            _known_in(system, ids)
            for system, ids in sorted(
                (identity.systems if identity else {}).items(),
                key=lambda kv: _system_order(kv[0]),
            )
            if ids
        ],
        "retention_facts": _retention_facts(facts),
        "rights_requests": _rights_requests(datamap, own.requests),
        "kept": _own_retention(datamap),
    }


def _rights_requests(datamap: DataMap, requests: Iterable[PastRequest]) -> dict[str, Any]:
    """The subject's other requests privops keeps a record of, newest first: the record
    of a request is itself their personal data (Art. 15(1)), kept the data map's
    ``request_records`` period after it is finished. An upheld objection says the
    purposes it was upheld for, in the data map's words: a standing choice the systems
    keep, as a marketing objection is among the flags."""
    newest = sorted(requests, key=lambda p: (p.received_on, p.request_id), reverse=True)
    return {
        "count": len(newest),
        "listed": [_past_request(datamap, p) for p in newest[:MAX_LISTED_REQUESTS]],
    }


def _past_request(datamap: DataMap, p: PastRequest) -> dict[str, Any]:
    listed: dict[str, Any] = {
        "request_id": p.request_id,
        "type": p.request_type,
        "received_on": p.received_on.isoformat(),
        "state": p.state,
        "closed_on": p.closed_on.isoformat() if p.closed_on else None,
        "started_by": "us" if p.ours else "request",
    }
    if p.upheld_purposes:
        listed["objection_upheld_for"] = [
            {"purpose": name, "description": spec.description if spec else name}
            for name in p.upheld_purposes
            for spec in (datamap.purposes.get(name),)
        ]
    return listed


def _known_in(system: System, ids: Mapping[str, Identifier]) -> dict[str, Any]:
    """What ``system`` knows the subject by, and the values it knew them by before (the
    last ``MAX_PREVIOUS`` of each, newest first): a replaced value may now be only here,
    and privops still uses it (a system's old rows are found by it)."""
    return {
        "system": system.value,
        "identifier_kinds": sorted(ids),
        "identifiers": {kind: ids[kind].value for kind in sorted(ids)},
        "earlier": {
            kind: [old.value for old in ids[kind].previous]
            for kind in sorted(ids)
            if ids[kind].previous
        },
    }


def _preference(entry: ConsentEntry) -> dict[str, Any]:
    return {
        "purpose": entry.purpose.value,
        "channel": entry.channel.value,
        "status": entry.status.value,
        "basis": entry.basis.value,
        "since": entry.occurred_at.astimezone(UTC).isoformat(),
        "source": entry.source.value,
        "evidence": entry.evidence,
    }


def _flag(marker: Marker) -> dict[str, Any]:
    return {
        "flag": marker.kind.value,
        "description": FLAG_WORDS[marker.kind],
        "since": marker.occurred_at.astimezone(UTC).isoformat(),
        "source": marker.source.value,
        "evidence": marker.evidence,
    }


def _retention_facts(facts: SubjectFacts | None) -> dict[str, Any]:
    """The facts privops keeps to decide how long financial records are kept (Art.
    15(1)(d)'s criteria); investigations are left out (the module's docstring says why)."""
    if facts is None:
        return {}

    def day(at: datetime | None) -> str | None:
        return at.astimezone(UTC).date().isoformat() if at else None

    found = {
        "latest_financial_record": day(facts.latest_financial_record_at),
        "open_credit_account": facts.open_credit_account or None,
        "open_debt": facts.open_debt or None,
        "credit_closed": day(facts.credit_closed_at),
    }
    return {name: value for name, value in found.items() if value is not None}


def _own_retention(datamap: DataMap) -> list[dict[str, str]]:
    """How long privops keeps each of its records of the subject (privops' own rules,
    not a business system's: docs/crypto-shredding.md says what an erasure removes)."""
    return [
        {
            "record": "preferences",
            "kept": (
                "Your choices and the flags above are kept until your data is erased. After "
                "an erasure only the fact that you were erased is kept, so that we never "
                "contact you again."
            ),
        },
        {
            "record": "identifiers",
            "kept": (
                f"The identifiers each system knows you by, and up to {MAX_PREVIOUS} earlier "
                "ones of each, are kept until your data is erased; an erasure keeps only "
                "those of systems keeping data the law requires, for as long as they keep it."
            ),
        },
        {
            "record": "retention_facts",
            "kept": "Kept with the financial records they decide about, and erased with them.",
        },
        {
            "record": "suppression_list",
            "kept": (
                "After an erasure, a keyed hash of each of your identifiers, which cannot be "
                "turned back into the identifier, is kept indefinitely, so that we recognise "
                "you and never contact you again."
            ),
        },
        {
            "record": "rights_requests",
            "kept": (
                f"Each request's record is kept {datamap.request_records.period_days} days "
                "after the request is finished, then deleted."
            ),
            "ground": datamap.request_records.ground,
        },
        {
            "record": "audit_trail",
            "kept": (
                "A record of each step taken on your choices and requests, under a "
                f"pseudonymous reference, kept {AUDIT_RETENTION_YEARS} years."
            ),
        },
    ]
