"""Forwarding a question to the partition's owner (agents.http.routed): an owner that
goes away mid-answer is a 503 to retry, never a 500 (an independent review, session
22: a connector retries only on 503, so a key request failed outright during a
worker's restart). Forwarding to an owner that serves HTTPS checks its certificate
against PRIVOPS_WEB_CA, and never sends the caller's credentials to one it cannot
trust. A request the request index has not seen yet is answered by its subject's
owner, never from a local copy that may be a standby's."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from agents import http
from privops.adapters import metrics, web_tls
from privops.adapters.settings import Settings
from privops.adapters.signing_keys import signers_fingerprint
from privops.adapters.web_tls import WebCertificates
from privops.core.request import RequestRecord
from privops.core.signing import Signers
from privops.core.vocab import RequestState, RequestType
from streams import health as worker_health
from streams.tables import request_index, requests
from tests.agents.signers import TEST_KEY, trust


class Answers:
    """What ``routed`` answers through its view: (status, body)."""

    def json(self, body: Any, status: int = 200) -> tuple[int, Any]:
        return status, body

    def text(self, body: str, content_type: str = "", status: int = 200) -> tuple[int, Any]:
        return status, json.loads(body) if content_type == "application/json" else body


@pytest.fixture
async def hanging_up() -> AsyncIterator[URL]:
    """An owner that reads the question, starts its answer and goes away (a worker
    stopping mid-answer): the body is cut short."""

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"consent"')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield URL(f"http://127.0.0.1:{port}")


async def test_an_owner_that_goes_away_mid_answer_is_a_503(
    app: Any, monkeypatch: pytest.MonkeyPatch, hanging_up: URL
) -> None:
    monkeypatch.setattr(app.router, "key_store", lambda _table, _key: hanging_up)
    session = aiohttp.ClientSession()  # on this test's event loop
    monkeypatch.setattr(app, "_http_client", session)
    request = make_mocked_request("GET", "/consent/S1?purpose=marketing")
    try:
        answered: Any = await http.routed(Answers(), request, "S1")  # type: ignore[arg-type]
    finally:
        await session.close()
    status, body = answered
    assert status == 503
    assert "retry" in body["error"]


@asynccontextmanager
async def serving(
    path: str,
    handler: Callable[[web.Request], Awaitable[web.Response]],
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[URL]:
    """A real aiohttp server on loopback answering GET ``path`` (HTTPS with ``tls``)."""
    owner = web.Application()
    owner.router.add_get(path, handler)
    runner = web.AppRunner(owner)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    try:
        yield URL(f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()


@pytest.fixture
async def tls_owner(tmp_path: Path) -> AsyncIterator[tuple[URL, WebCertificates, list[str]]]:
    """An owner serving HTTPS with a development certificate for 127.0.0.1; it answers
    with JSON and keeps the Authorization headers it was sent."""
    made = web_tls.development_certificates(tmp_path / "tls", ["127.0.0.1"])
    settings = Settings(web_tls_cert=made.cert, web_tls_key=made.key, home=tmp_path)
    seen: list[str] = []

    async def consent(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"subject": request.match_info["sid"], "tls": request.secure})

    async with serving("/consent/{sid}", consent, web_tls.server_context(settings)) as url:
        yield url, made, seen


async def forward(app: Any, monkeypatch: pytest.MonkeyPatch, owner: URL) -> Any:
    monkeypatch.setattr(app.router, "key_store", lambda _table, _key: owner)
    session = aiohttp.ClientSession()
    monkeypatch.setattr(app, "_http_client", session)
    request = make_mocked_request(
        "GET", "/consent/S1", headers={"Authorization": "Basic ZHBvOnNlY3JldA=="}
    )
    try:
        return await http.routed(Answers(), request, "S1")  # type: ignore[arg-type]
    finally:
        await session.close()


async def test_a_question_is_forwarded_over_tls_to_an_owner_the_ca_vouches_for(
    app: Any, monkeypatch: pytest.MonkeyPatch, tls_owner: tuple[URL, WebCertificates, list[str]]
) -> None:
    owner, made, seen = tls_owner
    trusted = Settings(web_ca=made.ca, home=made.ca.parent)
    monkeypatch.setattr(http, "_owner_tls", lambda: web_tls.client_context(trusted))
    status, body = await forward(app, monkeypatch, owner)
    assert (status, body) == (200, {"subject": "S1", "tls": True})
    assert seen == ["Basic ZHBvOnNlY3JldA=="]  # the owner checks the caller again


async def test_an_owner_whose_certificate_is_not_trusted_is_never_sent_the_credentials(
    app: Any,
    monkeypatch: pytest.MonkeyPatch,
    tls_owner: tuple[URL, WebCertificates, list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Told as a 502 and logged: a 503 "moving, retry" hid an impostor or an expired
    certificate behind a routine rebalance, and the log said nothing (review, session
    43)."""
    owner, made, seen = tls_owner
    system_only = Settings(home=made.ca.parent)  # no PRIVOPS_WEB_CA: the system's bundle
    monkeypatch.setattr(http, "_owner_tls", lambda: web_tls.client_context(system_only))
    monkeypatch.setattr(http, "_UNTRUSTED", http.Quieted("not forwarded"))
    with caplog.at_level(logging.WARNING, logger=http.log.name):
        status, body = await forward(app, monkeypatch, owner)
    assert status == 502
    assert "is not reachable safely" in body["reason"]
    assert "certificate" in body["reason"]
    assert seen == []  # the handshake failed before any header was sent
    (line,) = [r.getMessage() for r in caplog.records if "not forwarding" in r.getMessage()]
    assert str(owner) in line


