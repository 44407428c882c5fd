"""`privops ropa`: the Art. 30 record of processing activities, from the data map."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from privops.cli.common import console, emit_json, handled, settings
from privops.core.datamap import DataMap, load_datamap
from privops.core.ropa import ordered_categories, ropa_record


def ropa(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    datamap: Path | None = typer.Option(
        None,
        "--datamap",
        help="Data map YAML (default: PRIVOPS_DATAMAP or deploy/datamap.yaml).",
        dir_okay=False,
    ),
) -> None:
    """Print the Art. 30 record of processing (controller, purposes, retention, recipients)."""
    path = datamap if datamap is not None else settings().datamap
    dm: DataMap | None = None
    with handled():
        dm = load_datamap(path)
    assert dm is not None
    if as_json:
        emit_json(ropa_record(dm))
        return
    for renderable in ropa_renderables(dm):
        console.print(renderable)


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
    for c, spec in ordered_categories(datamap):
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
