"""The Art. 15 access-response manifest, assembled from the data map and export answers.

Pure: the worker calls `build_access_manifest` once every system has answered its Export
task, and sends the result (and `render_manifest_text`) on `privacy.notifications`.
Everything a subject is entitled to under Art. 15(1)-(2) comes from the data map (policy
as data): purposes with their lawful basis, categories, recipients and transfers abroad
with their safeguard, retention or its criteria, the source where it was not the subject,
the rights (including complaint to the ICO) and automated decision-making. The copy of
the data itself is the export files; the manifest only references them.

Neither output carries raw PII: the subject appears as the request id and the
pseudonymous subject ref; the raw subject id stays in the dict for routing only and is
never printed by `render_manifest_text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from privops.core.datamap import DataMap, PurposeSpec, Recipient
from privops.core.erasure import Disclosure
from privops.core.errors import DomainError
from privops.core.records import ExportReference
from privops.core.vocab import Category, System

MANIFEST_VERSION: Final = 1
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
        "article": "UK GDPR Art. 22",
        "description": (
            "Not to be subject to a decision based solely on automated processing that "
            "significantly affects you, and to ask for a person to review a decision."
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


def build_access_manifest(
    request_id: str,
    subject_id: str,
    subject_ref: str,
    datamap: DataMap,
    holdings: Mapping[System, set[Category]],
    exports: Iterable[tuple[System, ExportReference]],
    now: datetime,
    disclosures: Iterable[Disclosure] = (),
) -> dict[str, Any]:
    """The Art. 15 response for one access request, as plain JSON-able data.

    `holdings` is what each system holds on the subject (systems with no categories are
    ignored); `exports` are the systems' export answers. Purposes are those covering a
    held category in a system that holds it (or in any system when the purpose names
    none); recipients are those receiving a held category, and those the systems report
    actually disclosing the subject's data to (`disclosures`: Art. 15(1)(c), listed in
    `disclosed` with the categories and when, not the recipients' own references).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise DomainError("now must be timezone-aware")
    held_by_system = {
        system: sorted(cats, key=_category_order)
        for system, cats in sorted(holdings.items(), key=lambda kv: _system_order(kv[0]))
        if cats
    }
    held = sorted({c for cats in held_by_system.values() for c in cats}, key=_category_order)
    export_list = sorted(exports, key=lambda se: (_system_order(se[0]), se[1].location))
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
    recipients = list(datamap.recipients_of(held))
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
        "exports": [
            {
                "system": system.value,
                "location": ref.location,
                "record_count": ref.record_count,
                "checksum": ref.checksum,
                "media_type": ref.media_type,
            }
            for system, ref in export_list
        ],
        "missing_exports": [
            s.value for s in held_by_system if s not in {system for system, _ in export_list}
        ],
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
        for e in m["exports"]
    ]
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
    out: list[tuple[str, PurposeSpec]] = []
    for name, spec in datamap.purposes.items():
        systems = spec.systems or tuple(held_by_system)
        if any(set(spec.categories).intersection(held_by_system.get(s, ())) for s in systems):
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