@pytest.fixture
async def owner_of_requests() -> AsyncIterator[tuple[URL, list[str]]]:
    """The owner of a subject's partition, answering /requests/{id} from its own table."""
    asked: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        asked.append(request.match_info["rid"])
        return web.json_response({"request_id": request.match_info["rid"], "state": "closed"})

    async with serving("/requests/{rid}", answer) as url:
        yield url, asked


async def test_a_request_the_index_has_not_seen_is_answered_by_its_subjects_owner(
    app: Any, monkeypatch: pytest.MonkeyPatch, owner_of_requests: tuple[URL, list[str]]
) -> None:
    """The request index is behind, and this worker holds a copy of the request (a
    standby's, behind its owner, which has closed it): the copy only says whose it is,
    and the owner answers (an independent review, session 22: the copy was answered)."""
    owner, asked = owner_of_requests
    today = datetime.now(UTC).date()
    stale = RequestRecord(
        request_id="R-standby",
        request_type=RequestType.erasure,
        subject_id="S-elsewhere",
        actor="dpo",
        state=RequestState.in_progress,
        received_on=today,
        due_on=today + timedelta(days=30),
        created_at=datetime.now(UTC),
    )
    monkeypatch.setitem(requests.data, "R-standby", stale.model_dump(mode="json"))
    assert request_index.get("R-standby") is None
    owners: list[str] = []

    def key_store(_table: str, key: str) -> URL:
        owners.append(key)
        return owner

    monkeypatch.setattr(app.router, "key_store", key_store)
    monkeypatch.setattr(http, "_authenticator", lambda: None)  # not what is tested here
    session = aiohttp.ClientSession()
    monkeypatch.setattr(app, "_http_client", session)
    request = make_mocked_request("GET", "/requests/R-standby")
    try:
        answered: Any = await http.request_view.get(Answers(), request, "R-standby")
    finally:
        await session.close()
    assert answered == (200, {"request_id": "R-standby", "state": "closed"})
    assert (owners, asked) == (["S-elsewhere"], ["R-standby"])


