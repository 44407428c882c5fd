from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pytest

from privops.adapters.datamap_file import default_datamap_path, load_datamap
from privops.core.datamap import (
    DEFAULT_CONTACT_FIELDS,
    DataMap,
    Grant,
    InvestigationHold,
    RetentionAnchor,
    RetentionCondition,
    parse_datamap,
)
from privops.core.errors import ConfigError
from privops.core.vocab import Category, System

REAL = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap(REAL)


def test_real_datamap_loads_with_every_system_and_category(dm: DataMap) -> None:
    assert set(dm.systems) == set(System)
    assert set(dm.categories) == set(Category)
    assert set(dm.retention) == set(Category)
    assert dm.organisation.ico_registration == "ZA242691"


def test_task_topic_defaults_to_system_name(dm: DataMap) -> None:
    for system, spec in dm.systems.items():
        assert spec.task_topic == f"privacy.tasks.{system}"
        assert spec.retry.max_attempts == 3
        assert 0 < spec.sla_seconds <= 30


def test_queries(dm: DataMap) -> None:
    assert dm.systems_holding(Category.cctv) == [System.cctv]
    assert dm.systems_holding(Category.interactions) == [System.crm, System.telephony]
    assert dm.categories_of(System.orders) == [
        Category.contact,
        Category.payment,
        Category.purchases,
        Category.credit,
    ]
    names = {r.name for r in dm.recipients_of([Category.credit])}
    assert "Credit reference agencies" in names
    assert "Product suppliers" not in names
    assert dm.recipients_of([Category.web]) == []


def test_retention_rules_from_the_notice(dm: DataMap) -> None:
    purchases = dm.retention_for(Category.purchases)
    assert purchases.overrides_erasure
    # 6 years from the end of the financial year (issue 14 point 11), not 2,192 days from
    # the invoice date.
    assert (purchases.period_years, purchases.period_days) == (6, None)
    assert purchases.period_from is RetentionAnchor.end_of_financial_year
    assert dm.organisation.financial_year_end == "03-31"
    assert purchases.describe() == (
        "6 years from the end of the financial year of the latest financial record; "
        "and while an account or debt is open"
    )
    assert purchases.ground.startswith("legal_obligation")
    assert dm.retention_for(Category.credit).condition is (
        RetentionCondition.while_account_or_debt_open
    )
    cctv = dm.retention_for(Category.cctv)
    assert cctv.period_days == 30
    assert cctv.condition == InvestigationHold(investigation_hold_plus_days=730)
    assert dm.retention_for(Category.web).period_days == 395


def test_transfers_outside_uk_eea_have_safeguards(dm: DataMap) -> None:
    abroad = [r for r in dm.recipients if r.outside_uk_eea]
    assert abroad
    assert all(r.transfer_safeguard for r in abroad)


def test_credit_purpose_declares_automated_decision_and_source(dm: DataMap) -> None:
    credit = dm.purposes["credit_accounts"]
    assert credit.automated_decision is not None
    assert credit.source is not None
    assert "Credit reference" in credit.source


def test_every_system_declares_its_own_export_root(dm: DataMap) -> None:
    roots = {system: spec.export_root for system, spec in dm.systems.items()}
    assert roots == {s: f"https://exports.allled.example/dsar/{s.value}/" for s in System}


def test_export_root_is_optional_for_a_system() -> None:
    text = _broken("    export_root: https://exports.allled.example/dsar/web/\n", "")
    assert parse_datamap(text).systems[System.web].export_root is None


def test_a_purpose_applies_only_when_one_of_its_own_categories_is_held() -> None:
    text = _broken("    applies_when_held: [credit]\n", "    applies_when_held: [cctv]\n")
    with pytest.raises(ConfigError) as info:
        parse_datamap(text)
    assert "purposes.credit_accounts" in str(info.value)
    assert "applies_when_held: cctv is not among the purpose's categories" in str(info.value)


def test_a_system_searched_by_details_needs_an_export_root() -> None:
    text = _broken("    export_root: https://exports.allled.example/dsar/cctv/\n", "")
    with pytest.raises(ConfigError) as info:
        parse_datamap(text)
    assert "systems.cctv" in str(info.value)
    assert (
        "searched_by_details: a system searched for an access request needs an export_root"
        in str(info.value)
    )


