"""The worker's HTTP API answers only proven callers, on the real secured broker.

A caller proves its Kafka principal with HTTP Basic and its SCRAM password, which the
worker checks with the broker (privops.adapters.api_auth). Without credentials, with a
wrong password or an unknown principal: 401. A principal that may not ask: 403 (a
system reading requests, the brokers' admin). Faust's own /table and /router pages,
which would serve any table's values to anyone, are not served. /health and /metrics
stay open for probes and Prometheus. The CLI says which principal was refused.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from privops.adapters import credentials
from privops.adapters.acls import ADMIN, DPO, WORKER, system_principal
from privops.adapters.settings import Settings
from privops.core.fieldcrypt import is_encrypted, parse_field
from privops.core.vocab import System
from tests.conftest import REPO, WorkerProcess
from tests.integration.helpers import http_json

pytestmark = pytest.mark.integration

CRM = system_principal(System.crm)
PURCHASES = "retained:purchases:2032-03-31"
QUESTIONS = [
    ("GET", "/consent/CUST-API-1"),
    ("GET", "/consent/CUST-API-1?purpose=marketing&channel=email"),
    ("GET", "/requests/REQ-API-1"),
    ("GET", "/subject-keys/CUST-API-1"),
    ("POST", "/subject-keys/CUST-API-1"),
    ("POST", "/subject-keys/CUST-API-1/seal"),
]


def ask(
    worker: WorkerProcess,
    method: str,
    path: str,
    authorization: str | None,
    body: Any = None,
) -> tuple[int, Any, str | None]:
    """Status, JSON body and WWW-Authenticate of one question with this header (and
    ``body`` as JSON: a seal's fields by default)."""
    headers = {"Authorization": authorization} if authorization else {}
    if path.endswith("/seal") and body is None:
        body = {"fields": {"reason": "Ann Jones's solicitor"}}
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"{worker.url}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, resp.read(), resp.headers.get("WWW-Authenticate")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("WWW-Authenticate")


def basic(principal: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{password}".encode()).decode()


def password(settings: Settings, principal: str) -> str:
    return credentials.password(settings.kafka_credentials_file, principal)


@pytest.mark.parametrize(("method", "path"), QUESTIONS)
def test_no_wrong_or_unknown_credentials_get_401(
    local_runtime: Settings, worker: WorkerProcess, method: str, path: str
) -> None:
    right = password(local_runtime, DPO)
    for authorization in (
        None,
        "Bearer " + right,
        basic(DPO, right + "x"),
        basic(DPO, password(local_runtime, WORKER)),  # another principal's password
        basic("nobody", right),
    ):
        status, body, challenge = ask(worker, method, path, authorization)
        assert status == 401, (authorization and authorization[:12], status, body)
        assert challenge == 'Basic realm="privops"'
        assert right.encode() not in body


def test_each_principal_asks_only_what_it_may(
    local_runtime: Settings, worker: WorkerProcess
) -> None:
    dpo = basic(DPO, password(local_runtime, DPO))
    crm = basic(CRM, password(local_runtime, CRM))
    admin = basic(ADMIN, password(local_runtime, ADMIN))

    # Past the check, the worker answers on the merits: nobody by these ids.
    assert ask(worker, "GET", "/consent/CUST-API-2", dpo)[0] == 404
    assert ask(worker, "GET", "/requests/REQ-API-2", dpo)[0] == 404
    assert ask(worker, "GET", "/consent/CUST-API-2", crm)[0] == 404
    status, body, _ = ask(worker, "POST", "/subject-keys/CUST-API-2", crm)
    assert status == 200, body
    # A retained key outlives an erasure while its category is kept: a system has keys
    # only of its own categories (crm holds no purchases), made or not; the DPO any.
    purchases = "/subject-keys/CUST-API-2?scope=" + PURCHASES
    status, body, _ = ask(worker, "POST", purchases, crm)
    assert status == 403, body
    assert b"of a category the data map says it holds" in body
    mine = "/subject-keys/CUST-API-2?scope=retained:contact:2030-01-31"
    assert ask(worker, "POST", mine, crm)[0] == 200
    assert ask(worker, "POST", purchases, dpo)[0] == 200
    assert ask(worker, "POST", purchases, crm)[0] == 403  # made now, still not crm's
    # A system never reads requests, nor has the key service seal for it (it seals its
    # own events with its keys); the brokers' admin asks nothing, its right password
    # refused as a wrong one (the API is no oracle for it: review, session 43).
    assert ask(worker, "GET", "/requests/REQ-API-2", crm)[0] == 403
    assert ask(worker, "POST", "/subject-keys/CUST-API-2/seal", crm)[0] == 403
    for method, path in QUESTIONS:
        assert ask(worker, method, path, admin)[0] == 401, path


def test_the_key_service_seals_the_dpos_text_under_the_subjects_own_key(
    worker: WorkerProcess,
) -> None:
    """What the CLI seals a command's free text with (privops.cli.request.sealing): the
    value comes back as ciphertext under the subject's current key, which opens it; a
    body that is not one gets a 400 saying what is wrong, and no key is made for it."""
    url = f"{worker.url}/subject-keys/CUST-API-5/seal"
    status, body = http_json(url, method="POST", body={"fields": {"reason": "Ann J"}}, timeout=15)
    assert status == 200, body
    sealed = body["fields"]["reason"]
    assert is_encrypted(sealed)
    assert parse_field(sealed)[0] == body["key_id"]
    assert body["key_id"].startswith("CUST-API-5/main/")
    _, keys = http_json(f"{worker.url}/subject-keys/CUST-API-5")
    assert [k["key_id"] for k in keys["keys"]] == [body["key_id"]]
    for bad, says in (
        (None, "JSON object"),
        ({"fields": {}}, "object of 1 to"),
        ({"fields": {"reason": 7}}, "a value is a string"),
        ({"fields": {"reason": sealed}}, "sealed already"),
    ):
        status, answer = http_json(
            f"{worker.url}/subject-keys/CUST-API-6/seal", method="POST", body=bad or []
        )
        assert status == 400, (bad, answer)
        assert says in answer["reason"]
    assert http_json(f"{worker.url}/subject-keys/CUST-API-6")[1]["keys"] == []
    # An access request's note makes no key for someone privops holds nothing of.
    stranger = {"fields": {"reason": "by post"}, "new_key": False}
    status, answer = http_json(
        f"{worker.url}/subject-keys/CUST-API-7/seal", method="POST", body=stranger, timeout=15
    )
    assert (status, answer["error"]) == (404, "no key")
    assert http_json(f"{worker.url}/subject-keys/CUST-API-7")[1]["keys"] == []
    status, answer = http_json(
        f"{worker.url}/subject-keys/CUST-API-5/seal", method="POST", body=stranger, timeout=15
    )
    assert (status, answer["key_id"]) == (200, body["key_id"])  # a key it has is used


def test_faust_table_and_router_pages_are_not_served(
    local_runtime: Settings, worker: WorkerProcess
) -> None:
    dpo = basic(DPO, password(local_runtime, DPO))
    for path in ("/table/", "/table/consent/", "/table/consent/CUST-API-3/", "/router/"):
        for authorization in (None, dpo):
            assert ask(worker, "GET", path, authorization)[0] == 404, path


def test_probes_and_prometheus_need_no_credentials(worker: WorkerProcess) -> None:
    assert ask(worker, "GET", "/health", None)[0] in (200, 503)
    assert ask(worker, "GET", "/metrics", None)[0] == 200
    assert http_json(f"{worker.url}/health", principal=None)[0] in (200, 503)


def as_dpo_with_a_wrong_password(worker: WorkerProcess, *args: str) -> tuple[int, str]:
    """Exit code and output (one line) of ``privops ARGS`` run as ``dpo`` with a wrong
    Kafka password (the API's credential too)."""
    proc = subprocess.run(
        [sys.executable, "-m", "privops.cli.main", *args],
        capture_output=True,
        text=True,
        env={
            **worker.env,
            "COLUMNS": "200",
            "PRIVOPS_KAFKA_PRINCIPAL": DPO,
            "PRIVOPS_KAFKA_PASSWORD": "not-the-password",
        },
        cwd=REPO,
        timeout=120,
    )
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def test_the_cli_names_the_principal_the_worker_refused(worker: WorkerProcess) -> None:
    code, said = as_dpo_with_a_wrong_password(worker, "request", "status", "REQ-API-4")
    # 2 (configuration to fix), never 1, which a script reads as "not allowed".
    assert code == 2, said
    assert "refused principal 'dpo'" in said
    assert "401" in said
    assert "not-the-password" not in said


def test_a_command_the_broker_refuses_the_credentials_of_says_so_not_unreachable(
    worker: WorkerProcess,
) -> None:
    """aiokafka's bootstrap logs the refusal and raises "unable to bootstrap": a wrong
    password was reported as a broker to start with `privops local up`, exit 3 (review,
    session 43). It is configuration to fix: exit 2, naming the principal."""
    code, said = as_dpo_with_a_wrong_password(worker, "audit", "show", "REQ-API-5")
    assert code == 2, said
    assert "refused the credentials of principal 'dpo'" in said
    assert "local up" not in said
    assert "not-the-password" not in said
