"""Questions to the running worker over its HTTP API, with the CLI's exit codes.

3 when the worker does not answer (with what to run), 4 when it does not know the thing
asked about, 1 when it answers something unusable or refuses the caller. The CLI asks as
its Kafka principal (PRIVOPS_KAFKA_PRINCIPAL, else ``dpo``) with its password, which the
worker checks with the broker (privops.adapters.api_auth).
"""

from __future__ import annotations

from typing import Any

import httpx
from rich.markup import escape

from privops.adapters import web_tls
from privops.adapters.acls import DPO
from privops.adapters.api_auth import api_auth
from privops.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    fail,
    handled,
    settings,
)

_WORKER_TIMEOUT = 5.0


def worker_url(path: str) -> str:
    """``path`` on the worker's API (PRIVOPS_WEB_URL, else PRIVOPS_WEB_HOST:PORT; https
    with PRIVOPS_WEB_CA: privops.adapters.web_tls.api_url, which refuses plain HTTP
    beyond loopback outside dev)."""
    return web_tls.api_url(settings()) + path


def worker_get(path: str, params: dict[str, str] | None = None) -> httpx.Response:
    """GET from the worker's HTTP API; exit 3 with what to run if it is not answering."""
    with handled():
        url = worker_url(path)
        auth = api_auth(settings(), default=DPO)
        trust = web_tls.client_context(settings())
    try:
        with httpx.Client(timeout=_WORKER_TIMEOUT, auth=auth, verify=trust) as client:
            return client.get(url, params=params)
    except httpx.HTTPError as exc:
        fail(unreachable(worker_url(""), exc), EXIT_UNAVAILABLE)


def unreachable(base: str, exc: httpx.HTTPError) -> str:
    """What to tell the DPO when the worker's API did not answer: a certificate this
    machine does not trust, HTTP spoken to an HTTPS worker, or no worker at all."""
    if untrusted := web_tls.certificate_refused(exc):
        return (
            f"the privops worker at {base} presented a certificate this machine does not "
            f"trust ({untrusted}); set PRIVOPS_WEB_CA to the CA that signed it "
            "(`privops local web-cert` prints it for a development certificate)"
        )
    if base.startswith("http://") and isinstance(exc, httpx.RemoteProtocolError):
        return (
            f"the privops worker at {base} hung up without an answer: if it serves HTTPS, "
            "set PRIVOPS_WEB_URL=https://HOST:PORT"
        )
    return (
        f"the privops worker at {base} is unreachable ({type(exc).__name__}); "
        "start it with `privops worker` (or run `privops demo`)"
    )


def response_json(resp: httpx.Response) -> dict[str, Any]:
    """The worker's JSON body, or exit 1 if the worker answered something else."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        fail(
            f"the worker answered {resp.status_code} without a JSON object at {resp.url}",
            EXIT_FAILED,
        )
    return body


def worker_json(
    path: str, *, not_found: str, params: dict[str, str] | None = None
) -> dict[str, Any]:
    """The worker's answer to a GET; exit 4 with `not_found` on 404, 1 on any other error."""
    resp = worker_get(path, params)
    body = response_json(resp)
    if resp.status_code == 404:
        fail(not_found, EXIT_NOT_FOUND)
    if resp.status_code in (401, 403):
        who = settings().kafka_principal or DPO
        fail(
            f"the worker refused principal {who!r} ({resp.status_code}: "
            f"{escape(str(body.get('reason') or body.get('error')))}); see "
            "`privops local credentials`, or set PRIVOPS_KAFKA_PRINCIPAL and "
            "PRIVOPS_KAFKA_PASSWORD",
            EXIT_FAILED,
        )
    if resp.status_code >= 400:
        fail(
            f"the worker answered {resp.status_code}: {escape(str(body.get('error', body)))}",
            EXIT_FAILED,
        )
    return body
