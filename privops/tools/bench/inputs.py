"""What the bench feeds Kafka: reproducible upstream events, encoded once, outside the
measured window."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from privops.adapters.serde import Serde
from privops.core.records import (
    ConsentGiven,
    CustomerCreated,
    Identifiers,
    OrderPlaced,
    StopReplyReceived,
    UnsubscribeClicked,
    UpstreamEvent,
)
from privops.core.topics import events_topic
from privops.core.vocab import Channel, LawfulBasis, Purpose, System

Message = tuple[str, bytes, bytes]
"""(topic, key, value), ready to produce."""

BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# The systems the shipped data map lets record consent (its ``grants``): a ConsentGiven
# from any other is left out, and the bench would measure events that change nothing.
_CONSENT_SOURCES = (System.crm, System.orders, System.web, System.marketing)
_CHANNELS = (Channel.email, Channel.sms, Channel.post, Channel.telephone)
SEEDED_SYSTEMS = (System.orders, System.crm, System.marketing)


def consent_events(
    n: int, subjects: int, tag: str, seed: int = 7, *, contact: bool = False
) -> list[UpstreamEvent]:
    """A reproducible mix of consent-bearing events over `subjects` subjects.

    Mix: 40% ConsentGiven (from the four systems that may record consent), 30%
    OrderPlaced (soft opt-in or opt-out), 15% UnsubscribeClicked, 15% StopReplyReceived,
    so four of the six topics carry load (telephony and cctv record no consent).
    ``contact`` adds the subject's email and phone (the personal fields) to every event.
    """
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not crypto)
    out: list[UpstreamEvent] = []
    for i in range(n):
        number = rng.randrange(subjects)
        sid = f"bench-{tag}-{number}"
        identifiers = (
            Identifiers(customer_id=sid, email=f"{sid}@example.test", phone=f"+4477{number:08d}")
            if contact
            else Identifiers(customer_id=sid)
        )
        base: dict[str, Any] = {
            "event_id": f"{tag}-{i}",
            "occurred_at": BASE_TIME + timedelta(milliseconds=i),
            "subject_id": sid,
            "identifiers": identifiers,
        }
        roll = rng.random()
        if roll < 0.40:
            out.append(
                ConsentGiven(
                    **base,
                    source=_CONSENT_SOURCES[i % len(_CONSENT_SOURCES)],
                    purpose=Purpose.marketing,
                    channel=_CHANNELS[i // len(_CONSENT_SOURCES) % len(_CHANNELS)],
                    basis=LawfulBasis.consent,
                )
            )
        elif roll < 0.70:
            # A checkout that meets PECR reg. 22(3), so the order is a soft opt-in
            # unless the opt-out box is ticked (absent conditions would make it neither).
            # It collected an email: the soft opt-in covers only the details the sale
            # collected (privops.core.facts._sale_facts).
            sale_ids = (
                identifiers
                if contact
                else Identifiers(customer_id=sid, email=f"{sid}@example.test")
            )
            out.append(
                OrderPlaced(
                    **(base | {"identifiers": sale_ids}),
                    source=System.orders,
                    order_id=f"o-{i}",
                    total_pence=1999,
                    marketing_opt_out_offered=True,
                    similar_products_marketing=True,
                    marketing_opt_out_ticked=rng.random() < 0.2,
                )
            )
        elif roll < 0.85:
            out.append(UnsubscribeClicked(**base, source=System.marketing, campaign_id="c1"))
        else:
            out.append(StopReplyReceived(**base, source=System.marketing, campaign_id="c1"))
    return out


def consents_given(subjects: range, tag: str) -> list[UpstreamEvent]:
    """One email marketing consent per subject number: the restart scenario's table load.

    A range, so a million subjects can be loaded a slice at a time.
    """
    return [
        ConsentGiven(
            event_id=f"load-{tag}-{i}",
            occurred_at=BASE_TIME + timedelta(milliseconds=i),
            source=System.marketing,
            subject_id=loaded_subject(tag, i),
            identifiers=Identifiers(customer_id=loaded_subject(tag, i)),
            purpose=Purpose.marketing,
            channel=Channel.email,
        )
        for i in subjects
    ]


def loaded_subject(tag: str, number: int) -> str:
    return f"bench-{tag}-{number}"


def customers_created(subjects: Sequence[str]) -> list[UpstreamEvent]:
    """CustomerCreated in orders, crm and marketing for each subject, so an erasure has
    three systems to task."""
    return [
        CustomerCreated(
            event_id=f"seed-{sid}-{system.value}",
            occurred_at=BASE_TIME + timedelta(seconds=i),
            source=system,
            subject_id=sid,
            identifiers=Identifiers(customer_id=sid, system_ref=f"{system.value}-{i}"),
        )
        for i, sid in enumerate(subjects)
        for system in SEEDED_SYSTEMS
    ]


def encode_events(serde: Serde, events: Sequence[UpstreamEvent]) -> list[Message]:
    return [(events_topic(e.source), e.subject_id.encode(), serde.encode(e)) for e in events]
