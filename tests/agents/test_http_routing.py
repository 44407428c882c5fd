"""Forwarding a question to the partition's owner (agents.http.routed): an owner that
goes away mid-answer is a 503 to retry, never a 500 (an independent review, session
22: a connector retries only on 503, so a key request failed outright during a
worker's restart)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from agents import http


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
