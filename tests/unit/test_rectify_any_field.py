"""Rectification of any field the data map lists, and completion by a supplementary
statement (UK GDPR Art. 16), told to the recipients that received the data (Art. 19).

The privacy notice: "Where information held about you is inaccurate or incomplete, you
may request its rectification or completion". Before, only five contact fields could be
corrected: a wrong overdue balance or default, which the credit reference agencies are
told of, could not be, nor could any data be completed by a statement.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from privops.cli.request.submit import parse_changes, parse_statements
from privops.connectors.reference import (
    CrmConnector,
    FakeCustomer,
    OrdersConnector,
    exported_file,
    open_store,
    seed_customers,
    seed_stores,
)
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.amounts import parse_pounds
from privops.core.datamap import DataMap, parse_datamap
from privops.core.vocab import Category, RequestState, RequestType, System, TaskAction
from tests.unit.test_reference_stores import ANCHOR, FINANCIAL, task_of
from tests.unit.test_workflow import (
    DISCLOSED,
    NOW,
    TODAY,
    answer_all,
    at,
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    of_type,
    start,
    submit,
)

C = Category
CRA = "Credit reference agencies"
STATEMENT = "The 2025 default was disputed with Acme Lighting and withdrawn on 3 March"


def _outcome(ctx: wf.Context, changes: dict[str, str]) -> wf.Outcome:  # noqa: F811
    outcome = wf.on_command(
        None,
        submit(RequestType.rectification, rectification=changes),
        at(ctx, NOW, facts=DISCLOSED),
    )
    assert outcome.rejected is None, outcome.message
    return outcome


def _no_value_in_audit_or_answer(outcome: wf.Outcome, *values: str) -> None:
    said = [outcome.message or ""]
    said += [f"{s.action} {s.before} {s.after} {s.reason}" for s in outcome.audit]
    for value in values:
        assert not any(value in text for text in said), said


# --- the workflow ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{"overdue_balance": "987.65"}, {"statement:credit": STATEMENT}],
    ids=["field", "statement"],
)
def test_credit_data_is_corrected_where_held_and_told_to_the_agencies(
    ctx: wf.Context,  # noqa: F811
    changes: dict[str, str],
) -> None:
    outcome = _outcome(ctx, changes)
    rectifies = of_type(outcome, r.Rectify)
    # Only the orders system holds credit data.
    assert [(t.system, t.categories, t.changes) for t in rectifies] == [
        (System.orders, [C.credit], changes)
    ]
    notes = of_type(outcome, r.RecipientNotification)
    # The agency that received credit data, with what it needs to correct its copy; not
    # the payment processor, which received payment data only.
    assert [(n.recipient, n.action, n.categories, n.changes) for n in notes] == [
        (CRA, TaskAction.rectify, [C.credit], changes)
    ]
    _no_value_in_audit_or_answer(outcome, *changes.values())


def test_each_system_is_sent_only_the_changes_of_what_it_holds(ctx: wf.Context) -> None:  # noqa: F811
    changes = {
        "email": "ann.new@example.com",
        "overdue_balance": "0",
        "statement:credit": STATEMENT,
    }
    outcome = _outcome(ctx, changes)
    sent = {t.system: t for t in of_type(outcome, r.Rectify)}
    assert sent[System.orders].changes == changes
    assert sent[System.orders].categories == [C.contact, C.credit]
    # The CRM holds contact data, not credit: it is not sent the balance or the statement.
    assert sent[System.crm].changes == {"email": "ann.new@example.com"}
    assert sent[System.crm].categories == [C.contact]
    (note,) = of_type(outcome, r.RecipientNotification)
    assert note.recipient == CRA
    assert note.categories == [C.contact, C.credit]
    assert note.changes == changes


def test_a_statement_done_everywhere_tells_the_subject_it_was_done(ctx: wf.Context) -> None:  # noqa: F811
    rec = start(RequestType.rectification, ctx, rectification={"statement:credit": STATEMENT})
    rec, last = answer_all(rec, ctx)
    assert rec.state is RequestState.completed
    (note,) = of_type(last, r.SubjectNotification)
    assert note.message.startswith("We corrected your personal data.")
    assert STATEMENT not in note.message


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"shoe_size": "9"}, "got ['shoe_size']"),
        ({"statement:shoes": "x"}, "got ['statement:shoes']"),
        # A key that is no name may be a value put in the wrong place: not repeated.
        ({"ann@example.com": "x"}, "got ['(not a name)']"),
        ({}, "got none"),
    ],
)
def test_an_unknown_field_is_refused_with_the_fields_allowed(
    ctx: wf.Context,  # noqa: F811
    changes: dict[str, str],
    said: str,
) -> None:
    outcome = wf.on_command(None, submit(RequestType.rectification, rectification=changes), ctx)
    assert outcome.rejected == "invalid_command"
    assert outcome.record is None
    message = outcome.message or ""
    assert "'overdue_balance', 'default_status'" in message
    assert "statement:<category>" in message
    assert said in message
    assert "ann@example.com" not in message


def test_an_empty_statement_is_refused(ctx: wf.Context) -> None:  # noqa: F811
    changes = {"statement:credit": "  "}
    outcome = wf.on_command(None, submit(RequestType.rectification, rectification=changes), ctx)
    assert outcome.rejected == "invalid_command"
    assert outcome.message == "the statement:credit is empty: give its text"


def test_a_field_the_data_map_no_longer_lists_is_not_sent(ctx: wf.Context, dm: DataMap) -> None:  # noqa: F811
    """Accepted, then the data map changed before identity was verified: the field names
    nothing now, and is audited as not sent (by name, never its value)."""
    changes = {"overdue_balance": "0", "email": "ann.new@example.com"}
    rec = start(RequestType.rectification, ctx, rectification=changes, identity_verified_on=None)
    text = dm.model_dump(mode="json")
    text["categories"]["credit"].pop("fields")
    narrower = dataclasses.replace(ctx, datamap=parse_datamap(json.dumps(text)))
    outcome = wf.on_command(rec, command(r.IdentityVerified, verified_on=TODAY), narrower)
    assert outcome.rejected is None, outcome.message
    sent = {t.system: t.changes for t in of_type(outcome, r.Rectify)}
    assert sent[System.orders] == {"email": "ann.new@example.com"}
    assert any("no longer lists them: overdue_balance" in (s.reason or "") for s in outcome.audit)
    _no_value_in_audit_or_answer(outcome, "ann.new@example.com")


# --- the reference systems ---------------------------------------------------------------------


@pytest.fixture
def customers() -> list[FakeCustomer]:
    return seed_customers(8, anchor=ANCHOR)


@pytest.fixture
def data_dir(tmp_path: Path, customers: list[FakeCustomer]) -> Path:
    seed_stores(tmp_path, customers)
    return tmp_path


def _debtor(customers: list[FakeCustomer]) -> FakeCustomer:
    c = customers[0]  # CUST-0001: an open credit account with an overdue balance
    assert c.credit is not None
    assert c.credit.overdue_pence > 0
    return c


async def test_orders_corrects_a_credit_account(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    c = _debtor(customers)
    changes = {"overdue_balance": "0", "default_status": "settled", "credit_limit": "£1,250.50"}
    task = task_of(r.Rectify, c, System.orders, changes=changes)
    answer = await OrdersConnector(data_dir).rectify(task)
    assert answer.kind == "completed"
    (account,) = open_store(data_dir, System.orders).rows(c.identifiers(System.orders))[
        "credit_accounts"
    ]
    assert account["overdue_pence"] == 0
    assert account["status"] == "settled"
    assert account["credit_limit_pence"] == 125050

    bad = task.model_copy(update={"changes": {"overdue_balance": "nought point 12"}})
    failed = await OrdersConnector(data_dir).rectify(bad)
    assert failed.kind == "failed"
    assert not failed.retryable
    assert "overdue_balance is not an amount in pounds" in (failed.reason or "")
    assert "nought" not in (failed.reason or "")


async def test_a_statement_is_recorded_exported_and_erased_with_its_category(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    c = _debtor(customers)
    ids = c.identifiers(System.orders)
    store = open_store(data_dir, System.orders)
    connector = OrdersConnector(data_dir)
    task = task_of(r.Rectify, c, System.orders, changes={"statement:credit": STATEMENT})
    assert (await connector.rectify(task)).kind == "completed"
    # A re-sent task records it once, and is still done.
    assert (await connector.rectify(task)).kind == "completed"
    assert [(s["category"], s["statement"]) for s in store.statements(ids)] == [
        ("credit", STATEMENT)
    ]

    exported = await connector.export(task_of(r.Export, c, System.orders))
    assert exported.export is not None
    path = exported_file(data_dir, exported.export.location)
    assert path is not None
    document = json.loads(path.read_text())
    assert [s["statement"] for s in document["supplementary_statements"]] == [STATEMENT]
    rows = sum(len(t["rows"]) for t in document["tables"].values())
    assert document["record_count"] == rows + 1

    # Kept with the credit data it completes; erased with it.
    keep = [r.Retention(category=C.credit, ground=FINANCIAL)]
    await connector.erase(task_of(r.Erase, c, System.orders, categories=[C.contact], keep=keep))
    assert store.statements({"customer_id": c.subject_id})
    await connector.erase(task_of(r.Erase, c, System.orders, categories=[C.credit]))
    assert store.statements({"customer_id": c.subject_id}) == []


async def test_a_statement_about_data_a_system_does_not_hold_is_not_found(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    c = _debtor(customers)
    task = task_of(r.Rectify, c, System.crm, changes={"statement:credit": STATEMENT})
    assert (await CrmConnector(data_dir).rectify(task)).kind == "not_found"
    assert open_store(data_dir, System.crm).statements(c.identifiers(System.crm)) == []


# --- the CLI -----------------------------------------------------------------------------------


def test_the_cli_parses_statements_as_rectification_keys() -> None:
    assert parse_statements([f" Credit ={STATEMENT} "], ["contact", "credit"]) == {
        "statement:credit": STATEMENT
    }
    assert parse_changes(["overdue_balance=0"]) == {"overdue_balance": "0"}


# --- the third review's findings (session 27) --------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"overdue_balance": "twelve quid"}, "overdue_balance is not an amount"),
        ({"credit_limit": "-5000"}, "credit_limit is a negative amount"),
        ({"credit_limit": "1e40"}, "credit_limit is not an amount"),
        ({"credit_limit": "2000000000"}, "credit_limit is an amount out of range"),
        ({"delivery_phone": "call me"}, "delivery_phone is not a valid phone number"),
        ({"statement:credit": "x" * 4_001}, "at most 4000"),
    ],
)
def test_a_value_no_system_could_take_is_refused_before_anyone_is_told(
    ctx: wf.Context,  # noqa: F811
    changes: dict[str, str],
    said: str,
) -> None:
    """Before, an amount was checked only by the system, after the credit reference
    agencies' notice had gone out with "twelve quid"; and a 170 KB statement made a
    request record over Kafka's 1 MB."""
    outcome = wf.on_command(
        None, submit(RequestType.rectification, rectification=changes), at(ctx, NOW)
    )
    assert outcome.rejected == "invalid_command"
    assert said in (outcome.message or "")
    assert "twelve" not in (outcome.message or "")
    assert not of_type(outcome, r.RecipientNotification)