@pytest.mark.parametrize(
    ("other", "root"),
    [
        pytest.param("orders", "https://exports.allled.example/dsar/orders/", id="same-root"),
        pytest.param("orders", "https://exports.allled.example/dsar/orders/crm/", id="below"),
        pytest.param("orders", "https://exports.allled.example/dsar/", id="above"),
    ],
)
def test_export_roots_must_not_overlap(other: str, root: str) -> None:
    old = "    export_root: https://exports.allled.example/dsar/crm/\n"
    text = _broken(old, f"    export_root: {root}\n")
    with pytest.raises(ConfigError) as info:
        parse_datamap(text)
    line = REAL.read_text()[: REAL.read_text().index(old)].count("\n") + 1
    assert f"systems.crm.export_root (line {line}): overlaps {other}'s" in str(info.value)


def test_retry_backoff(dm: DataMap) -> None:
    retry = dm.systems[System.orders].retry
    assert [retry.delay_after(n) for n in (1, 2, 3)] == [5, 10, 20]


def test_default_path_and_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PRIVOPS_DATAMAP", raising=False)
    assert default_datamap_path() == REAL
    monkeypatch.setenv("PRIVOPS_DATAMAP", str(tmp_path / "x.yaml"))
    assert default_datamap_path() == tmp_path / "x.yaml"


def _broken(old: str, new: str) -> str:
    text = REAL.read_text()
    assert old in text
    return text.replace(old, new, 1)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        (
            "retry: {max_attempts: 3, backoff_seconds: 5, backoff_multiplier: 2}\n  crm:",
            "retry: {max_attempts: 0, backoff_seconds: 5, backoff_multiplier: 2}\n  crm:",
            "systems.orders.retry.max_attempts",
            "max_attempts: 0",
        ),
        ("  telephony:\n", "  telefony:\n", "systems.telefony", "telefony:"),
        ("    sla_seconds: 30\n", "    sla_seconds: soon\n", "systems.cctv.sla_seconds", "soon"),
        (
            "    identifiers: [camera_ref]\n",
            "    identifiers: [camera_ref]\n    colour: blue\n",
            "systems.cctv.colour",
            "colour: blue",
        ),
        (
            "    categories: [cctv]\n",
            "    categories: [cctv, biometrics]\n",
            "systems.cctv.categories[1]",
            "biometrics",
        ),
        (
            "    country: US\n    transfer_safeguard: >-\n",
            "    country: US\n    transfer_safegurd: >-\n",
            "recipients[6].transfer_safegurd",
            "transfer_safegurd",
        ),
        (
            "    purposes: [business_intelligence]\n    country: GB\n",
            "    purposes: [business_intelligence]\n    country: US\n",
            "recipients[3]",
            "name: Product suppliers",
        ),
        (
            "export_root: https://exports.allled.example/dsar/cctv/",
            "export_root: https://root@evil.example/dsar/cctv/",
            "systems.cctv.export_root",
            "root@evil.example",
        ),
        (
            "export_root: https://exports.allled.example/dsar/cctv/",
            "export_root: https://exports.allled.example/dsar/cctv",
            "systems.cctv.export_root",
            "allled.example/dsar/cctv",
        ),
        (
            "export_root: https://exports.allled.example/dsar/cctv/",
            "export_root: /var/lib/exports/cctv/",
            "systems.cctv.export_root",
            "/var/lib/exports/cctv/",
        ),
        (
            "  ico_registration: ZA242691\n",
            "",
            "organisation.ico_registration",
            "organisation:",
        ),
        (
            "    grants: [consent, marketing_cookies]\n",
            "    grants: [consent, cookies]\n",
            "systems.web.grants[1]",
            "grants: [consent, cookies]",
        ),
        (
            'financial_year_end: "03-31"',
            'financial_year_end: "31/03"',
            "organisation.financial_year_end",
            "31/03",
        ),
        (
            'financial_year_end: "03-31"',
            'financial_year_end: "04-31"',
            "organisation.financial_year_end",
            "04-31",
        ),
        (
            'financial_year_end: "03-31"',
            'financial_year_end: "02-29"',
            "organisation.financial_year_end",
            "02-29",
        ),
        (
            "    fields: [credit_limit,",
            "    fields: [Credit-Limit,",
            "categories.credit.fields[0]",
            "Credit-Limit",
        ),
        (
            "    fields: [delivery_name, delivery_address, delivery_phone]\n",
            "    fields: [delivery_name, delivery_address, delivery_phone, delivery_name]\n",
            "categories.purchases.fields[3]",
            "delivery_phone, delivery_name]",
        ),
    ],
)
def test_broken_yaml_names_field_and_line(
    tmp_path: Path, old: str, new: str, field: str, needle: str
) -> None:
    text = _broken(old, new)
    path = tmp_path / "datamap.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_datamap(path)
    message = str(info.value)
    assert f"{field} (line {_line_of(text, needle)})" in message, message


