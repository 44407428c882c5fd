"""Questions to the running worker over its HTTP API, with the CLI's exit codes.

Exit 1 means "failed, not allowed, rejected" to a script (`consent check` exits 1 for
"may not contact"), so no trouble with the question itself ever exits 1 here: 3 when the
worker does not answer, cannot answer now (5xx: a partition moving, the broker not
checking credentials) or answers with something that is not the worker's JSON (with what
to run); 2 when it refuses the caller (401/403) or the question (400); 4 when it does
not know the thing asked about. The CLI asks as its Kafka principal
(PRIVOPS_KAFKA_PRINCIPAL, else ``dpo``) with its password, which the worker checks with
the broker (privops.adapters.api_auth).
"""

from __future__ import annotations

import time
from typing import Any, Final

import httpx
from rich.markup import escape

from privops.adapters import web_tls
from privops.adapters.acls import DPO
from privops.adapters.api_auth import api_auth
from privops.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    fail,
    handled,
    settings,
)

_WORKER_TIMEOUT = 5.0
MOVING_RETRY_SECONDS: Final = 10.0
"""How long a 503 (a partition moving between workers) is retried."""


def worker_url(path: str) -> str:
    """``path`` on the worker's API (PRIVOPS_WEB_URL, else PRIVOPS_WEB_HOST:PORT; https
    with PRIVOPS_WEB_CA: privops.adapters.web_tls.api_url, which refuses plain HTTP
    beyond loopback outside dev)."""
    return web_tls.api_url(settings()) + path


def worker_get(path: str, params: dict[str, str] | None = None) -> httpx.Response:
    """GET from the worker's HTTP API; exit 3 with what to run if it is not answering.
    Patient: a read is safe to ask again, and the worker answers 503 through every
    rebalance of the group (its tables may hold an older state meanwhile)."""
    return worker_request("GET", path, params=params, patient=True)


def worker_request(
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    body: Any = None,
    needed_for: str | None = None,
    patient: bool = False,
    timeout: float = _WORKER_TIMEOUT,
) -> httpx.Response:
    """``method`` on the worker's HTTP API, with ``body`` as JSON if given; exit 3 with
    what to run if it is not answering (and ``needed_for``: why the CLI asked).
    ``patient``: a 503 (a partition moving between workers: the worker answers again
    within seconds) is asked again for up to ``MOVING_RETRY_SECONDS``. ``timeout``: how
    long one answer may take."""
    with handled():
        url = worker_url(path)
        auth = api_auth(settings(), default=DPO)
        trust = web_tls.client_context(settings())
    deadline = time.monotonic() + MOVING_RETRY_SECONDS
    delay = 0.25
    try:
        with httpx.Client(timeout=timeout, auth=auth, verify=trust) as client:
            while True:
                resp = client.request(method, url, params=params, json=body)
                if not patient or resp.status_code != 503:
                    return resp
                if time.monotonic() + delay > deadline:
                    return resp
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
    except httpx.HTTPError as exc:
        why = f" ({needed_for})" if needed_for else ""
        fail(unreachable(worker_url(""), exc) + why, EXIT_UNAVAILABLE)


def unreachable(base: str, exc: httpx.HTTPError) -> str:
    """What to tell the DPO when the worker's API did not answer: a certificate this
    machine does not trust, HTTP spoken to an HTTPS worker, or no worker at all."""
    if untrusted := web_tls.certificate_refused(exc):
        return (
            f"the privops worker at {base} presented a certificate this machine does not "
            f"trust ({untrusted}); set PRIVOPS_WEB_CA to the CA that signed it "
            "(`privops local web-cert` prints it for a development certificate)"
        )
    if isinstance(exc, httpx.ReadTimeout):
        return (
            f"the privops worker at {base} took too long to answer; retry, and if it "
            "persists check the worker's log and `privops local status`"
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
    """The worker's JSON body, or exit 3: whatever answered is not the worker's API."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        fail(
            f"the worker answered {resp.status_code} without a JSON object at {resp.url}: "
            "is PRIVOPS_WEB_URL (or PRIVOPS_WEB_HOST:PRIVOPS_WEB_PORT) the privops worker?",
            EXIT_UNAVAILABLE,
        )
    return body


def _said(body: dict[str, Any] | None) -> str:
    """What the worker said about a refusal or failure: its error, then its reason."""
    if body is None:
        return "no JSON body"
    words = [str(body[k]) for k in ("error", "reason") if body.get(k)]
    return escape(": ".join(words) if words else str(body))


def worker_json(
    path: str, *, not_found: str, params: dict[str, str] | None = None
) -> dict[str, Any]:
    """The worker's answer to a GET; exit 4 with `not_found` on the worker's own 404, 3
    when it cannot answer (or something else answers), 2 when it refuses the caller or
    the question (module docstring)."""
    return answer_json(worker_get(path, params), not_found=not_found)


def answer_json(
    resp: httpx.Response,
    *,
    not_found: str | None = None,
    no_route: str | None = None,
) -> dict[str, Any]:
    """The worker's JSON answer ``resp``; exit 4 with `not_found` on the worker's own 404
    (its JSON, naming what it does not know), 3 with ``no_route`` on any other 404 (a
    path the server does not have: an older worker, or no worker at all; every 404 when
    ``not_found`` is None), 3 when it cannot answer, 2 when it refuses the caller or the
    question."""
    if resp.status_code >= 500:
        # Checked before the body: a proxy's 502 page is no JSON, and still "no answer".
        fail(
            f"the privops worker at {worker_url('')} could not answer now "
            f"({resp.status_code}: {_said(json_or_none(resp))}); retry in a few seconds, "
            "and if it persists check the worker's log and `privops local status`",
            EXIT_UNAVAILABLE,
        )
    if resp.status_code == 404:
        # Only the worker's own answer says the thing asked about is unknown: any other
        # web server on that address (a wrong PRIVOPS_WEB_URL) answers 404 too, and was
        # taken for "unknown request" (review, session 32).
        said = json_or_none(resp)
        if not_found is not None and said is not None and isinstance(said.get("error"), str):
            fail(not_found, EXIT_NOT_FOUND)
        fail(
            no_route
            or f"the server at {worker_url('')} does not have {resp.request.url.path}: is "
            "it the privops worker (PRIVOPS_WEB_URL, or PRIVOPS_WEB_HOST and "
            "PRIVOPS_WEB_PORT), and the same privops version as this CLI?",
            EXIT_UNAVAILABLE,
        )
    body = response_json(resp)
    if resp.status_code in (401, 403):
        # 2, not 3: the worker answered, and retrying will not help until the caller's
        # credentials (configuration, like any other input) are fixed.
        who = settings().kafka_principal or DPO
        fail(
            f"the worker refused principal {who!r} ({resp.status_code}: {_said(body)}); "
            "see `privops local credentials`, or set PRIVOPS_KAFKA_PRINCIPAL and "
            "PRIVOPS_KAFKA_PASSWORD",
            EXIT_BAD_INPUT,
        )
    if resp.status_code == 400:
        fail(f"the worker refused the question (400: {_said(body)})", EXIT_BAD_INPUT)
    if not resp.is_success:
        fail(
            f"the worker answered {resp.status_code} ({_said(body)}) where it answers "
            "200 or 404: is it the same privops version as this CLI?",
            EXIT_UNAVAILABLE,
        )
    return body


def json_or_none(resp: httpx.Response) -> dict[str, Any] | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
