"""The Art. 30(1) record of processing activities, generated from the data map.

Two views of the same record: `ropa_record` is a plain dict (for `privops ropa --json`
and DSAR manifests) and `ropa_renderables` is a list of rich tables for the terminal.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from privops.datamap import CategorySpec, DataMap
from privops.vocab import Category


def ropa_record(datamap: DataMap) -> dict[str, Any]:
    org = datamap.organisation
    return {
        "controller": {
            "name": org.controller,
            "company_number": org.company_number,
            "address": org.address,
            "ico_registration": org.ico_registration,
        },
        "dpo": org.dpo.model_dump(mode="json"),
        "purposes": [
            {
                "name": name,
                "description": p.description,
                "lawful_basis": p.lawful_basis.value,
                "legitimate_interest": p.legitimate_interest,
                "categories": [c.value for c in p.categories],
                "data_subjects": list(p.data_subjects),
                "channels": [c.value for c in p.channels],
                "systems": [s.value for s in p.systems],
                "source": p.source,
                "automated_decision": (
                    p.automated_decision.model_dump(mode="json") if p.automated_decision else None
                ),
                "recipients": [r.name for r in datamap.recipients_for_purpose(name)],
            }
            for name, p in datamap.purposes.items()
        ],
        "categories": [
            {
                "name": c.value,
                "description": spec.description,
                "systems": [s.value for s in datamap.systems_holding(c)],
                "retention": _retention_entry(datamap, c),
            }
            for c, spec in _ordered_categories(datamap)
        ],
        "systems": [
            {
                "name": s.value,
                "description": spec.description,
                "categories": [c.value for c in spec.categories],
                "identifiers": list(spec.identifiers),
                "task_topic": spec.task_topic,
                "sla_seconds": spec.sla_seconds,
                "retry": spec.retry.model_dump(mode="json"),
            }
            for s, spec in datamap.systems.items()
        ],
        "recipients": [
            {
                "name": r.name,
                "kind": r.kind.value,
                "description": r.description,
                "categories": [c.value for c in r.categories],
                "purposes": list(r.purposes),
                "country": r.country,
                "outside_uk_eea": r.outside_uk_eea,
                "transfer_safeguard": r.transfer_safeguard,
            }
            for r in datamap.recipients
        ],
        "transfers": [
            {"recipient": r.name, "country": r.country, "safeguard": r.transfer_safeguard}
            for r in datamap.recipients
            if r.outside_uk_eea
        ],
        "security_measures": org.security_measures,
    }


def ropa_renderables(datamap: DataMap) -> list[RenderableType]:
    org = datamap.organisation
    dpo = org.dpo
    header = Text.assemble(
        ("Record of processing activities (UK GDPR Art. 30)\n", "bold"),
        f"Controller: {org.controller}",
        f" (company {org.company_number})" if org.company_number else "",
        f", {org.address}\n",
        f"ICO registration: {org.ico_registration}\n",
        f"DPO: {dpo.name + ', ' if dpo.name else ''}{dpo.email}, {dpo.phone}",
    )

    purposes = Table(title="Purposes", show_lines=True, expand=True)
    for col in ("purpose", "lawful basis", "data subjects", "categories", "recipients", "notes"):
        purposes.add_column(col)
    for name, p in datamap.purposes.items():
        notes: list[str] = [p.description]
        if p.legitimate_interest:
            notes.append(f"Legitimate interest: {p.legitimate_interest}")
        if p.channels:
            notes.append("Channels: " + ", ".join(c.value for c in p.channels))
        if p.source:
            notes.append(f"Source: {p.source}")
        if p.automated_decision:
            adm = p.automated_decision
            kind = "solely automated" if adm.solely_automated else "not solely automated"
            notes.append(f"Automated decision ({kind}): {adm.description}")
        purposes.add_row(
            name,
            p.lawful_basis.value,
            ", ".join(p.data_subjects),
            ", ".join(c.value for c in p.categories),
            ", ".join(r.name for r in datamap.recipients_for_purpose(name)),
            "\n".join(notes),
        )

    categories = Table(title="Categories and retention", show_lines=True, expand=True)
    for col in ("category", "held in", "retention", "ground", "criteria"):
        categories.add_column(col)
    for c, spec in _ordered_categories(datamap):
        rule = datamap.retention.get(c)
        categories.add_row(
            Text.assemble((c.value, "bold"), "\n", spec.description),
            ", ".join(s.value for s in datamap.systems_holding(c)),
            rule.describe() if rule else "-",
            rule.ground if rule else "-",
            rule.criteria if rule else "-",
        )

    systems = Table(title="Systems", expand=True)
    for col in ("system", "categories", "identifiers", "task topic", "SLA s", "retries"):
        systems.add_column(col)
    for s, sspec in datamap.systems.items():
        systems.add_row(
            s.value,
            ", ".join(c.value for c in sspec.categories),
            ", ".join(sspec.identifiers),
            sspec.task_topic,
            f"{sspec.sla_seconds:g}",
            str(sspec.retry.max_attempts),
        )

    recipients = Table(title="Recipients and transfers", show_lines=True, expand=True)
    for col in ("recipient", "kind", "categories", "country", "transfer safeguard"):
        recipients.add_column(col)
    for r in datamap.recipients:
        recipients.add_row(
            r.name,
            r.kind.value,
            ", ".join(c.value for c in r.categories),
            r.country,
            r.transfer_safeguard or ("-" if not r.outside_uk_eea else "MISSING"),
        )

    out: list[RenderableType] = [header, purposes, categories, systems, recipients]
    if org.security_measures:
        out.append(Text.assemble(("Security measures: ", "bold"), org.security_measures))
    return out


def _ordered_categories(datamap: DataMap) -> list[tuple[Category, CategorySpec]]:
    return [(c, datamap.categories[c]) for c in Category if c in datamap.categories]


def _retention_entry(datamap: DataMap, category: Category) -> dict[str, Any] | None:
    rule = datamap.retention.get(category)
    if rule is None:
        return None
    return {
        "summary": rule.describe(),
        "period_days": rule.period_days,
        "period_from": rule.period_from.value,
        "ground": rule.ground,
        "criteria": rule.criteria,
    }
