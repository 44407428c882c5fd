"""The workflow agent's context says whether the subject is erased (their consent state's
suppression, or for one with none here, the suppression list), and a later request about
an erased subject asks only the systems the identity map still names.

After an erasure that kept data, privops' copies of the subject are sealed under the kept
category's retained key, which only a system holding that category may open. Before, an
access request or a new erasure about the erased subject also asked the systems privops
inferred from the kept identifiers (the CRM and the marketing list by the email, the
website by the customer number): tasks they could never open, retried and escalated
until the request breached (review, session 27).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.core import consent as rules
from privops.core import records as r
from privops.core.facts import directive_fact
from privops.core.identity import IdentityMap, merge
from privops.core.vocab import RequestType, System
from streams.audit import ref
from streams.tables import consent, identities, suppression
from tests.agents.conftest import Outbox, Sent
from tests.agents.signers import trust
from tests.agents.test_command_answers import NOW, Driver, submit
from tests.agents.test_workflow_agent import SUBJECT

# What the erasure kept: orders' identifiers (its invoices are kept six years).
KEPT = {"customer_id": "C-1", "email": "ann@example.com"}
# What a subject not erased, known to orders by the same, is asked at besides.
INFERRED = {System.crm, System.marketing, System.web}


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The workflow agent trusts the test key (tests.agents.signers) for `dpo`."""
    return trust(monkeypatch, tmp_path)


@pytest.fixture
async def driver(serde: Serde, outbox: Outbox) -> AsyncIterator[Driver]:
    kept: IdentityMap = merge(None, SUBJECT, System.orders, KEPT, NOW - timedelta(days=40))
    identities.data[SUBJECT] = kept.model_dump(mode="json")
    async with workflow.test_context() as agent:
        yield Driver(agent, serde, outbox)


def suppress_subject() -> None:
    """The subject's consent state as the ingest agent leaves it after their erasure."""
    directive = r.SubjectDirective(
        directive_id="d-erased",
        subject_id=SUBJECT,
        request_id="R-erased",
        kind="suppressed",
        occurred_at=NOW - timedelta(days=40),
    )
    state, _ = rules.apply_all(None, SUBJECT, [directive_fact(directive)])
    assert state is not None
    assert state.suppressed
    consent.data[SUBJECT] = state.model_dump(mode="json")


@pytest.fixture
def listed(app: object) -> Iterator[None]:
    """Erased by the suppression list only: a worker rebuilt under a new app id."""
    suppression._set("k-erased-email", ref(SUBJECT))
    yield
    suppression.clear()


def asked(sent: list[Sent]) -> set[System]:
    return {s.record.system for s in sent if isinstance(s.record, r.Task)}


@pytest.mark.parametrize("kind", [RequestType.access, RequestType.erasure])
async def test_a_request_about_an_erased_subject_asks_only_the_systems_kept(
    driver: Driver, kind: RequestType
) -> None:
    suppress_subject()
    sent = await driver.send(submit(f"R-after-{kind.value}", kind))
    assert asked(sent) == {System.orders}


@pytest.mark.usefixtures("listed")
async def test_one_the_suppression_list_names_is_erased_too(driver: Driver) -> None:
    sent = await driver.send(submit("R-after-rebuild", RequestType.access))
    assert asked(sent) == {System.orders}


async def test_a_subject_not_erased_is_asked_wherever_privops_may_find_them(
    driver: Driver,
) -> None:
    sent = await driver.send(submit("R-not-erased", RequestType.access))
    assert asked(sent) == {System.orders} | INFERRED
