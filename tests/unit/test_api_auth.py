"""Who may ask the worker's HTTP API what (privops.adapters.api_auth, acls.may_call).

The broker's SCRAM exchange itself is tested on the real broker
(tests/integration/test_api_auth.py); here, the header parsing, the policy, and what the
authenticator remembers and how often it asks (with a recorded check in place of the
broker, since what is under test is the cache and the sharing, not SCRAM).
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import httpx
import pytest

from privops.adapters.acls import (
    ADMIN,
    DPO,
    WORKER,
    Api,
    may_call,
    principals,
    system_principal,
)
from privops.adapters.api_auth import (
    BrokerAuthenticator,
    Credentials,
    Unauthenticated,
    api_auth,
    basic_credentials,
)
from privops.adapters.credentials import ensure_credentials
from privops.adapters.settings import Settings
from privops.core.errors import RuntimeUnavailable
from privops.core.vocab import System


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_basic_credentials_are_read_with_a_colon_in_the_password() -> None:
    assert basic_credentials(basic("system-crm:pa:ss")) == Credentials("system-crm", "pa:ss")
    assert basic_credentials("basic " + basic("dpo:x")[6:]) == Credentials("dpo", "x")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        basic("no-colon"),
        basic("dpo:"),
        basic(":password"),
        basic("dpo,admin=x:password"),  # a SCRAM name that would need escaping
        basic("a" * 65 + ":password"),
        basic("dpo:" + "x" * 1025),
        "Basic " + base64.b64encode(b"\xff\xfe:pw").decode(),
    ],
)
def test_anything_but_basic_with_a_principal_and_a_password_is_unauthenticated(
    header: str | None,
) -> None:
    with pytest.raises(Unauthenticated):
        basic_credentials(header)


def test_who_may_ask_what() -> None:
    crm = system_principal(System.crm)
    for api in Api:
        assert may_call(WORKER, api)
        assert may_call(DPO, api)
        assert not may_call(ADMIN, api)
        assert not may_call("system-unknown", api)
        assert not may_call("dpo-intern", api)
    assert may_call(crm, Api.SUBJECT_KEYS)
    assert may_call(crm, Api.CONSENT)
    assert not may_call(crm, Api.REQUESTS)  # other systems' answers, rectified values
    assert not may_call(crm, Api.SEAL)  # the DPO's text; a system seals with its keys


class Broker:
    """What the broker would say, and how often it was asked."""

    def __init__(self, passwords: dict[str, str], delay: float = 0.0) -> None:
        self.passwords = passwords
        self.delay = delay
        self.asked: list[str] = []
        self.down = False

    async def check(self, principal: str, password: str) -> bool:
        self.asked.append(principal)
        await asyncio.sleep(self.delay)
        if self.down:
            raise RuntimeUnavailable("no broker answered")
        return self.passwords.get(principal) == password


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_proof_is_remembered_for_its_ttl_and_a_refusal_for_less() -> None:
    broker, clock = Broker({"dpo": "right"}), Clock()
    auth = BrokerAuthenticator(broker.check, ttl=60, failure_ttl=5, clock=clock)

    async def run() -> None:
        assert await auth.principal(basic("dpo:right")) == "dpo"
        assert await auth.principal(basic("dpo:right")) == "dpo"
        assert broker.asked == ["dpo"]
        clock.now += 61
        assert await auth.principal(basic("dpo:right")) == "dpo"
        assert broker.asked == ["dpo", "dpo"]

        for _ in range(3):
            with pytest.raises(Unauthenticated):
                await auth.principal(basic("dpo:wrong"))
        assert broker.asked == ["dpo", "dpo", "dpo"]  # one refusal, remembered
        clock.now += 6
        with pytest.raises(Unauthenticated):
            await auth.principal(basic("dpo:wrong"))
        assert len(broker.asked) == 4

    asyncio.run(run())


def test_a_proven_password_does_not_admit_another_principal_or_password() -> None:
    broker = Broker({"dpo": "right", "system-crm": "crm"})
    auth = BrokerAuthenticator(broker.check)

    async def run() -> None:
        assert await auth.principal(basic("dpo:right")) == "dpo"
        with pytest.raises(Unauthenticated):
            await auth.principal(basic("system-crm:right"))
        with pytest.raises(Unauthenticated):
            await auth.principal(basic("dpo:right "))
        assert await auth.principal(basic("system-crm:crm")) == "system-crm"

    asyncio.run(run())


def test_concurrent_requests_with_the_same_credentials_share_one_proof() -> None:
    broker = Broker({"dpo": "right"}, delay=0.05)
    auth = BrokerAuthenticator(broker.check)

    async def run() -> list[str]:
        return await asyncio.gather(*(auth.principal(basic("dpo:right")) for _ in range(20)))

    assert asyncio.run(run()) == ["dpo"] * 20
    assert broker.asked == ["dpo"]


def test_no_broker_is_unavailable_not_a_refusal_and_is_not_remembered() -> None:
    broker = Broker({"dpo": "right"})
    broker.down = True
    auth = BrokerAuthenticator(broker.check)

    async def run() -> None:
        results = await asyncio.gather(
            *(auth.principal(basic("dpo:right")) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeUnavailable) for r in results), results
        broker.down = False
        assert await auth.principal(basic("dpo:right")) == "dpo"

    asyncio.run(run())


def test_the_cache_is_bounded() -> None:
    broker = Broker({f"p{i}": "pw" for i in range(10)})
    auth = BrokerAuthenticator(broker.check, size=3)

    async def run() -> None:
        for i in range(10):
            await auth.principal(basic(f"p{i}:pw"))
        await auth.principal(basic("p0:pw"))  # evicted long ago: asked again

    asyncio.run(run())
    assert len(broker.asked) == 11


def test_guesses_never_push_a_proven_caller_out() -> None:
    """Refusals are remembered apart: 1,024 wrong passwords kept the cache full and the
    proven system had to be checked with the broker again (behind the flood)."""
    broker = Broker({"system-crm": "good"})
    auth = BrokerAuthenticator(broker.check, size=8)

    async def run() -> None:
        assert await auth.principal(basic("system-crm:good")) == "system-crm"
        for i in range(50):
            with pytest.raises(Unauthenticated):
                await auth.principal(basic(f"system-crm:guess{i}"))
        asked = len(broker.asked)
        assert await auth.principal(basic("system-crm:good")) == "system-crm"
        assert len(broker.asked) == asked  # remembered, not asked again

    asyncio.run(run())


def test_a_name_privops_never_made_is_refused_without_asking_a_broker() -> None:
    broker = Broker({"dpo": "right", "nobody": "x"})
    auth = BrokerAuthenticator(broker.check, principals=principals())

    async def run() -> None:
        with pytest.raises(Unauthenticated):
            await auth.principal(basic("nobody:x"))
        assert broker.asked == []
        assert await auth.principal(basic("dpo:right")) == "dpo"

    asyncio.run(run())


def test_the_workers_api_never_checks_a_password_of_a_principal_that_may_ask_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``admin`` (the cluster's super user) may ask the API nothing, yet each guess of its
    password ran a SCRAM exchange with a broker: an oracle for it (review, session 43)."""
    from privops.adapters import api_auth as module

    broker = Broker({ADMIN: "right", DPO: "right"})
    monkeypatch.setattr(module, "broker_check", lambda _settings: broker.check)
    auth = module.authenticator(Settings(kafka_security_protocol="SASL_PLAINTEXT", home=tmp_path))
    assert auth is not None

    async def run() -> None:
        for password in ("right", "guess"):
            with pytest.raises(Unauthenticated):
                await auth.principal(basic(f"{ADMIN}:{password}"))
        assert broker.asked == []
        assert await auth.principal(basic(f"{DPO}:right")) == DPO

    asyncio.run(run())


