"""A worker rebuilt under a new app id, after an erasure: its tables are empty, and only
the suppression list (its own compacted topic) remembers the erased subject by their ref.

Before (review, session 26), a replayed event of the subject carrying an identifier the
erasure never hashed (an address they had before, a system id) made them a fresh,
unsuppressed consent state, and from then on the key service handed out a new ``main``
key: their data was readable again and they were contactable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents import http
from agents.ingest import ingest
from privops.adapters.serde import Serde
from privops.core import records as r
from privops.core.identity import suppression_key
from privops.core.subject_keys import SubjectErased
from privops.core.topics import AUDIT, CONSENT_STATE, SUBJECT_DIRECTIVES
from privops.core.vocab import System
from streams.audit import PSEUDONYM_KEY, ref
from streams.keystore import KeyStore
from streams.state import state
from streams.tables import consent, identities, suppression
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.test_erasure_shred import store as store  # the worker's key store
from tests.agents.test_ingest_agent import NOW, consent_given
from tests.unit import test_keystore as keystore_tests
from tests.unit.test_keystore import subject_on

ANN, BOB = subject_on(0, 0), subject_on(0, 1)  # partition 0, where put_on puts messages
ERASED_EMAIL = "ann.new@example.com"  # what the identity map held at the erasure (hashed)
OLD_EMAIL = "ann.old@example.com"  # her address before: never hashed

key_log, codec, kek_path = keystore_tests.log, keystore_tests.codec, keystore_tests.kek_path


@pytest.fixture
def listed(app: object) -> Iterator[None]:
    """What survives the rebuild: Ann's erasure on the suppression list, by a hash of the
    address the identity map held then."""
    suppression._set(suppression_key(PSEUDONYM_KEY, "email", ERASED_EMAIL), ref(ANN))
    yield
    suppression.clear()


def _consent(subject: str, email: str, event_id: str) -> r.ConsentGiven:
    return consent_given(event_id, subject, r.Identifiers(email=email))


def _cookies(subject: str) -> r.CookieConsentRecorded:
    return r.CookieConsentRecorded(
        event_id="w-1",
        occurred_at=NOW,
        source=System.web,
        subject_id=subject,
        identifiers=r.Identifiers(system_ref="cookie-123"),
        analytics=True,
        marketing=True,
        banner_version="v3",
    )


REPLAYED = [
    pytest.param("marketing.events", _consent(ANN, OLD_EMAIL, "m-1"), id="an-older-address"),
    pytest.param("web.events", _cookies(ANN), id="only-a-system-id"),
]


@pytest.mark.usefixtures("listed")
@pytest.mark.parametrize(("topic", "event"), REPLAYED)
async def test_a_replayed_event_of_an_erased_subject_leaves_them_suppressed(
    serde: Serde, outbox: Outbox, store: KeyStore, topic: str, event: r.UpstreamEvent
) -> None:
    assert http._erased(ANN)  # the key service refuses her before the replay
    later = _consent(ANN, OLD_EMAIL, "m-2")
    async with ingest.test_context() as agent:
        await put_on(agent, topic, ANN.encode(), serde.encode(event))
        await put_on(agent, "marketing.events", ANN.encode(), serde.encode(later))
        await wait_for(lambda: len(_flagged(outbox)) == 2)
        await state.flush()

    stored = consent.data[ANN]
    assert stored["suppressed"] is True
    assert stored["entries"] == {}
    assert ANN not in identities.data  # nothing of the event is applied
    (published,) = outbox.of(CONSENT_STATE, r.ConsentState)
    assert published.suppressed
    assert http._erased(ANN)
    with pytest.raises(SubjectErased):
        await store.get_or_create(ANN, erased=http._erased)
    assert store.ring(0).records(ANN) == []


@pytest.mark.usefixtures("listed")
async def test_a_directive_for_an_erased_subject_with_no_state_keeps_them_suppressed(
    serde: Serde, outbox: Outbox
) -> None:
    """A restriction (or a withdrawal) replayed to a rebuilt worker made a fresh state,
    unsuppressed, that the subject's next event then found."""
    restriction = r.SubjectDirective(
        directive_id="R-9:restricted",
        subject_id=ANN,
        request_id="R-9",
        kind="restricted",
        occurred_at=NOW,
    )
    async with ingest.test_context() as agent:
        await put_on(agent, SUBJECT_DIRECTIVES, ANN.encode(), serde.encode(restriction))
        await put_on(
            agent, "marketing.events", ANN.encode(), serde.encode(_consent(ANN, OLD_EMAIL, "m-3"))
        )
        await wait_for(lambda: len(_flagged(outbox)) == 1)
    stored = consent.data[ANN]
    assert (stored["suppressed"], stored["restricted"], stored["entries"]) == (True, False, {})


@pytest.mark.usefixtures("listed")
async def test_a_subject_the_list_does_not_name_is_taken_as_before(
    serde: Serde, outbox: Outbox
) -> None:
    async with ingest.test_context() as agent:
        await put_on(
            agent, "marketing.events", BOB.encode(), serde.encode(_consent(BOB, OLD_EMAIL, "b-1"))
        )
        await wait_for(lambda: BOB in consent.data)
    assert consent.data[BOB]["suppressed"] is False
    assert list(consent.data[BOB]["entries"]) == ["marketing:email"]
    assert _flagged(outbox) == []


def _flagged(outbox: Outbox) -> list[r.AuditEvent]:
    return [a for a in outbox.of(AUDIT, r.AuditEvent) if a.after == "reimport_flagged"]
