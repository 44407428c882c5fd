"""Simulated business systems: the six reference connectors and an upstream event generator.

``run_connectors`` runs a reference connector (``privops.connectors.reference``) for every
system, each over its own seeded SQLite store, answering privops' tasks, applying the
legal holds on it and, when asked (``purge_every``), deleting its rows by age as the data
map's periods say, once the holds are read.
``publish_business_day`` publishes what those systems would send to ``<system>.events``
(Avro, keyed by subject id) for the same fake customers, with the identifiers each system
really holds, so privops' identity map builds tasks the connectors can look up.

The day is deterministic for a given (customers, seed, date): event ids repeat, so
publishing the same day twice is a duplicate privops must ignore, not new business.

Like a real system using the SDK, the simulated ones encrypt: each event's personal fields
(``identifiers.email``, ``identifiers.phone``, ...) under the subject's key from privops'
key service on the worker (docs/crypto-shredding.md), unless told to send plaintext;
the connectors open their tasks and encrypt their answers through the same service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Literal

from aiokafka.errors import KafkaError

from privops.adapters.acls import system_principal
from privops.adapters.kafka import client_options, not_sent, producer
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings
from privops.connectors.encryption import (
    KeySource,
    WorkerKeySource,
    encrypt_record,
    worker_keys,
)
from privops.connectors.reference import (
    FakeCustomer,
    Knobs,
    PurgeHook,
    ReferenceConnector,
    reference_connector,
    seed_customers,
    seed_stores,
)
from privops.connectors.sdk import AnswerHook, ConnectorRunner, RunnerStats
from privops.core.facts import SOFT_OPT_IN_CHANNELS
from privops.core.records import (
    AccountBalanceChanged,
    CallRecorded,
    ConsentGiven,
    ConsentWithdrawn,
    CookieConsentRecorded,
    CreditAccountApplied,
    CustomerCreated,
    DataDisclosed,
    FootageCaptured,
    Identifiers,
    InvestigationClosed,
    InvestigationOpened,
    OrderPlaced,
    PaymentRecorded,
    QuoteRequested,
    StopReplyReceived,
    SupportMessageReceived,
    TpsStatusChecked,
    UnsubscribeClicked,
    UpstreamEvent,
)
from privops.core.subject_keys import SubjectErased
from privops.core.topics import events_topic
from privops.core.vocab import Category, Channel, LawfulBasis, Purpose, System

log = logging.getLogger(__name__)

DEFAULT_CUSTOMERS = 50


# Data-map recipients the simulated systems disclose to (deploy/datamap.yaml).
PAYMENT_PROCESSORS = "Banks and payment processors"
CREDIT_AGENCIES = "Credit reference agencies"


def default_data_dir(settings: Settings) -> Path:
    """Where the simulated systems keep their SQLite files and exports."""
    return settings.home / "systems"


# ------------------------------------------------------------------------------ connectors


def build_runners(
    settings: Settings,
    data_dir: Path,
    *,
    knobs: Mapping[System, Knobs] | None = None,
    systems: Sequence[System] = tuple(System),
    group_prefix: str | None = None,
    start_from: Literal["earliest", "latest"] = "earliest",
    on_answer: AnswerHook | None = None,
    worker_url: str | None = None,
    keys: Callable[[System], KeySource] | None = None,
) -> list[ConnectorRunner]:
    """One ConnectorRunner per system over ``data_dir`` (stores must exist).

    Each opens its tasks through privops' key service at ``worker_url`` (default: the
    worker settings name), or through ``keys(system)`` when given.
    """
    knobs = knobs or {}
    return [
        ConnectorRunner(
            reference_connector(system, data_dir, knobs.get(system)),
            settings,
            group_id=group_prefix,  # placed under the system's own group by the runner
            start_from=start_from,
            on_answer=on_answer,
            keys=keys(system) if keys is not None else None,
            worker_url=worker_url,
        )
        for system in systems
    ]


async def run_connectors(
    settings: Settings,
    data_dir: Path,
    *,
    knobs: Mapping[System, Knobs] | None = None,
    stop: asyncio.Event | None = None,
    customers: Sequence[FakeCustomer] | None = None,
    runners: Sequence[ConnectorRunner] | None = None,
    on_answer: AnswerHook | None = None,
    worker_url: str | None = None,
    purge_every: float = 0.0,
    on_purge: PurgeHook | None = None,
) -> dict[System, RunnerStats]:
    """Run all six reference connectors until ``stop`` is set; their stats when stopped.

    Missing stores are seeded first (``customers``, default 50 fake customers). Pass
    ``runners`` from :func:`build_runners` to wait on their ``ready`` events meanwhile.
    If one runner fails, the others are stopped and its error is raised.
    ``purge_every`` > 0: each system deletes by age every that many seconds, the first
    time once its runner has read the legal holds (``on_purge`` told what went); 0: never.
    """
    stop = stop or asyncio.Event()
    await asyncio.to_thread(seed_stores, data_dir, customers or seed_customers(DEFAULT_CUSTOMERS))
    if runners is None:
        runners = build_runners(
            settings, data_dir, knobs=knobs, on_answer=on_answer, worker_url=worker_url
        )
    tasks = [asyncio.create_task(r.run(stop), name=f"connector-{r.system}") for r in runners]
    if purge_every > 0:
        tasks += [
            asyncio.create_task(
                r.connector.purge_periodically(purge_every, r.holds_ready, stop, on_purge),
                name=f"purge-{r.system}",
            )
            for r in runners
            if isinstance(r.connector, ReferenceConnector)
        ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
    finally:
        stop.set()
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {r.system: r.stats for r in runners}


# ------------------------------------------------------------------------ event generator


class _Day:
    """Builds one day's events; ids are deterministic per (date, sequence)."""

    def __init__(self, day: dt.date, seed: int) -> None:
        self.day = day
        self.rng = random.Random(seed * 100_003 + day.toordinal())  # noqa: S311 - fake data
        self.events: list[tuple[System, UpstreamEvent]] = []
        self._n = 0
        # Today's business so far: a system publishes what happened, never what will
        # (privops dead-letters an event dated ahead of its clock: implausible_time).
        self.latest = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    def at(self) -> dt.datetime:
        start = dt.datetime.combine(self.day, dt.time(8, 0), tzinfo=dt.UTC)
        return start + dt.timedelta(seconds=self.rng.randrange(10 * 3600))

    def add(
        self,
        kind: type[UpstreamEvent],
        system: System,
        c: FakeCustomer,
        occurred_at: dt.datetime,
        **fields: object,
    ) -> None:
        self._n += 1
        event = kind(
            event_id=f"sim-{self.day.isoformat()}-{self._n:06d}",
            occurred_at=min(occurred_at, self.latest),
            source=system,
            subject_id=c.subject_id,
            identifiers=Identifiers(**c.identifiers(system)),
            **fields,
        )
        self.events.append((system, event))


