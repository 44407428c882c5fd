"""`privops ropa`: the Art. 30 record of processing activities, from the data map."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from privops.adapters.datamap_file import load_datamap
from privops.cli.common import Json, console, emit_json, handled, settings
from privops.core.datamap import DataMap, PurposeSpec
from privops.core.ropa import ordered_categories, ropa_record
from privops.core.vocab import Category
from privops.tools.views import table


def ropa(
    as_json: Json = False,
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
    out: list[RenderableType] = [
        _header(datamap),
        _purposes(datamap),
        _categories(datamap),
        _systems(datamap),
        _recipients(datamap),
    ]
    records = datamap.request_records
    out.append(
        Text.assemble(
            ("Rights requests' own records: ", "bold"),
            f"{records.describe()} (ground: {records.ground}); their audit trail 10 years",
        )
    )
    out.append(
        Text.assemble(
            ("Systems' copies for access requests: ", "bold"),
            datamap.access_exports.describe(),
        )
    )
    security = datamap.organisation.security_measures
    if security:
        out.append(Text.assemble(("Security measures: ", "bold"), security))
    return out


def _table(title: str, columns: tuple[str, ...], *, lines: bool = True) -> Table:
    return table(*columns, title=title, show_lines=lines, expand=True)


def _header(datamap: DataMap) -> Text:
    org = datamap.organisation
    dpo = org.dpo
    return Text.assemble(
        ("Record of processing activities (UK GDPR Art. 30)\n", "bold"),
        f"Controller: {org.controller}",
        f" (company {org.company_number})" if org.company_number else "",
        f", {org.address}\n",
        f"ICO registration: {org.ico_registration}\n",
        f"DPO: {dpo.name + ', ' if dpo.name else ''}{dpo.email}, {dpo.phone}",
    )


def _purpose_notes(p: PurposeSpec) -> str:
    notes: list[str] = [p.description]
    if p.legitimate_interest:
        notes.append(f"Legitimate interest: {p.legitimate_interest}")
    if p.channels:
        notes.append("Channels: " + ", ".join(c.value for c in p.channels))
    if p.source:
        notes.append(f"Source: {p.source}")
    if portable := p.portable_categories():
        notes.append("Portable (Art. 20): " + ", ".join(c.value for c in Category if c in portable))
    if p.automated_decision:
        adm = p.automated_decision
        kind = "solely automated" if adm.solely_automated else "not solely automated"
        notes.append(f"Automated decision ({kind}): {adm.description}")
    return "\n".join(notes)


def _purposes(datamap: DataMap) -> Table:
    table = _table(
        "Purposes",
        ("purpose", "lawful basis", "data subjects", "categories", "recipients", "notes"),
    )
    for name, p in datamap.purposes.items():
        table.add_row(
            name,
            p.lawful_basis.value,
            ", ".join(p.data_subjects),
            ", ".join(c.value for c in p.categories),
            ", ".join(r.name for r in datamap.recipients_for_purpose(name)),
            _purpose_notes(p),
        )
    return table


def _categories(datamap: DataMap) -> Table:
    table = _table(
        "Categories and retention", ("category", "held in", "retention", "ground", "criteria")
    )
    for c, spec in ordered_categories(datamap):
        rule = datamap.retention.get(c)
        fields = datamap.fields_of(c)
        rectifiable = f"\nrectifiable: {', '.join(fields)}" if fields else ""
        table.add_row(
            Text.assemble((c.value, "bold"), "\n", spec.description, (rectifiable, "dim")),
            ", ".join(s.value for s in datamap.systems_holding(c)),
            rule.describe() if rule else "-",
            rule.ground if rule else "-",
            rule.criteria if rule else "-",
        )
    return table


def _systems(datamap: DataMap) -> Table:
    table = _table(
        "Systems",
        (
            "system",
            "categories",
            "portable (Art. 20)",
            "identifiers",
            "task topic",
            "SLA s",
            "retries",
        ),
        lines=False,
    )
    portable = datamap.portable()
    for s, spec in datamap.systems.items():
        table.add_row(
            s.value,
            ", ".join(c.value for c in spec.categories),
            ", ".join(c.value for c in Category if c in portable.get(s, set())) or "-",
            ", ".join(spec.identifiers),
            spec.task_topic,
            f"{spec.sla_seconds:g}",
            str(spec.retry.max_attempts),
        )
    return table


def _recipients(datamap: DataMap) -> Table:
    table = _table(
        "Recipients and transfers",
        ("recipient", "kind", "categories", "country", "transfer safeguard"),
    )
    for r in datamap.recipients:
        table.add_row(
            r.name,
            r.kind.value,
            ", ".join(c.value for c in r.categories),
            r.country,
            r.transfer_safeguard or ("-" if not r.outside_uk_eea else "MISSING"),
        )
    return table
