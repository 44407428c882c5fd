from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from privops.adapters.datamap_file import load_datamap
from privops.cli.ropa import ropa_renderables
from privops.core.datamap import DataMap
from privops.core.ropa import ropa_record
from privops.core.vocab import Category, System

REAL = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap(REAL)


@pytest.fixture(scope="module")
def rendered(dm: DataMap) -> str:
    console = Console(record=True, width=400, color_system=None)
    for renderable in ropa_renderables(dm):
        console.print(renderable)
    return console.export_text()


def test_render_names_controller_and_dpo(rendered: str) -> None:
    assert "ALL LED Limited" in rendered
    assert "ZA242691" in rendered
    assert "management@allledgroup.com" in rendered


def test_render_lists_every_system_purpose_recipient_category(dm: DataMap, rendered: str) -> None:
    for system, spec in dm.systems.items():
        assert system.value in rendered
        assert spec.task_topic in rendered
    for name, purpose in dm.purposes.items():
        assert name in rendered
        assert purpose.lawful_basis.value in rendered
    for recipient in dm.recipients:
        assert recipient.name in rendered
    for category in Category:
        assert category.value in rendered
    assert "Automated decision" in rendered
    assert "International Data Transfer Addendum" in rendered


def test_record_is_plain_json(dm: DataMap) -> None:
    record = ropa_record(dm)
    again = json.loads(json.dumps(record))
    assert again == record
    assert record["controller"]["ico_registration"] == "ZA242691"
    assert {s["name"] for s in record["systems"]} == {s.value for s in System}
    assert {p["name"] for p in record["purposes"]} == set(dm.purposes)
    assert {r["name"] for r in record["recipients"]} == {r.name for r in dm.recipients}
    assert {c["name"] for c in record["categories"]} == {c.value for c in Category}


def test_record_transfers_and_retention(dm: DataMap) -> None:
    record = ropa_record(dm)
    assert record["transfers"]
    assert all(t["safeguard"] for t in record["transfers"])
    assert all(t["country"] not in {"GB", "IE"} for t in record["transfers"])
    cctv = next(c for c in record["categories"] if c["name"] == "cctv")
    assert cctv["retention"]["period_days"] == 30
    assert cctv["rectifiable_fields"] == []
    fields = {c["name"]: c["rectifiable_fields"] for c in record["categories"]}
    assert "overdue_balance" in fields["credit"]
    assert fields["contact"] == ["name", "email", "phone", "address", "postcode"]
    assert "730 days after it concludes" in cctv["retention"]["summary"]
    credit = next(p for p in record["purposes"] if p["name"] == "credit_accounts")
    assert credit["automated_decision"]["profiling"] is True
    assert "Credit reference agencies" in credit["recipients"]
    assert "Product suppliers" not in credit["recipients"]
    support = next(p for p in record["purposes"] if p["name"] == "customer_support")
    assert support["recipients"] == []
