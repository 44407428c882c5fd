"""The Art. 30(1) record of processing activities, generated from the data map.

`ropa_record` is a plain dict (for `privops ropa --json` and DSAR manifests); the CLI
renders the same record's sources as tables (`privops.cli.ropa`).
"""

from __future__ import annotations

from typing import Any

from privops.core.datamap import CategorySpec, DataMap
from privops.core.vocab import Category


def ropa_record(datamap: DataMap) -> dict[str, Any]:
    org = datamap.organisation
    portable = datamap.portable()
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
                # What a portability request asks for (Art. 20; PurposeSpec.portable).
                "portable": [c.value for c in Category if c in p.portable_categories()],
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
                # What `privops request rectify --set` may correct (Art. 16).
                "rectifiable_fields": list(datamap.fields_of(c)),
            }
            for c, spec in ordered_categories(datamap)
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
                # What a portability request asks it for (Art. 20; DataMap.portable).
                "portable": [c.value for c in Category if c in portable.get(s, set())],
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
        # privops' own processing: its record of each rights request (workflow.expires_on).
        "request_records": {
            "period_days": datamap.request_records.period_days,
            "ground": datamap.request_records.ground,
            "retention": datamap.request_records.describe(),
        },
        # The systems' copies for access requests (privops.connectors.retention).
        "access_exports": {
            "period_days": datamap.access_exports.period_days,
            "retention": datamap.access_exports.describe(),
        },
        "security_measures": org.security_measures,
    }


def ordered_categories(datamap: DataMap) -> list[tuple[Category, CategorySpec]]:
    return [(c, datamap.categories[c]) for c in Category if c in datamap.categories]


def _retention_entry(datamap: DataMap, category: Category) -> dict[str, Any] | None:
    rule = datamap.retention.get(category)
    if rule is None:
        return None
    return {
        "summary": rule.describe(),
        "period_days": rule.period_days,
        "period_years": rule.period_years,
        "period_from": rule.period_from.value,
        "ground": rule.ground,
        "criteria": rule.criteria,
    }
