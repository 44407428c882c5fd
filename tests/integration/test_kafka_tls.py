"""SASL_SSL, the protocol a production cluster speaks (README, "Operating privops"), on
a real broker: the local runtime's node with its client listener on SASL_SSL
(`PRIVOPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL privops local up`: a development CA made at
its first start), on ports of its own beside the session's broker.

The product on it, end to end: a worker connects over TLS as `privops` (its tables,
changelogs and producer), a system's consent event produced over TLS is decided, the
worker's HTTP API proves callers with a SCRAM exchange over TLS, and the DPO's CLI asks
it. A client that does not trust the CA, or speaks SASL without TLS, gets nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from privops.adapters import cluster, credentials
from privops.adapters.acls import DPO
from privops.adapters.kafka import client_options
from privops.adapters.settings import Settings
from tests.conftest import REPO, WorkerProcess, port, start_worker
from tests.integration.helpers import own_node, produce, wait_for
from tests.integration.test_scale_out import consent

pytestmark = pytest.mark.integration

BROKER_PORT = port(570)
HOME = Path(tempfile.gettempdir()) / f"privops-sasl-ssl-{BROKER_PORT}"
CLI = [sys.executable, "-m", "privops.cli.main"]


def over_tls() -> dict[str, str]:
    """The environment of a process of the session that talks to the SASL_SSL node."""
    return {
        "PRIVOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{BROKER_PORT}",
        "PRIVOPS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PRIVOPS_KAFKA_SSL_CAFILE": str(cluster.kafka_ca(HOME)),
        "PRIVOPS_KAFKA_CREDENTIALS_FILE": str(credentials.credentials_path(HOME)),
        "PRIVOPS_REPLICATION_FACTOR": "1",
    }


@pytest.fixture(scope="module")
def tls_node(local_runtime: Settings) -> Iterator[Settings]:
    """The SASL_SSL node, and the session's settings pointed at it."""
    with own_node(HOME, BROKER_PORT, "SASL_SSL"):
        env = over_tls()
        yield local_runtime.model_copy(
            update={
                "kafka_bootstrap": env["PRIVOPS_KAFKA_BOOTSTRAP"],
                "kafka_security_protocol": "SASL_SSL",
                "kafka_ssl_cafile": Path(env["PRIVOPS_KAFKA_SSL_CAFILE"]),
                "kafka_credentials_file": Path(env["PRIVOPS_KAFKA_CREDENTIALS_FILE"]),
                "replication_factor": 1,
            }
        )


def ask(worker: WorkerProcess, path: str, principal: str, password: str) -> tuple[int, Any]:
    token = base64.b64encode(f"{principal}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{worker.url}{path}", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def _reaches(options: dict[str, Any]) -> bool:
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        await asyncio.wait_for(admin.list_topics(), 10)
    except (KafkaConnectionError, KafkaError, TimeoutError, OSError):
        return False
    finally:
        await admin.close()
    return True


def test_the_product_runs_over_sasl_ssl(tls_node: Settings, uid: str) -> None:
    subject = f"TLS-KAFKA-{uid}"
    worker = start_worker(tls_node, f"kafka-tls-{uid}", web_port=port(256), extra_env=over_tls())
    try:
        produce(tls_node, [consent(subject, 1, given=True)])
        dpo = credentials.read_credentials(tls_node.kafka_credentials_file)[DPO]
        path = f"/consent/{subject}?purpose=marketing&channel=sms"
        wait_for(
            "the consent, decided from the event read over TLS",
            lambda: ask(worker, path, DPO, dpo)[0] == 200,
        )
        body = json.loads(ask(worker, path, DPO, dpo)[1])
        assert body["allowed"] is True, body
        # The API's SCRAM check runs over TLS too: a wrong password is refused.
        assert ask(worker, path, DPO, dpo + "x")[0] == 401
        # The DPO's CLI, with the same settings: over the API, then over Kafka (a signed
        # command produced, and the worker's answer read, over TLS).
        for args in (
            ["consent", "check", subject, "--purpose", "marketing", "--channel", "sms"],
            ["request", "object", "-q", "--subject", subject, "--scope", "direct_marketing"],
        ):
            out = subprocess.run(
                [*CLI, *args],
                capture_output=True,
                text=True,
                env={**worker.env, "COLUMNS": "200"},
                cwd=REPO,
                timeout=60,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            assert out.stdout.strip(), out.stderr
    finally:
        worker.stop()


def test_the_listener_refuses_clients_without_tls_or_the_ca(tls_node: Settings) -> None:
    good = client_options(tls_node, DPO)
    assert asyncio.run(_reaches(good))
    without_ca = tls_node.model_copy(update={"kafka_ssl_cafile": None})
    assert not asyncio.run(_reaches(client_options(without_ca, DPO)))
    plain = {**good, "security_protocol": "SASL_PLAINTEXT"}
    plain.pop("ssl_context")
    assert not asyncio.run(_reaches(plain))