def test_a_balance_may_be_in_credit() -> None:
    assert parse_pounds("-£20.50", signed=True) == -2050
    assert parse_pounds("£1,250.50") == 125050
    with pytest.raises(ValueError, match="negative"):
        parse_pounds("-1")


def test_a_rectification_no_system_holds_tells_the_subject_nothing_was_corrected(
    ctx: wf.Context,  # noqa: F811
    dm: DataMap,  # noqa: F811
) -> None:
    """Every key names nothing the data map lists any more: no task, and the subject is
    not told "We corrected your personal data." (third review)."""
    rec = start(
        RequestType.rectification,
        ctx,
        rectification={"overdue_balance": "0"},
        identity_verified_on=None,
    )
    text = dm.model_dump(mode="json")
    text["categories"]["credit"].pop("fields")
    narrower = dataclasses.replace(ctx, datamap=parse_datamap(json.dumps(text)))
    outcome = wf.on_command(rec, command(r.IdentityVerified, verified_on=TODAY), narrower)
    assert not of_type(outcome, r.Rectify)
    (notice,) = of_type(outcome, r.SubjectNotification)
    assert "corrected" not in notice.message
    assert "hold none" in notice.message


async def test_a_statement_about_a_category_the_subject_has_no_data_of_is_not_found(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    """Orders holds credit accounts, but not this customer's: a credit statement has
    nothing to complete (before, it was recorded, and the subject told "corrected")."""
    c = next(c for c in customers if c.credit is None)
    task = task_of(r.Rectify, c, System.orders, changes={"statement:credit": STATEMENT})
    assert (await OrdersConnector(data_dir).rectify(task)).kind == "not_found"
    assert open_store(data_dir, System.orders).statements(c.identifiers(System.orders)) == []


def test_the_subjects_own_lead_under_her_current_email_is_hers(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    """A CRM contact with no customer number (a web enquiry before she was a customer)
    under her current email names no one else: taken with her customer rows (third
    review: the owner check of current values left it)."""
    ann = customers[0]
    store = open_store(data_dir, System.crm)
    with sqlite3.connect(store.path) as db:
        db.execute(
            "INSERT INTO contacts (contact_id, customer_id, name, email, phone, address,"
            " created_at) VALUES ('CRM-LEAD-1', NULL, ?, ?, NULL, NULL, '2025-01-01')",
            (ann.name, ann.email),
        )
    assert "CRM-LEAD-1" in store.resolve(ann.identifiers(System.crm))
