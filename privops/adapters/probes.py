"""Is the broker answering, is the registry answering? Real requests with short timeouts.

A TCP connect is not enough: a stopped (SIGSTOP) or overloaded broker still accepts
connections. The broker probe asks for cluster metadata on a client it keeps open; the
registry probe lists subjects.
"""

from __future__ import annotations

import asyncio
import ssl
from functools import cache
from pathlib import Path

import httpx
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from privops.adapters.kafka import Client, resolve
from privops.core.errors import ConfigError

TIMEOUT_SECONDS = 3.0


class BrokerProbe:
    """``client``: options from ``client_options`` (or a bare bootstrap address, then as
    this process's own principal): a secured broker answers nobody else."""

    def __init__(self, client: Client, timeout: float = TIMEOUT_SECONDS) -> None:
        self.client = client
        self.bootstrap = client if isinstance(client, str) else str(client["bootstrap_servers"])
        self.timeout = timeout
        self._client: AIOKafkaClient | None = None

    async def problem(self) -> str | None:
        """None when the broker answered a metadata request, else what went wrong."""
        try:
            if self._client is None:
                # Resolved here, not at construction: the worker builds its probe at import.
                self._client = AIOKafkaClient(
                    **resolve(self.client), request_timeout_ms=int(self.timeout * 1000)
                )
                await asyncio.wait_for(self._client.bootstrap(), self.timeout)
            node = self._client.get_random_node()
            if node is None:
                return f"Kafka broker at {self.bootstrap} answered with no brokers"
            # Brokers only, no topics: the whole cluster's topic metadata, decoded in
            # Python every probe, was ~6% of a busy worker's CPU.
            answer = await asyncio.wait_for(
                self._client.send(node, MetadataRequest(topics=[])), self.timeout
            )
        except ConfigError as exc:
            return f"cannot connect to the Kafka broker at {self.bootstrap}: {exc}"
        except (TimeoutError, KafkaError, OSError) as exc:
            await self.close()
            return f"Kafka broker at {self.bootstrap} not answering ({type(exc).__name__})"
        if not answer.brokers:
            return f"Kafka broker at {self.bootstrap} answered with no brokers"
        return None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


@cache
def _tls(ca: Path | None = None) -> ssl.SSLContext:
    """The TLS context trusting ``ca`` (default: httpx's, the system's), built once:
    building it loads the CA bundle, which cost a busy worker ~10% of its CPU when every
    probe did it."""
    if ca is not None:
        return ssl.create_default_context(cafile=str(ca))
    return httpx.create_ssl_context()


async def registry_problem(url: str, ca: Path | None = None) -> str | None:
    """None when the schema registry answered, else what went wrong. An answer refusing
    credentials is an answer: the registry is up, and what is refused says so itself."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, verify=_tls(ca)) as client:
            response = await client.get(f"{url.rstrip('/')}/subjects")
    except httpx.HTTPError as exc:
        return f"schema registry at {url} not answering ({type(exc).__name__})"
    if response.status_code >= 500:
        return f"schema registry at {url} answered {response.status_code}"
    return None