def business_day(
    customers: Sequence[FakeCustomer], *, seed: int = 7, date: dt.date | None = None
) -> list[tuple[System, UpstreamEvent]]:
    """The events of one day, oldest first: what the systems already hold, then the day.

    The backfill (each system announcing the customers and facts it holds: accounts,
    consents, calls, cookies, footage, investigations, credit) lets privops' identity map
    and consent state match the seeded stores; the day adds fresh business on ``date``.
    """
    day = _Day(date or dt.datetime.now(dt.UTC).date(), seed)
    rng = day.rng
    for c in customers:
        _backfill(day, c)
    for c in customers:
        if rng.random() < 0.35:
            _shopping(day, c)
        if rng.random() < 0.15:
            day.add(
                SupportMessageReceived,
                System.crm,
                c,
                day.at(),
                message_id=f"MSG-{day.day:%Y%m%d}-{c.number:04d}",
                medium=rng.choice(("email", "web_form")),
            )
        if c.calls and rng.random() < 0.2:
            day.add(
                CallRecorded,
                System.telephony,
                c,
                day.at(),
                call_id=f"CALL-{day.day:%Y%m%d}-{c.number:04d}",
                recording_ref=f"recordings/CALL-{day.day:%Y%m%d}-{c.number:04d}.wav",
                duration_seconds=rng.randrange(40, 900),
            )
        if c.subscriber_ref:
            _marketing_day(day, c)
        if rng.random() < 0.2:
            day.add(
                CookieConsentRecorded,
                System.web,
                c,
                day.at(),
                analytics=rng.random() < 0.7,
                marketing=rng.random() < 0.3,
                banner_version="3",
            )
        if c.visitor_ref and rng.random() < 0.3:
            day.add(
                FootageCaptured,
                System.cctv,
                c,
                day.at(),
                clip_id=f"CLIP-{day.day:%Y%m%d}-{c.number:04d}",
                camera="CAM-01 trade counter",
                site="Ruislip HQ",
            )
        if c.credit and rng.random() < 0.3:
            overdue = c.credit.overdue_pence + (
                rng.randrange(5_000, 50_000) if c.number % 8 == 1 else 0
            )
            day.add(
                AccountBalanceChanged,
                System.orders,
                c,
                day.at(),
                credit_account_open=True,
                balance_pence=c.credit.balance_pence + rng.randrange(0, 80_000),
                overdue_pence=overdue,
            )
    return sorted(day.events, key=lambda e: (e[1].occurred_at, e[1].event_id))