def test_reference_to_undeclared_category_names_field_and_line() -> None:
    text = _broken(
        "  web:\n    description: Cookies",
        "  webb:\n    description: Cookies",
    )
    with pytest.raises(ConfigError) as info:
        parse_datamap(text)
    assert "categories.webb" in str(info.value)
    assert f"(line {_line_of(text, 'webb:')})" in str(info.value)


def test_recipient_purpose_must_exist() -> None:
    text = _broken("    purposes: [debt_recovery]\n", "    purposes: [debt_recovry]\n")
    with pytest.raises(ConfigError) as info:
        parse_datamap(text)
    line = _line_of(text, "debt_recovry")
    assert f"recipients[2].purposes[0] (line {line}): purpose debt_recovry" in str(info.value)


def test_cross_reference_error_points_at_the_using_line() -> None:
    text = _broken("    systems: [orders, crm, web]\n", "    systems: [orders, crm, wep]\n")
    with pytest.raises(ConfigError, match=r"purposes\.goods_and_services\.systems\[2\]"):
        parse_datamap(text)


def test_missing_retention_rule_is_reported() -> None:
    text = _broken(
        "  interactions:\n    period_days: 90\n",
        "  interactionz:\n    period_days: 90\n",
    )
    with pytest.raises(ConfigError, match=r"retention\.interactionz"):
        parse_datamap(text)


def test_period_in_days_and_years_is_ambiguous() -> None:
    text = _broken("    period_years: 6\n", "    period_years: 6\n    period_days: 2192\n")
    with pytest.raises(ConfigError, match=r"retention\.purchases .*not both"):
        parse_datamap(text)


def test_financial_year_anchor_needs_the_year_end() -> None:
    text = _broken('  financial_year_end: "03-31"\n', "")
    with pytest.raises(ConfigError) as info:
        parse_datamap(text)
    assert "retention.purchases.period_from" in str(info.value)
    assert "organisation.financial_year_end" in str(info.value)


@pytest.mark.parametrize(
    ("year_end", "day", "end"),
    [
        pytest.param("03-31", date(2020, 4, 1), date(2021, 3, 31), id="first-day-of-year"),
        pytest.param("03-31", date(2020, 3, 31), date(2020, 3, 31), id="last-day-of-year"),
        pytest.param("12-31", date(2020, 1, 1), date(2020, 12, 31), id="calendar-year"),
        pytest.param("02-28", date(2024, 2, 29), date(2025, 2, 28), id="leap-day"),
    ],
)
def test_financial_year_end_of(dm: DataMap, year_end: str, day: date, end: date) -> None:
    organisation = dm.organisation.model_copy(update={"financial_year_end": year_end})
    assert organisation.financial_year_end_of(day) == end


def test_financial_year_end_of_without_a_year_end(dm: DataMap) -> None:
    organisation = dm.organisation.model_copy(update={"financial_year_end": None})
    with pytest.raises(ConfigError, match="financial_year_end"):
        organisation.financial_year_end_of(date(2020, 1, 1))


def test_duplicate_key_is_an_error() -> None:
    text = _broken(
        "  ico_registration: ZA242691\n", "  ico_registration: A\n  ico_registration: B\n"
    )
    with pytest.raises(
        ConfigError, match=r"organisation\.ico_registration \(line \d+\): duplicate"
    ):
        parse_datamap(text)


def test_invalid_yaml_syntax_names_line() -> None:
    with pytest.raises(ConfigError, match=r"line 3: invalid YAML"):
        parse_datamap("organisation:\n  controller: [unclosed\n")


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_datamap(tmp_path / "absent.yaml")


def test_a_file_not_in_utf8_is_a_config_error_naming_its_line(tmp_path: Path) -> None:
    """Saved as Windows-1252 ("Café"), it was a traceback (review, session 43)."""
    path = tmp_path / "datamap.yaml"
    path.write_bytes(b"organisation:\n  controller: Caf\xe9 Ltd\n")
    with pytest.raises(ConfigError, match=r"datamap\.yaml, line 2: not UTF-8 \(byte 0xe9\)"):
        load_datamap(path)


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        parse_datamap("- a\n- b\n")


# --- rectifiable fields ------------------------------------------------------------------------