@pytest.fixture
async def plain_owner() -> AsyncIterator[tuple[URL, list[str]]]:
    """An owner on plain HTTP that keeps the Authorization headers it was sent, and
    redirects /moved to /consent/S2."""
    seen: list[str] = []

    async def consent(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.match_info["sid"] == "moved":
            raise web.HTTPFound("/consent/S2")
        return web.json_response({"subject": request.match_info["sid"]})

    async with serving("/consent/{sid}", consent) as url:
        yield url, seen


async def test_a_worker_serving_tls_never_forwards_credentials_over_plain_http(
    app: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, plain_owner: tuple[URL, list[str]]
) -> None:
    """An independent review (session 23): a worker serving TLS forwarded the caller's
    password to an owner advertising http:// (a rolling migration, a worker missing its
    certificate, NODE_CANONICAL_URL): 502 instead, and nothing sent."""
    owner, seen = plain_owner
    made = web_tls.development_certificates(tmp_path / "tls", ["127.0.0.1"])
    serving = Settings(web_tls_cert=made.cert, web_tls_key=made.key, home=tmp_path)
    monkeypatch.setattr(http, "settings", serving)
    status, body = await forward(app, monkeypatch, owner)
    assert status == 502
    assert "this worker serves TLS" in body["reason"]
    assert seen == []


async def test_a_redirect_from_the_owner_is_relayed_not_followed(
    app: Any, monkeypatch: pytest.MonkeyPatch, plain_owner: tuple[URL, list[str]]
) -> None:
    owner, seen = plain_owner
    monkeypatch.setattr(app.router, "key_store", lambda _table, _key: owner)
    session = aiohttp.ClientSession()
    monkeypatch.setattr(app, "_http_client", session)
    request = make_mocked_request("GET", "/consent/moved", headers={"Authorization": "Basic eA=="})
    try:
        status, _body = await http.routed(Answers(), request, "S1")  # type: ignore[arg-type,misc]
    finally:
        await session.close()
    assert status == 302
    assert seen == ["Basic eA=="]  # asked once, at the owner's own address


async def test_a_forwarded_request_question_finding_nothing_is_a_503_not_a_404(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sender forwarded because its copy names a subject of this worker's; this
    worker has neither an index entry nor a copy (the partition moved on): retry, do not
    tell the DPO the request does not exist (an independent review, session 23)."""
    monkeypatch.setattr(http, "_authenticator", lambda: None)
    read = asyncio.Event()
    read.set()  # the request index is read: its "not there" is sure
    monkeypatch.setattr(request_index, "ready", read)
    forwarded = make_mocked_request("GET", "/requests/R-gone", headers={http.ROUTED_HEADER: "1"})
    status, body = await http.request_view.get(Answers(), forwarded, "R-gone")
    assert status == 503
    assert "retry" in body["error"]
    asked = make_mocked_request("GET", "/requests/R-gone")
    status, _body = await http.request_view.get(Answers(), asked, "R-gone")
    assert status == 404
    monkeypatch.setattr(request_index, "ready", asyncio.Event())  # still being read
    status, body = await http.request_view.get(Answers(), asked, "R-gone")
    assert (status, "retry" in body["error"]) == (503, True)


async def test_health_names_the_workers_release(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """During an upgrade the older workers of the group are the ones to find (their
    answers to newer CLIs are 404s): /health says which release each runs."""
    from privops import __version__

    monkeypatch.setattr(http, "owned_partitions", list)  # no consumer runs here
    monkeypatch.setattr(http, "standby_partitions", list)
    status, body = await http.health.get(Answers(), make_mocked_request("GET", "/health"))
    assert status in (200, 503)  # the test's worker is not serving: its release still shows
    assert body["version"] == __version__


async def test_livez_answers_while_health_does_not(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Liveness apart from readiness: a worker recovering its tables (here: never
    serving) is alive, and a probe restarting it would only start the recovery again."""
    monkeypatch.setattr(http, "owned_partitions", list)
    monkeypatch.setattr(http, "standby_partitions", list)
    status, _ = await http.health.get(Answers(), make_mocked_request("GET", "/health"))
    assert status == 503
    status, body = await http.livez.get(Answers(), make_mocked_request("GET", "/livez"))
    assert (status, body["status"]) == (200, "alive")


async def test_health_names_the_signer_set_and_follows_a_revocation_with_no_command(
    app: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Review, session 45: a key revoked in one host's signers file was still taken by
    workers whose copy was not replaced, and nothing showed it. /health names the set each
    worker trusts, and the health check re-reads the file, so a worker with no command
    coming shows a revocation too (the workflow agent looks only while commands come)."""

    async def fine() -> None:
        return None

    monkeypatch.setattr(http, "owned_partitions", list)
    monkeypatch.setattr(http, "standby_partitions", list)
    monkeypatch.setattr(worker_health._broker, "problem", fine)
    monkeypatch.setattr(worker_health, "registry_problem", lambda _url, _ca=None: fine())
    monkeypatch.setattr(worker_health, "stalled_agents", list)
    monkeypatch.setattr(worker_health, "dropped_flushes", list)
    path = trust(monkeypatch, tmp_path)
    trusted = Signers.parse(path.read_bytes(), "the test's signers file")
    _, body = await http.health.get(Answers(), make_mocked_request("GET", "/health"))
    assert body["signers_fingerprint"] == signers_fingerprint(trusted)

    revoked = trusted.revoked(TEST_KEY.key_id, datetime.now(UTC))
    copy = tmp_path / "signers.json.new"
    copy.write_bytes(revoked.dump())
    copy.chmod(0o644)
    copy.replace(path)  # copied in by rename, as an operator does
    await worker_health.refresh(list)
    _, body = await http.health.get(Answers(), make_mocked_request("GET", "/health"))
    assert body["signers_fingerprint"] == signers_fingerprint(revoked)
    assert (
        metrics.REGISTRY.get_sample_value(
            "privops_signers_info", {"fingerprint": signers_fingerprint(revoked)}
        )
        == 1
    )
    assert (
        metrics.REGISTRY.get_sample_value(
            "privops_signers_info", {"fingerprint": signers_fingerprint(trusted)}
        )
        is None
    )


class _ProvenSystem:
    """An authenticator that proves every caller to be crm's principal."""

    async def principal(self, _authorization: str | None) -> str:
        return "system-crm"


@pytest.mark.parametrize(
    "scope",
    [
        "ann.smith@example.com",
        "07700900123",
        "retained:purchases:2032-03-30",
        f"retained:contact{'x' * 38}:20320330",
    ],
    ids=[
        "an-email",
        "a-phone-number-a-valid-scope",
        "another-systems-scope",
        "one-whose-date-respelled-is-no-scope",
    ],
)
async def test_a_refused_key_scope_is_never_logged(
    app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, scope: str
) -> None:
    """The scope is the caller's text, logged before it was validated: a system could
    put an email address into the worker's log (review, session 34). The caller is
    still told which scope was refused."""
    monkeypatch.setattr(http, "_authenticator", lambda: _ProvenSystem())
    monkeypatch.setattr(http, "_FORBIDDEN", http.Quieted("refused"))  # each case says it
    request = make_mocked_request(
        "POST", "/subject-keys/S1", headers={"Authorization": "Basic c3lzdGVtLWNybTpwdw=="}
    )
    with caplog.at_level(logging.DEBUG):
        answered: Any = await http._scope_refused(Answers(), request, scope)  # type: ignore[arg-type]
    status, body = answered
    assert status == 403
    assert body["error"] == "scope not allowed"
    assert "system-crm may not have a key" in caplog.text
    assert scope not in caplog.text
    assert "example" not in caplog.text
    assert "07700" not in caplog.text


def test_a_flood_of_refusals_is_logged_once_per_window_with_its_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anyone who reaches the port can send refused credentials: each wrote a line."""
    now = [100.0]
    quiet = http.Quieted("refused", seconds=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=http.log.name):
        for _ in range(500):
            quiet.warning("HTTP API: %s refused", "GET")
        now[0] += 3600  # the next refusal an hour on tells the count, and since when
        quiet.warning("HTTP API: %s refused", "GET")
        quiet.warning("HTTP API: %s refused", "GET")
        now[0] += 10
        quiet.warning("HTTP API: %s refused", "GET")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "HTTP API: GET refused",
        "HTTP API: GET refused (and 499 more refused in the 3600 s since)",
        "HTTP API: GET refused (and 1 more refused in the 10 s since)",
    ]


@pytest.mark.parametrize("subject_id", ["S" * 8_000, "", "S\n1"], ids=["8kB", "empty", "newline"])
async def test_what_is_no_subject_id_is_refused_before_it_is_hashed_or_forwarded(
    app: Any, monkeypatch: pytest.MonkeyPatch, subject_id: str
) -> None:
    """Each new 8 kB id stayed in the partition cache (~0.5 GB a worker from any
    system's principal) and was forwarded to the owner to be refused there (review,
    session 43)."""

    def no_owner(_table: str, _key: str) -> URL:
        raise AssertionError("looked up an owner for what is no subject id")

    monkeypatch.setattr(app.router, "key_store", no_owner)
    request = make_mocked_request("GET", "/consent/x")
    answered: Any = await http.routed(Answers(), request, subject_id)  # type: ignore[arg-type]
    status, body = answered
    assert status == 400
    assert body["error"] == "bad subject id"
    assert subject_id not in body["reason"] or not subject_id