def _backfill(day: _Day, c: FakeCustomer) -> None:
    day.add(CustomerCreated, System.orders, c, c.since, collected_in_sale_or_negotiation=True)
    day.add(CustomerCreated, System.crm, c, c.since + dt.timedelta(minutes=5))
    # The orders system's history: invoices and payments start the six-year clock. A
    # soft opt-in arises only from a sale (DESIGN.md section 5; a ConsentGiven claiming
    # one is dead-lettered): a customer the marketing store holds by soft opt-in got it
    # at their first order's checkout, which offered the opt-out; other past orders
    # claim none.
    soft = any(consent.granted and consent.soft_opt_in for consent in c.consents)
    for n, order in enumerate(c.orders):
        _sale(
            day,
            c,
            order.placed_at,
            order.placed_at,
            order_id=order.order_id,
            payment_id=order.payment_id,
            total=order.total_pence,
            method=order.method,
            **(_checkout_marketing(web_shop=True, ticked=False) if soft and n == 0 else {}),
        )
    for call in c.calls:
        day.add(
            CallRecorded,
            System.telephony,
            c,
            call.started_at,
            call_id=call.call_id,
            recording_ref=f"recordings/{call.call_id}.wav",
            duration_seconds=call.duration_seconds,
        )
    if c.subscriber_ref:
        consent_at = c.since + dt.timedelta(days=1)
        soft_channels = {x.channel for x in c.consents if x.granted and x.soft_opt_in}
        for consent in c.consents:
            if soft_channels and not consent.granted and consent.channel in SOFT_OPT_IN_CHANNELS:
                # The sale's soft opt-in covers email and SMS (PECR reg. 22); the store
                # holds one of them only: the subscriber opted out of the other.
                day.add(
                    ConsentWithdrawn,
                    System.marketing,
                    c,
                    max(consent_at, c.orders[0].placed_at) + dt.timedelta(minutes=1),
                    purpose=Purpose.marketing,
                    channel=consent.channel,
                )
            if not consent.granted or consent.soft_opt_in:  # the sale above says it
                continue
            day.add(
                ConsentGiven,
                System.marketing,
                c,
                consent_at,
                purpose=Purpose.marketing,
                channel=consent.channel,
                basis=LawfulBasis.consent,
                wording_ref="preference-centre-v2",
            )
    last_seen = c.orders[-1].placed_at if c.orders else c.since
    day.add(
        CookieConsentRecorded,
        System.web,
        c,
        last_seen - dt.timedelta(days=90),
        analytics=c.cookie_analytics,
        marketing=c.cookie_marketing,
        banner_version="3",
    )
    if c.credit:
        day.add(
            CreditAccountApplied,
            System.orders,
            c,
            c.credit.opened_at - dt.timedelta(days=2),
            application_id=f"APP-{c.credit.account_number}",
            credit_reference_agency=c.credit.agency,
        )
        # The credit search: the agency now holds the subject's data (Art. 19 recipient).
        day.add(
            DataDisclosed,
            System.orders,
            c,
            c.credit.opened_at - dt.timedelta(days=2, minutes=-1),
            disclosure_id=f"SEARCH-APP-{c.credit.account_number}",
            recipient=CREDIT_AGENCIES,
            categories=[Category.contact, Category.credit],
            recipient_ref=f"{c.credit.agency}:APP-{c.credit.account_number}",
        )
        day.add(
            AccountBalanceChanged,
            System.orders,
            c,
            dt.datetime.combine(day.day, dt.time(6, 0), tzinfo=dt.UTC) - dt.timedelta(days=1),
            credit_account_open=True,
            balance_pence=c.credit.balance_pence,
            overdue_pence=c.credit.overdue_pence,
        )
    if c.subscriber_ref:
        _tps_screening(day, c)
    for clip in c.clips:
        day.add(
            FootageCaptured,
            System.cctv,
            c,
            clip.captured_at,
            clip_id=clip.clip_id,
            camera=clip.camera,
            site=clip.site,
        )
        if clip.investigation_id:
            day.add(
                InvestigationOpened,
                System.cctv,
                c,
                clip.captured_at + dt.timedelta(hours=3),
                investigation_id=clip.investigation_id,
                reason="reported theft from trade counter",
            )
            if not clip.investigation_open:
                day.add(
                    InvestigationClosed,
                    System.cctv,
                    c,
                    clip.captured_at + dt.timedelta(days=4),
                    investigation_id=clip.investigation_id,
                )