def test_a_flood_of_guesses_is_answered_at_once_not_queued() -> None:
    """400 guesses at 0.1 s a check made a proven caller's next check wait 10 s; past
    ``max_waiting`` proofs, a caller is told to retry at once (503)."""
    broker = Broker({"system-crm": "good"}, delay=0.1)
    auth = BrokerAuthenticator(broker.check, concurrency=4, max_waiting=16)

    async def run() -> None:
        guesses = [
            asyncio.ensure_future(auth.principal(basic(f"system-crm:guess{i}"))) for i in range(400)
        ]
        await asyncio.sleep(0)
        started = time.perf_counter()
        with pytest.raises(RuntimeUnavailable, match="retry"):
            await auth.principal(basic("system-crm:good"))
        assert time.perf_counter() - started < 0.05
        results = await asyncio.gather(*guesses, return_exceptions=True)
        assert sum(isinstance(r, Unauthenticated) for r in results) == 16
        assert len(broker.asked) == 16
        assert await auth.principal(basic("system-crm:good")) == "system-crm"

    asyncio.run(run())


def test_a_client_sends_its_principal_and_kafka_password(tmp_path: Path) -> None:
    passwords = ensure_credentials(tmp_path / "credentials.json", [DPO, WORKER])
    cfg = Settings(
        home=tmp_path,
        env="dev",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_credentials_file=tmp_path / "credentials.json",
    )
    auth = api_auth(cfg, DPO)
    assert auth is not None
    sent = next(auth.auth_flow(httpx.Request("GET", "http://w")))
    assert basic_credentials(sent.headers["Authorization"]) == Credentials(DPO, passwords[DPO])
    assert api_auth(cfg.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})) is None