def test_rectifiable_fields_are_the_data_maps(dm: DataMap) -> None:
    fields = dm.rectifiable_fields()
    assert fields["overdue_balance"] is Category.credit
    assert fields["default_status"] is Category.credit
    assert fields["delivery_address"] is Category.purchases
    assert [f for f, c in fields.items() if c is Category.contact] == list(DEFAULT_CONTACT_FIELDS)
    assert dm.fields_of(Category.cctv) == ()
    assert dm.rectified_category("statement:credit") is Category.credit
    assert dm.rectified_category("statement:shoes") is None
    assert dm.rectified_category("shoe_size") is None


def test_without_fields_contact_keeps_its_five_and_nothing_else_is_rectifiable() -> None:
    text = REAL.read_text()
    bare = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("fields:"))
    dm = parse_datamap(bare)
    assert dm.rectifiable_fields() == dict.fromkeys(DEFAULT_CONTACT_FIELDS, Category.contact)


def test_a_field_in_two_categories_is_refused_naming_its_path() -> None:
    text = _broken(
        "    fields: [delivery_name, delivery_address, delivery_phone]\n",
        "    fields: [delivery_name, delivery_address, delivery_phone, overdue_balance]\n",
    )
    with pytest.raises(ConfigError) as info:
        parse_datamap(text)
    # Reported where it is listed the second time (credit follows purchases in the file).
    line = _line_of(text, "fields: [credit_limit,")
    assert (
        f"categories.credit.fields[2] (line {line}): field overdue_balance is already "
        "purchases's: a field belongs to one category"
    ) in str(info.value)


def test_a_default_contact_field_listed_elsewhere_is_refused() -> None:
    text = REAL.read_text().replace("    fields: [name, email, phone, address, postcode]\n", "")
    text = text.replace("fields: [credit_limit,", "fields: [email, credit_limit,", 1)
    with pytest.raises(ConfigError) as info:
        parse_datamap(text)
    message = str(info.value)
    assert "categories.credit.fields[0]" in message
    assert "field email is already contact's (its default fields" in message


def test_grants_are_the_data_maps_or_those_a_systems_categories_imply(dm: DataMap) -> None:
    """Which permissions to contact each system's events may record (from 0.45): the
    shipped map says it for every system; one that says nothing gets what its categories
    imply, and ``[]`` grants none."""
    assert {s: set(spec.may_grant) for s, spec in dm.systems.items()} == {
        System.orders: {Grant.consent, Grant.soft_opt_in},
        System.crm: {Grant.consent, Grant.tps_waiver},
        System.telephony: set(),
        System.marketing: {Grant.consent, Grant.tps_screening, Grant.tps_waiver},
        System.web: {Grant.consent, Grant.marketing_cookies},
        System.cctv: set(),
    }
    implied = {s: spec.model_copy(update={"grants": None}) for s, spec in dm.systems.items()}
    assert {s: set(spec.may_grant) for s, spec in implied.items()} == {
        System.orders: {Grant.consent, Grant.soft_opt_in},
        System.crm: {Grant.consent, Grant.tps_screening, Grant.tps_waiver},
        System.telephony: set(),
        System.marketing: {Grant.consent, Grant.tps_screening, Grant.tps_waiver},
        System.web: {Grant.consent, Grant.marketing_cookies},
        System.cctv: set(),
    }


def test_a_grant_listed_twice_is_named(tmp_path: Path) -> None:
    path = tmp_path / "datamap.yaml"
    path.write_text(
        _broken("    grants: [consent, marketing_cookies]\n", "    grants: [consent, consent]\n")
    )
    with pytest.raises(ConfigError, match=r"systems\.web \(line \d+\): .*grants: duplicate grant"):
        load_datamap(path)


def test_the_worker_says_at_start_what_each_system_may_record(
    dm: DataMap, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrader whose data map has no grants sees what the defaults leave out."""
    from streams.startup import log_grants

    web = dm.systems[System.web].model_copy(update={"grants": None})
    implied = dm.model_copy(update={"systems": {**dm.systems, System.web: web}})
    with caplog.at_level(logging.INFO, logger="streams.startup"):
        log_grants(implied)
        log_grants(dm)
    # Logging is not set up yet at start: only a warning shows, so an implied grant warns.
    (warned, listed) = caplog.records
    assert (warned.levelno, listed.levelno) == (logging.WARNING, logging.INFO)
    said = warned.getMessage()
    assert "list them under each system" in said
    assert "orders: consent, soft_opt_in;" in said
    assert "telephony: none;" in said
    assert "web: consent, marketing_cookies (implied by its categories)" in said