def _shopping(day: _Day, c: FakeCustomer) -> None:
    rng = day.rng
    ref = f"{day.day:%Y%m%d}-{c.number:04d}"
    start = day.at()
    total = rng.randrange(5_00, 2_500_00)
    quoted = rng.random() < 0.4
    if quoted:
        day.add(
            QuoteRequested,
            System.orders,
            c,
            start,
            quote_id=f"QUO-{ref}",
            product_skus=rng.sample(["LED-PNL-600", "LED-HB-150", "LED-BT-5FT", "LED-DL-8W"], 2),
            total_pence=total,
        )
        start += dt.timedelta(minutes=rng.randrange(5, 90))
    ticked = rng.random() < 0.15
    _sale(
        day,
        c,
        start,
        start + dt.timedelta(minutes=1),
        order_id=f"ORD-{ref}",
        payment_id=f"PAY-{ref}",
        total=total,
        method=rng.choice(("card", "card", "bank_transfer")),
        **_checkout_marketing(web_shop=not quoted, ticked=ticked),
    )


def _sale(
    day: _Day,
    c: FakeCustomer,
    placed_at: dt.datetime,
    paid_at: dt.datetime,
    *,
    order_id: str,
    payment_id: str,
    total: int,
    method: str,
    **marketing: bool,
) -> None:
    """An order and its payment: the invoice that starts the six-year clock."""
    day.add(
        OrderPlaced, System.orders, c, placed_at, order_id=order_id, total_pence=total, **marketing
    )
    day.add(
        PaymentRecorded,
        System.orders,
        c,
        paid_at,
        payment_id=payment_id,
        order_id=order_id,
        amount_pence=total,
        method=method,
    )
    if method == "card":  # the card payment went through the processor
        day.add(
            DataDisclosed,
            System.orders,
            c,
            paid_at,
            disclosure_id=f"PSP-{payment_id}",
            recipient=PAYMENT_PROCESSORS,
            categories=[Category.contact, Category.payment],
            recipient_ref=f"PSP-{payment_id}",
        )


def _checkout_marketing(*, web_shop: bool, ticked: bool) -> dict[str, bool]:
    """The PECR soft opt-in conditions an order records (reg. 22(3)).

    The web shop's checkout offers the opt-out for marketing of similar products, so its
    orders are soft opt-ins unless the box is ticked. Orders the trade desk places
    against a quote record no such offer: absent means not offered, no soft opt-in.
    """
    return {
        "marketing_opt_out_offered": web_shop,
        "similar_products_marketing": web_shop,
        "marketing_opt_out_ticked": web_shop and ticked,
    }


def _tps_screening(day: _Day, c: FakeCustomer) -> None:
    """The subscriber's latest weekly TPS screening (PECR reg. 21: a number may be called
    only if screened within the last 28 days); each subscriber has a weekday slot."""
    days_since = (day.day.toordinal() - c.number) % 7
    screened_on = day.day - dt.timedelta(days=days_since)
    at = dt.datetime.combine(screened_on, dt.time(7, 0), tzinfo=dt.UTC)
    day.add(TpsStatusChecked, System.marketing, c, at, tps_register="TPS", listed=c.tps_listed)