def test_a_flood_of_guesses_never_locks_out_a_caller_whose_proof_expired() -> None:
    """Random passwords, each a new digest, kept the waiting lane full: every caller whose
    proof had expired was answered 503 until the flood stopped (security review,
    session 34). Proven before, it is proven again in a lane of its own."""
    broker, clock = Broker({"system-crm": "good"}, delay=0.1), Clock()
    auth = BrokerAuthenticator(broker.check, concurrency=4, max_waiting=16, ttl=60, clock=clock)

    async def run() -> None:
        assert await auth.principal(basic("system-crm:good")) == "system-crm"
        clock.now += 61  # the proof expired
        guesses = [
            asyncio.ensure_future(auth.principal(basic(f"system-crm:guess{i}"))) for i in range(400)
        ]
        await asyncio.sleep(0)
        with pytest.raises(RuntimeUnavailable):  # the common lane is full ...
            await auth.principal(basic("system-crm:other"))
        started = time.perf_counter()
        assert await auth.principal(basic("system-crm:good")) == "system-crm"  # ... not its
        assert time.perf_counter() - started < 0.5  # one check, not the flood's 10 s
        await asyncio.gather(*guesses, return_exceptions=True)

    asyncio.run(run())


def test_a_password_refused_on_renewal_leaves_the_renewal_lane() -> None:
    broker, clock = Broker({"system-crm": "good"}, delay=0.05), Clock()
    auth = BrokerAuthenticator(broker.check, max_waiting=2, ttl=60, failure_ttl=5, clock=clock)

    async def run() -> None:
        assert await auth.principal(basic("system-crm:good")) == "system-crm"
        broker.passwords["system-crm"] = "rotated"
        clock.now += 61
        with pytest.raises(Unauthenticated):
            await auth.principal(basic("system-crm:good"))
        clock.now += 6  # the refusal forgotten: the old password waits in the common lane
        guesses = [asyncio.ensure_future(auth.principal(basic(f"dpo:g{i}"))) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(RuntimeUnavailable):
            await auth.principal(basic("system-crm:good"))
        await asyncio.gather(*guesses, return_exceptions=True)

    asyncio.run(run())
