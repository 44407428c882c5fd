"""Who is calling the worker's HTTP API: a Kafka principal, proven to the broker.

A caller sends HTTP Basic credentials: its Kafka principal and SCRAM password, the ones
it already connects to Kafka with (``api_auth`` builds them). The worker keeps no second
password store: it opens a connection to a broker as that principal and lets the
broker's SCRAM exchange decide. So there is one identity per principal, managed where
Kafka's are (``privops local up`` in dev, the cluster's SCRAM users in production), and
removing a principal's SCRAM credentials takes its API access with it within
``ttl`` seconds.

A proof is remembered for ``ttl`` seconds under a SHA-256 digest of the credentials,
never the password itself; a refusal for ``failure_ttl`` seconds, so a caller retrying
a wrong password does not make the worker open a broker connection each time; and at
most ``concurrency`` proofs run at once. Concurrent requests with the same credentials
share one proof.

What each principal may ask is data, beside the Kafka ACLs: ``acls.may_call``. With
``PRIVOPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT`` there is nothing to prove a principal
with, and the API is open (``authenticator`` is None): that is the bench's private
runtime, never a deployment's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import httpx

from privops.adapters.acls import WORKER, api_principals
from privops.adapters.kafka import password_of, sasl_accepted, sasl_options, ssl_context
from privops.adapters.settings import Settings
from privops.core.errors import RuntimeUnavailable

# Kafka principal names privops uses (privops, dpo, admin, system-<name>), with room
# for a deployment's own: SCRAM user names with ',' or '=' would need escaping, and a
# name is also a metric-free log field, so anything else is refused before the broker.
_PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_PASSWORD = 1024
_CONNECT_SECONDS = 5.0

Check = Callable[[str, str], Awaitable[bool]]
"""(principal, password) -> whether the broker accepted them; RuntimeUnavailable when
no broker answered."""


class Unauthenticated(Exception):
    """No credentials, malformed ones, or credentials the broker refused (401)."""


@dataclass(frozen=True)
class Credentials:
    principal: str
    password: str


def basic_credentials(header: str | None) -> Credentials:
    """The principal and password of an ``Authorization: Basic`` header."""
    if not header:
        raise Unauthenticated("no credentials: send HTTP Basic with a Kafka principal")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Unauthenticated("credentials must be HTTP Basic (principal:password)")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed HTTP Basic credentials") from None
    principal, colon, password = decoded.partition(":")
    if not colon or not password or len(password) > _MAX_PASSWORD:
        raise Unauthenticated("malformed HTTP Basic credentials")
    if not _PRINCIPAL.fullmatch(principal):
        raise Unauthenticated("not a principal name")
    return Credentials(principal, password)


class BrokerAuthenticator:
    """The principal behind an ``Authorization`` header, proven by a SCRAM exchange with a
    broker (``check``), remembered for ``ttl`` seconds.

    Open to anyone who reaches the port, so bounded against a flood of guesses: a name
    that is none of ``principals`` is refused without asking a broker (it could be
    allowed nothing anyway); refusals are remembered apart from proofs, so guesses never
    push a proven caller out; and at most ``max_waiting`` proofs wait for one of the
    ``concurrency`` checks, the rest answered at once as unavailable (503: retry) rather
    than queued behind the flood (400 guesses kept a proven system waiting 10 s). A caller
    whose proof expired is proven again in a lane of its own (``renewals`` checks, no
    waiting cap): a steady flood of random passwords, each a new digest, kept the common
    lane full, and every caller whose proof expired was answered 503 (security review,
    session 34). Only credentials a broker accepted before enter it, and a refusal
    takes them out."""

    def __init__(
        self,
        check: Check,
        *,
        principals: Collection[str] | None = None,
        ttl: float = 60.0,
        failure_ttl: float = 5.0,
        concurrency: int = 4,
        renewals: int = 2,
        max_waiting: int = 64,
        size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._principals = None if principals is None else frozenset(principals)
        self._ttl, self._failure_ttl, self._size = ttl, failure_ttl, size
        self._clock = clock
        # digest -> expires at, for proofs and refusals apart; a digest, never a password.
        self._proven: OrderedDict[bytes, float] = OrderedDict()
        self._refused: OrderedDict[bytes, float] = OrderedDict()
        self._proving: dict[bytes, asyncio.Future[bool]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._renewal_slots = asyncio.Semaphore(renewals)
        self._max_waiting = max_waiting
        self._waiting = 0

    async def principal(self, header: str | None) -> str:
        """The proven principal; ``Unauthenticated`` if it is not, ``RuntimeUnavailable``
        if no broker could be asked (or too many proofs wait already)."""
        creds = basic_credentials(header)
        if self._principals is not None and creds.principal not in self._principals:
            raise Unauthenticated("the broker refused these credentials")
        digest = hashlib.sha256(f"{creds.principal}\0{creds.password}".encode()).digest()
        now = self._clock()
        if self._proven.get(digest, now) > now:
            accepted = True
        elif self._refused.get(digest, now) > now:
            accepted = False
        elif digest in self._proven:  # proven before, expired since: its own lane
            accepted = await self._prove(digest, creds, self._renewal_slots)
        else:
            accepted = await self._proof(digest, creds)
        if not accepted:
            raise Unauthenticated("the broker refused these credentials")
        return creds.principal

    async def _proof(self, digest: bytes, creds: Credentials) -> bool:
        pending = self._proving.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        if self._waiting >= self._max_waiting:
            raise RuntimeUnavailable("too many credential checks waiting; retry shortly")
        self._waiting += 1
        try:
            return await self._prove(digest, creds, self._slots)
        finally:
            self._waiting -= 1

    async def _prove(self, digest: bytes, creds: Credentials, slots: asyncio.Semaphore) -> bool:
        if (pending := self._proving.get(digest)) is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._proving[digest] = future
        try:
            async with slots:
                accepted = await self._check(creds.principal, creds.password)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: sharers re-raise it, or nobody waits
            raise
        except BaseException:
            future.cancel()
            raise
        else:
            future.set_result(accepted)
            self._remember(digest, accepted)
            return accepted
        finally:
            del self._proving[digest]

    def _remember(self, digest: bytes, accepted: bool) -> None:
        if not accepted:  # a password changed or removed leaves the renewal lane
            self._proven.pop(digest, None)
        known = self._proven if accepted else self._refused
        known[digest] = self._clock() + (self._ttl if accepted else self._failure_ttl)
        known.move_to_end(digest)
        while len(known) > self._size:
            known.popitem(last=False)


def broker_check(settings: Settings) -> Check:
    """Ask the brokers in ``settings.kafka_bootstrap``, one after another, to authenticate
    the principal: True when one accepts, False when one refuses, RuntimeUnavailable
    when none answers."""
    hosts = _hosts(settings.kafka_bootstrap)
    tls = ssl_context(settings)

    async def check(principal: str, password: str) -> bool:
        options = sasl_options(settings, principal, password) | {"ssl_context": tls}
        for host, port in hosts:
            accepted = await sasl_accepted(
                host, port, options, "privops-api-auth", _CONNECT_SECONDS
            )
            if accepted is not None:
                return accepted
            # this broker did not answer: the next one may
        raise RuntimeUnavailable(
            f"no Kafka broker at {settings.kafka_bootstrap} answered to check credentials"
        )

    return check


def authenticator(settings: Settings) -> BrokerAuthenticator | None:
    """The worker's authenticator, or None on a PLAINTEXT (open) runtime."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    return BrokerAuthenticator(broker_check(settings), principals=api_principals())


def api_auth(
    settings: Settings, principal: str | None = None, *, default: str = WORKER
) -> httpx.BasicAuth | None:
    """A client's credentials for the worker's HTTP API: ``principal`` (else
    PRIVOPS_KAFKA_PRINCIPAL, else ``default``) with its Kafka password, as
    ``client_options`` finds it; None on a PLAINTEXT runtime."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    who = principal or settings.kafka_principal or default
    return httpx.BasicAuth(who, password_of(settings, who))


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    hosts = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host.strip("[]"), int(port)))
    return hosts