def _marketing_day(day: _Day, c: FakeCustomer) -> None:
    rng = day.rng
    granted = {x.channel for x in c.consents if x.granted}
    if Channel.email in granted and rng.random() < 0.08:
        day.add(UnsubscribeClicked, System.marketing, c, day.at(), campaign_id="CMP-SPRING-PANELS")
    if Channel.sms in granted and rng.random() < 0.1:
        day.add(StopReplyReceived, System.marketing, c, day.at(), campaign_id="CMP-SMS-FLASH")
    if Channel.sms not in granted and rng.random() < 0.1:
        day.add(
            ConsentGiven,
            System.marketing,
            c,
            day.at(),
            purpose=Purpose.marketing,
            channel=Channel.sms,
            basis=LawfulBasis.consent,
            wording_ref="preference-centre-v2",
        )


def seal_events(
    events: Sequence[tuple[System, UpstreamEvent]],
    keys: KeySource | Mapping[System, KeySource],
) -> tuple[list[tuple[System, UpstreamEvent]], set[str]]:
    """Each event with its personal fields encrypted under its subject's ``main`` key,
    and the subjects privops erased: the key service gives them no key, and a system
    produces nothing about them (their events are left out). ``keys``: one source for
    every system, or each system's own.

    Blocking (a ``WorkerKeySource`` asks the key service once per subject it has not met
    in its cache's lifetime), so call it off the event loop.
    """
    sealed: list[tuple[System, UpstreamEvent]] = []
    erased: set[str] = set()
    for system, event in events:
        if event.subject_id in erased:
            continue
        source = keys[system] if isinstance(keys, Mapping) else keys
        try:
            sealed.append((system, encrypt_record(event, source)))
        except SubjectErased:
            erased.add(event.subject_id)
    return sealed, erased


async def publish_business_day(
    settings: Settings,
    customers: Sequence[FakeCustomer],
    *,
    seed: int = 7,
    date: dt.date | None = None,
    keys: KeySource | None = None,
    worker_url: str | None = None,
    plaintext: bool = False,
) -> Counter[str]:
    """Publish :func:`business_day` to ``<system>.events``, each system as its own
    principal (the only one that may write its events); counts by event type.

    Personal fields are encrypted with ``keys``, by default privops' key service at
    ``worker_url`` (default: the worker settings name), which must be running:
    ``RuntimeUnavailable`` before anything is published if it does not answer.
    ``plaintext=True`` publishes them as systems did before encryption.
    """
    events = business_day(customers, seed=seed, date=date)
    if not plaintext:
        events = await _sealed(settings, events, keys, worker_url)
    serde = Serde.for_settings(settings)
    await asyncio.to_thread(serde.register_all)
    counts: Counter[str] = Counter()
    options = {
        system: client_options(settings, system_principal(system))
        for system in {system for system, _ in events}
    }
    async with AsyncExitStack() as stack:
        producers = {
            system: await stack.enter_async_context(producer(options[system], linger_ms=5))
            for system in options
        }
        futures = []
        system: System | None = None
        try:
            for system, event in events:
                futures.append(
                    await producers[system].send(
                        events_topic(system),
                        key=event.subject_id.encode(),
                        value=serde.encode(event),
                    )
                )
                counts[type(event).__name__] += 1
            await asyncio.gather(*futures)
        except KafkaError as exc:  # a traceback before (review, session 43)
            # (a failure of the gather: the last system sent to, as near as it can be told)
            where = system or next(iter(options))
            raise not_sent(options[where], events_topic(where), exc) from exc
    log.info(
        "published %d upstream events (%s)",
        sum(counts.values()),
        "plaintext" if plaintext else "personal fields encrypted",
    )
    return counts


async def _sealed(
    settings: Settings,
    events: list[tuple[System, UpstreamEvent]],
    keys: KeySource | None,
    worker_url: str | None,
) -> list[tuple[System, UpstreamEvent]]:
    own: dict[System, WorkerKeySource] = {}
    if keys is None:  # each system asks the key service as itself
        for system in {system for system, _ in events}:
            own[system] = await asyncio.to_thread(
                worker_keys,
                settings,
                worker_url,
                principal=system_principal(system),
                say=log.info,
            )
    try:
        sources = keys if keys is not None else own
        sealed, erased = await asyncio.to_thread(seal_events, events, sources)
    finally:
        for source in own.values():
            source.close()
    if erased:
        log.warning(
            "%d of %d events left out: %d subjects were erased by privops",
            len(events) - len(sealed),
            len(events),
            len(erased),
        )
    return sealed
