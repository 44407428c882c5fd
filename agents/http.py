"""HTTP on the worker: /health, /consent/{subject_id}, /holds/{subject_id}, /requests
(the open ones, gathered from every worker), /requests/{request_id}, and the
key service /subject-keys/{subject_id} (POST: the current key, created if none; GET: the
subject's stored keys), answered with wrapped key records only (streams.keystore).

Any worker of the group answers any subject or request: a question about a subject
whose partition another worker owns is forwarded to that worker (``routed``), and the
answer relayed. A request is found through the request index (its subject's
partition). A worker answers only from partitions it owns: a forwarded question that
arrives at a worker which no longer owns the partition (a rebalance under way) gets a
503 instead of a stale answer. /metrics is served by faust's Prometheus sensor with
privops' registry (streams.app).

Every question but /health and /metrics needs a proven caller (``refused``): HTTP Basic
with a Kafka principal and its SCRAM password, checked with the broker
(privops.adapters.api_auth), and a principal that may ask it (``acls.may_call``). A
question forwarded to a subject's owner carries the caller's credentials, and the owner
checks them again; gathering the open requests, a worker asks the others as itself.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Callable
from datetime import date
from functools import cache
from typing import Any

import aiohttp
from aiokafka.errors import KafkaError
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from yarl import URL

from agents.timers import not_serving, serving
from privops import __version__
from privops.adapters import api_auth, metrics, web_tls
from privops.adapters.acls import WORKER, Api, may_call, system_of
from privops.adapters.kafka import password_of
from privops.adapters.key_topic import subject_partition
from privops.connectors.encryption import key_json
from privops.core import caseload, deadlines, response_first, timelimits
from privops.core import consent as rules
from privops.core import workflow as wf
from privops.core.errors import ConfigError, PrivopsError, RuntimeUnavailable
from privops.core.fanout import NONE_STANDING
from privops.core.fieldcrypt import MAIN_SCOPE, check_subject_id, seal_fields, sealable
from privops.core.request import RequestRecord
from privops.core.shredding import SYSTEM_SCOPE_YEARS, system_may_ask
from privops.core.subject_keys import SubjectErased, TooManyKeys
from privops.core.vocab import Channel, Purpose
from streams import keystore
from streams.app import app, settings
from streams.audit import ref
from streams.context import collaborators
from streams.health import health as worker_health
from streams.tables import (
    CONSENT,
    HOLDS,
    REQUESTS,
    consent,
    newest,
    newest_erased,
    request_index,
    requests,
    suppression,
)

keystore.install(app)

ROUTED_HEADER = "x-privops-routed"
ROUTED_TIMEOUT = aiohttp.ClientTimeout(total=15)
"""How long a forwarded question waits for the owner (aiohttp's default is 5 minutes)."""
PART_HEADER = "x-privops-part"
"""Asks a worker for its own part of the open requests (``caseload_view``), not the list."""
GATHER_SECONDS = 10.0
"""How long the open requests may take to gather, from the question's arrival (its
credential check included): less than the CLI waits for the answer
(privops.cli.request.caseload), so a worker that hangs is a 503 to retry, not a CLI
timeout."""
CASELOAD_SLICE = 5_000
"""Open requests looked at between two yields to the event loop (a few ms)."""
log = logging.getLogger(__name__)


@cache
def _owner_tls() -> ssl.SSLContext:
    """What this worker trusts when it forwards to an owner serving HTTPS
    (PRIVOPS_WEB_CA, else the system's CA bundle; host names checked)."""
    return web_tls.client_context(settings)


@cache
def _authenticator() -> api_auth.BrokerAuthenticator | None:
    found = api_auth.authenticator(settings)
    if found is None:
        log.warning("HTTP API open to any caller: Kafka is PLAINTEXT, no principal to prove")
    return found


class Quieted:
    """A warning said at most once per ``seconds``, with how many like it (``what``) went
    unsaid since the last line: anyone who reaches the port can send refused credentials,
    and each wrote a line (a flood of them flooded the log; security review, session
    34). The count is told with the next line, however late."""

    def __init__(
        self, what: str, seconds: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._what, self._seconds, self._clock = what, seconds, clock
        self._next = float("-inf")
        self._unsaid = 0
        self._said_at = 0.0

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if now < self._next:
            self._unsaid += 1
            return
        unsaid, self._unsaid = self._unsaid, 0
        if unsaid:
            message += f" (and {unsaid} more {self._what} in the {now - self._said_at:.0f} s since)"
        self._next, self._said_at = now + self._seconds, now
        log.warning(message, *args)


_REFUSALS = Quieted("refused")
_UNCHECKED = Quieted("left unchecked")
_FORBIDDEN = Quieted("refused")  # a proven caller asking what it may not, in a loop
_UNTRUSTED = Quieted("not forwarded")  # an owner whose certificate is refused, per question


async def refused(view: View, request: Request, api: Api) -> Response | None:
    """None when the caller may ask ``api``; else the answer: 401 without credentials the
    broker accepts, 403 for a principal that may not ask this, 503 when no broker could
    check them."""
    authenticator = _authenticator()
    if authenticator is None:  # a PLAINTEXT runtime: no principal to prove
        return None
    try:
        principal = await authenticator.principal(request.headers.get("Authorization"))
    except api_auth.Unauthenticated as exc:
        _REFUSALS.warning("HTTP API: %s %s refused: %s", request.method, api.value, exc)
        return view.json(
            {"error": "unauthenticated", "reason": str(exc)},
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="privops"'},
        )
    except RuntimeUnavailable as exc:
        # The detail (the broker's address) goes to the log, not to a caller not proven
        # yet (review, session 32).
        _UNCHECKED.warning(
            "HTTP API: cannot check %s %s's credentials: %s", request.method, api.value, exc
        )
        reason = "the Kafka broker that checks credentials does not answer"
        return view.json(
            {"error": "cannot check credentials now; retry", "reason": reason}, status=503
        )
    if not may_call(principal, api):
        _FORBIDDEN.warning("HTTP API: principal %s may not ask %s", principal, api.value)
        return view.json(
            {"error": "forbidden", "reason": f"principal {principal!r} may not ask {api.value}"},
            status=403,
        )
    return None


@app.page("/health")
async def health(self: View, _request: Request) -> Response:
    """200 only when the tables are recovered and the broker and registry answer."""
    state = worker_health
    problems = [*state.problems] if state.checked else ["first broker/registry check pending"]
    problems[:0] = not_serving()  # what privops_worker_up counts too
    metrics.set_worker_ready(not problems)  # as of now, not of the last periodic check
    body = {
        "status": "ok" if not problems else "unavailable",
        "version": __version__,  # which release: an upgrade's older workers show here
        "problems": problems,
        "open_requests": len(collaborators().schedule),
        # Which subjects this worker owns: the partitions of the co-partitioned topics.
        "partitions": owned_partitions(),
        # Which it keeps a warm copy of (standby replicas), to start from if it is
        # given one of them when its owner dies.
        "standby_partitions": standby_partitions(),
        # Which signer set it trusts (SignersWatch): workers that differ take different
        # DPOs' commands (PrivopsSignersDiffer).
        "signers_fingerprint": collaborators().signers.fingerprint,
    }
    return self.json(body, status=503 if problems else 200)


@app.page("/livez")
async def livez(self: View, _request: Request) -> Response:
    """200 while the worker's process and event loop answer: a liveness probe. /health
    is readiness (503 while tables recover, a rebalance runs or the broker is away),
    and as a liveness probe it restarted workers that were only waiting (ops review,
    session 33). A worker that cannot go on stops itself (the hand-off's 60 s)."""
    return self.json({"status": "alive", "version": __version__})


def owned_partitions() -> list[int]:
    """The subject partitions this worker owns now (its consumer's assignment)."""
    return sorted(keystore.owned_partitions(app.consumer.assignment()))


def standby_partitions() -> list[int]:
    """The subject partitions whose tables this worker keeps as a standby (Faust's
    standby replicas, ``PRIVOPS_STANDBY_REPLICAS``: the changelogs are co-partitioned, so
    the consent table's stand for them all)."""
    changelog = consent.changelog_topic.get_topic_name()
    return sorted(
        {tp.partition for tp in app.assignor.assigned_standbys() if tp.topic == changelog}
    )


async def routed(view: View, request: Request, subject_id: str) -> Response | None:
    """The owner's answer when another worker owns ``subject_id``'s partition, else None
    (this worker owns it and answers itself); a 400 for what is no subject id.

    The id is checked before it is hashed, remembered or forwarded: an 8 kB one, new
    each time, filled the partition cache (``key_topic.subject_partition``, 65,536
    entries: ~0.5 GB a worker) from any system's principal, and went to the owner to be
    refused there (review, session 43)."""
    try:
        check_subject_id(subject_id)
    except ValueError as exc:
        return view.json({"error": "bad subject id", "reason": str(exc)}, status=400)
    try:
        owner = app.router.key_store(consent.name, subject_id)
    except KeyError:
        return _moving(view)
    if (owner.host, owner.port) == (app.conf.canonical_url.host, app.conf.canonical_url.port):
        return None
    if request.headers.get(ROUTED_HEADER):  # the sender thought this worker owned it
        return _moving(view)
    headers = {ROUTED_HEADER: "1"}
    if credentials := request.headers.get("Authorization"):
        headers["Authorization"] = credentials  # the owner checks the caller again
    # The owner's address with the request's path and query: nothing else of the
    # caller's URL (a Host header with user info made aiohttp refuse the request).
    target = owner.with_path(request.url.raw_path, encoded=True).with_query(request.url.query)
    body = await request.read() if request.body_exists else None
    if body is not None and (kind := request.headers.get("Content-Type")):
        headers["Content-Type"] = kind
    if (why := web_tls.forward_refused(settings, str(owner))) is not None:
        # The caller's password is not sent where it would cross the network in the clear.
        log.warning("HTTP API: not forwarding to the owner at %s: %s", owner, why)
        reason = f"the subject's owner at {owner} is not reachable safely ({why})"
        return view.json({"error": "bad gateway", "reason": reason}, status=502)
    try:
        trust = _owner_tls() if target.scheme == "https" else True
        async with app.http_client.request(
            request.method,
            target,
            headers=headers,
            data=body,
            timeout=ROUTED_TIMEOUT,
            ssl=trust,
            allow_redirects=False,  # an answer is the owner's own, never another address's
        ) as answer:
            return view.text(
                await answer.text(), content_type=answer.content_type, status=answer.status
            )
    except (ConfigError, OSError, SameNode, aiohttp.ClientError, TimeoutError) as exc:
        # An owner whose certificate is refused, or a CA file that cannot be read, stays
        # so: told (502, logged), not "moving, retry", which hid an impostor or an expired
        # certificate behind a routine rebalance (review, session 43).
        refused = str(exc) if isinstance(exc, ConfigError) else web_tls.certificate_refused(exc)
        if refused is not None:
            _UNTRUSTED.warning("HTTP API: not forwarding to the owner at %s: %s", owner, refused)
            reason = f"the subject's owner at {owner} is not reachable safely ({refused})"
            return view.json({"error": "bad gateway", "reason": reason}, status=502)
        # The owner went away mid-answer (a restart, a rebalance), or hangs: retry.
        return _moving(view)


MOVING = "partition moving between workers; retry in a few seconds"


def _partition_of(subject_id: str) -> int:
    return subject_partition(subject_id, settings.topic_partitions)


def _moving(view: View) -> Response:
    """503: the partition is moving, or what this worker holds for it is being replayed."""
    return view.json({"error": MOVING}, status=503)


@app.page("/subject-keys/{subject_id}")
class SubjectKeys(View):
    """The key service (docs/crypto-shredding.md), at the subject's owner: the only place
    a subject's keys are created, so two systems meeting a new subject at once get the
    same key, and a key is answered only once the broker acknowledged its record."""

    async def post(self, request: Request, subject_id: str) -> Response:
        """The subject's current key of ``?scope=`` (default main), created if none;
        410 for a subject already erased."""
        if denied := await refused(self, request, Api.SUBJECT_KEYS):
            return denied
        forwarded = await routed(self, request, subject_id)
        if forwarded is not None:
            return forwarded
        scope = request.query.get("scope") or MAIN_SCOPE
        if (denied := await _scope_refused(self, request, scope)) is not None:
            return denied
        try:
            record = await keystore.key_store().get_or_create(subject_id, scope, erased=_erased)
        except SubjectErased as exc:
            return self.json({"error": "subject erased", "reason": str(exc)}, status=410)
        except TooManyKeys as exc:
            log.warning(
                "HTTP API: a subject reached its key limit (subject ref %s)", ref(subject_id)
            )
            return self.json({"error": "too many keys", "reason": str(exc)}, status=409)
        except ValueError as exc:
            return self.json({"error": "bad subject id or scope", "reason": str(exc)}, status=400)
        except (RuntimeUnavailable, KafkaError) as exc:
            return _unavailable(self, exc)
        return self.json(key_json(record))

    async def get(self, request: Request, subject_id: str) -> Response:
        """Every key of the subject still stored (after an erasure, only those retention
        keeps: a task sealed under one is opened with it), read up to date."""
        if denied := await refused(self, request, Api.SUBJECT_KEYS):
            return denied
        forwarded = await routed(self, request, subject_id)
        if forwarded is not None:
            return forwarded
        try:
            records = await keystore.key_store().records(subject_id)
        except ValueError as exc:
            return self.json({"error": "bad subject id", "reason": str(exc)}, status=400)
        except (RuntimeUnavailable, KafkaError) as exc:
            return _unavailable(self, exc)
        return self.json({"subject_id": subject_id, "keys": [key_json(r) for r in records]})


@app.page("/subject-keys/{subject_id}/seal")
class SealedFields(View):
    """The key service sealing for a caller that does not hold the KEK: the DPO's CLI
    seals a command's free text (a hold's reason, a refusal's, a rectification's
    values) here before it goes on privacy.commands (docs/crypto-shredding.md). The
    values come back sealed under the key privops seals its own copies of the subject
    under (``KeyStore.storage_key``: ``main``, created if none; after an erasure, the
    retained scope that lasts longest), so they read for as long as privops keeps
    anything of the subject, and no longer. Only the worker and the DPO may ask."""

    async def post(self, request: Request, subject_id: str) -> Response:
        """``{"fields": {<field path>: <plaintext>}}`` -> ``{"subject_id", "key_id",
        "fields": {<field path>: <ciphertext>}}``; 410 when the subject was erased and
        nothing of theirs is kept (nothing can be sealed for them), 400 for a bad body.
        ``"new_key": false``: only for a subject privops holds a key of, else 404 ``no
        key`` (text the workflow keeps no copy of for someone no system has reported: no
        key is made for a stranger; privops.tools.command_sealing.new_key)."""
        if denied := await refused(self, request, Api.SEAL):
            return denied
        forwarded = await routed(self, request, subject_id)
        if forwarded is not None:
            return forwarded
        try:
            body = await request.json()
        except ValueError:
            body = None
        try:
            check_subject_id(subject_id)
            if not isinstance(body, dict):
                raise ValueError('the body is a JSON object {"fields": {<field path>: <text>}}')
            fields = sealable(body.get("fields"))
            new_key = body.get("new_key", True)
            if not isinstance(new_key, bool):
                raise ValueError("'new_key' is true or false")
        except ValueError as exc:
            return self.json({"error": "bad request", "reason": str(exc)}, status=400)
        store = keystore.key_store()
        try:
            erased = _erased(subject_id)
            if new_key:
                key = await store.storage_key(subject_id, erased=erased)
            else:
                key = await store.kept_storage_key(subject_id, erased=erased)
        except (RuntimeUnavailable, KafkaError) as exc:
            return _unavailable(self, exc)
        if key is None and erased:
            reason = "the subject was erased and privops keeps nothing of theirs to seal under"
            return self.json({"error": "subject erased", "reason": reason}, status=410)
        if key is None:
            reason = "privops holds no key for the subject, and none is made for this"
            return self.json({"error": "no key", "reason": reason}, status=404)
        sealed = seal_fields(key, subject_id, fields)
        return self.json({"subject_id": subject_id, "key_id": key.key_id, "fields": sealed})


async def _scope_refused(view: View, request: Request, scope: str) -> Response | None:
    """403 if the caller is a system asking for a key of a scope it may not have: only
    ``main`` or a retained scope of a category the data map says it holds
    (``shredding.system_may_ask``), made or not (a retained key outlives an erasure
    while its category is kept: another system's purchases key would keep crm's data
    six years). The worker and the DPO ask for any. 503 if the caller cannot be checked
    now; it was proven already (``refused``; remembered a while). On a PLAINTEXT
    runtime no principal is proven, and any caller asks for any scope."""
    authenticator = _authenticator()
    if authenticator is None:
        return None
    try:
        principal = await authenticator.principal(request.headers.get("Authorization"))
    except (api_auth.Unauthenticated, RuntimeUnavailable) as exc:
        answer = {"error": "cannot check credentials now; retry", "reason": str(exc)}
        return view.json(answer, status=503)
    system = system_of(principal)
    spec = collaborators().datamap.systems.get(system) if system is not None else None
    today = collaborators().clock.today()
    if system is None or system_may_ask(scope, spec.categories if spec else (), today):
        return None
    # Never the scope itself: it is the caller's text, not yet validated (an email
    # address in it went into the worker's log; review, session 34). The caller is told.
    _FORBIDDEN.warning(
        "HTTP API: principal %s may not have a key of the scope it asked for (%d characters)",
        principal,
        len(scope),
    )
    reason = (
        f"{principal} has keys of scope main, or retained:<category>:<YYYY-MM-DD> of a "
        f"category the data map says it holds, ending within {SYSTEM_SCOPE_YEARS} years; "
        f"not {scope!r}"
    )
    return view.json({"error": "scope not allowed", "reason": reason}, status=403)


def _erased(subject_id: str) -> bool:
    """Whether the subject was erased: their consent state carries the suppression (as
    soon as the erasure is decided: no key is made for them after it), or, unknown here,
    the suppression list holds them. ``RuntimeUnavailable`` (503, retry) while the list
    is still being read: before, a worker rebuilt under a new app id answered a subject
    it had not read yet as unknown, and its key service made them a new key (review,
    session 26)."""
    if not suppression.ready.is_set():
        raise RuntimeUnavailable("the suppression list is still being read; retry")
    return newest_erased(subject_id)


def _unavailable(view: View, exc: Exception) -> Response:
    return view.json({"error": "key store unavailable; retry", "reason": str(exc)}, status=503)


@app.page("/consent/{subject_id}")
async def consent_view(self: View, request: Request, subject_id: str) -> Response:
    if denied := await refused(self, request, Api.CONSENT):
        return denied
    forwarded = await routed(self, request, subject_id)
    if forwarded is not None:
        return forwarded
    # While the changelog replays (a worker taking partitions back after a restart) the
    # table holds an older state: a withdrawal decided meanwhile elsewhere answered
    # "allowed", a subject met meanwhile "unknown" (review, session 32).
    if not serving(_partition_of(subject_id)):
        return _moving(self)
    try:
        body, status = consent_answer(
            subject_id, request.query.get("purpose"), request.query.get("channel")
        )
    except RuntimeUnavailable:
        return _moving(self)
    return self.json(body, status=status)


def consent_answer(
    subject_id: str, purpose: str | None, channel: str | None
) -> tuple[dict[str, Any], int]:
    """`/consent`'s answer and status, from the newest decided state on this worker.

    A subject with no consent state here whom the suppression list holds was erased
    (a worker rebuilt under a new app id never saw the erasure): answered as suppressed,
    never contact. Before, the answer was 404 "unknown subject", which a system may take
    as "never heard of them" and fall back to its own records (session 25's note).
    """
    try:
        state = newest(CONSENT, subject_id, subject_id)
    except ValueError as exc:
        return {"error": "bad subject id", "reason": str(exc)}, 400
    if state is None and not _erased(subject_id):
        return {"error": "unknown subject", "subject_id": subject_id}, 404
    if not purpose and not channel:
        return (_erased_json(subject_id) if state is None else _state_json(state)), 200
    try:
        p, c = Purpose(purpose or "marketing"), Channel(channel or "")
    except ValueError:
        return {
            "error": "bad query",
            "purposes": [p.value for p in Purpose],
            "channels": [c.value for c in Channel],
        }, 400
    now = collaborators().clock.now()
    decision = rules.decide_erased() if state is None else rules.decide(state, p, c, now=now)
    return {
        "subject_id": subject_id,
        "purpose": p.value,
        "channel": c.value,
        "allowed": decision.allowed,
        "rule": decision.rule.value,
        "reason": decision.reason,
        "evidence": decision.evidence.model_dump(mode="json") if decision.evidence else None,
    }, 200


def _erased_json(subject_id: str) -> dict[str, Any]:
    """The state of a subject known erased only from the suppression list."""
    return {
        "subject_id": subject_id,
        "restricted": False,
        "suppressed": True,
        "marketing_objection": False,
        "tps_listed": False,
        "preferences": {},
        "decisions": {f"{Purpose.marketing.value}:{c.value}": False for c in Channel},
    }


def _state_json(state: rules.SubjectConsent) -> dict[str, Any]:
    now = collaborators().clock.now()
    return {
        "subject_id": state.subject_id,
        "restricted": state.restricted,
        "suppressed": state.suppressed,
        "marketing_objection": state.objection is not None,
        "tps_listed": state.tps_listed,
        "preferences": {k: e.model_dump(mode="json") for k, e in sorted(state.entries.items())},
        "decisions": {
            f"{p.value}:{c.value}": rules.decide(state, p, c, now=now).allowed
            for p in (Purpose.marketing,)
            for c in Channel
        },
    }


@app.page("/holds/{subject_id}")
async def holds_view(self: View, request: Request, subject_id: str) -> Response:
    """The subject's legal holds, active and released, with their ids (what `privops
    request hold release` takes), categories, reasons and dates: the DPO's, never a
    system's (a hold's reason is the DPO's own text)."""
    if denied := await refused(self, request, Api.HOLDS):
        return denied
    forwarded = await routed(self, request, subject_id)
    if forwarded is not None:
        return forwarded
    if not serving(_partition_of(subject_id)):  # a short list while it replays: a hold missed
        return _moving(self)
    try:
        holds = newest(HOLDS, subject_id, subject_id) or []
    except ValueError as exc:
        return self.json({"error": "bad subject id", "reason": str(exc)}, status=400)
    except RuntimeUnavailable:
        return _moving(self)
    now = collaborators().clock.now()
    return self.json(
        {
            "subject_id": subject_id,
            "subject_ref": ref(subject_id),
            "holds": [
                {**h.model_dump(mode="json"), "active": h.active_at(now)}
                for h in sorted(holds, key=lambda h: (h.placed_at, h.hold_id))
            ],
        }
    )


@app.page("/requests")
async def caseload_view(self: View, request: Request) -> Response:
    """The open requests of every partition (``privops request list``): the worker asked
    gathers them from every worker of the group, each answering for the partitions it
    owns from its schedule (no record is read). 503 unless every partition answered once
    within ``GATHER_SECONDS`` (naming a worker that did not answer in time): a list
    missing a partition would hide a request from the DPO; 502 when another worker
    answers something else (an error, an older version)."""
    began = asyncio.get_running_loop().time()
    if denied := await refused(self, request, Api.REQUESTS):
        return denied
    try:
        wanted = caseload.Filter.parse(request.query)
    except ValueError as exc:
        return self.json({"error": "bad query", "reason": str(exc)}, status=400)
    # Asked for a part, this worker answers its own and never gathers: a worker of the
    # version before asked for one with the forwarding mark, and two workers that each
    # took the other's question for a list would ask each other without end.
    if request.headers.get(PART_HEADER) or request.headers.get(ROUTED_HEADER):
        mine = await _own_part(wanted)
        return _moving(self) if mine is None else self.json(mine.json())
    here = (app.conf.canonical_url.host, app.conf.canonical_url.port)
    others = [
        owner
        for owner in (URL(host) for host in app.router.table_metadata(requests.name))
        if (owner.host, owner.port) != here
    ]
    asked = [asyncio.ensure_future(_part_of(owner, request)) for owner in others]
    own = asyncio.ensure_future(_own_part(wanted))
    left = GATHER_SECONDS - (asyncio.get_running_loop().time() - began)
    try:
        _, late = await asyncio.wait([own, *asked], timeout=max(left, 0.1))
    finally:  # answered, or this question cancelled (the caller gone): none left running
        for task in (own, *asked):
            task.cancel()
    if late:
        slow = [str(o) for o, t in zip(others, asked, strict=True) if t in late]
        slow += ["this worker"] if own in late else []
        reason = f"no answer within {max(left, 0.1):.1f} s from {', '.join(slow)}"
        return self.json({"error": MOVING, "reason": reason}, status=503)
    mine = own.result()
    if mine is None:
        return _moving(self)
    parts = [mine]
    for owner, task in zip(others, asked, strict=True):
        answer = task.result()
        if answer is None:
            return _moving(self)
        if isinstance(answer, str):
            reason = f"the worker at {owner} did not give its part: {answer}"
            return self.json({"error": "bad gateway", "reason": reason}, status=502)
        parts.append(answer)
    listed = caseload.merged(parts, partitions=settings.topic_partitions, limit=wanted.limit)
    if listed is None:  # a partition answered twice or not at all: moving
        return _moving(self)
    return self.json({**listed, "workers": len(parts)})


async def _own_part(wanted: caseload.Filter) -> caseload.Part | None:
    """This worker's part: its open requests matching ``wanted`` (the first
    ``wanted.limit``, and how many), and the partitions they are of; None while its
    schedule is being rebuilt (its partitions just moved). Read a slice at a time, so a
    worker with a million open requests keeps serving its agents meanwhile."""
    schedule = collaborators().schedule
    if not schedule.ready or app.rebalancing:
        return None
    generation, today = schedule.generation, collaborators().clock.today()
    partitions = tuple(owned_partitions())
    ids = schedule.open_request_ids()
    selection = caseload.Selection(wanted, today)
    for start in range(0, len(ids), CASELOAD_SLICE):
        found = (schedule.open_request(rid) for rid in ids[start : start + CASELOAD_SLICE])
        selection.add(f for f in found if f is not None)  # closed since: gone
        if start + CASELOAD_SLICE < len(ids):
            await asyncio.sleep(0)
            if schedule.generation != generation or app.rebalancing:
                return None
    entries = tuple(caseload.entry(f, ref(f.subject_id), today) for f in selection.first())
    return caseload.Part(partitions, selection.total, entries)


async def _part_of(owner: URL, request: Request) -> caseload.Part | str | None:
    """``owner``'s part of the list, asked as this worker (the caller was checked here;
    its password goes no further). None when it cannot answer now (moving partitions,
    gone): retry; a string saying why when it answers something else."""
    if (why := web_tls.forward_refused(settings, str(owner))) is not None:
        log.warning("HTTP API: not asking %s for its requests: %s", owner, why)
        return f"not reachable safely ({why})"
    # The query was checked (caseload.Filter.parse): only its own parameters go on.
    target = owner.with_path("/requests").with_query(request.url.query)
    try:
        credentials = _own_credentials()
    except PrivopsError as exc:  # no password for this worker's principal: configuration
        return f"this worker cannot prove itself to it ({exc})"
    # Both marks: a worker of the version before knows only the forwarding one, and
    # answers its part for it (in a shape ``Part.parse`` refuses, so it is named).
    headers = {PART_HEADER: "1", ROUTED_HEADER: "1", **credentials}
    try:
        async with app.http_client.get(
            target,
            headers=headers,
            timeout=ROUTED_TIMEOUT,
            ssl=_owner_tls() if target.scheme == "https" else True,
            allow_redirects=False,
        ) as answer:
            if answer.status == 503:
                return None
            if answer.status != 200:
                return f"{answer.status} {answer.reason}"
            body = await answer.json(content_type=None)
    except (OSError, aiohttp.ClientError, TimeoutError):
        return None
    except ValueError:
        return "an answer that is not JSON"
    try:
        return caseload.Part.parse(body)
    except ValueError as exc:
        return str(exc)


@cache
def _own_credentials() -> dict[str, str]:
    """This worker's credentials, for asking another worker its part, as HTTP Basic
    (none when Kafka is PLAINTEXT: no principal to prove). The other worker lets the
    ``privops`` principal ask (``acls.may_call``): a worker runs as it."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    who = settings.kafka_principal or WORKER
    pair = f"{who}:{password_of(settings, who)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


@app.page("/requests/{request_id}")
async def request_view(self: View, request: Request, request_id: str) -> Response:
    if denied := await refused(self, request, Api.REQUESTS):
        return denied
    subject_id = request_index.get(request_id) or _subject_of_local_copy(request_id)
    record = None
    if subject_id is not None:
        forwarded = await routed(self, request, subject_id)
        if forwarded is not None:
            return forwarded
        if not serving(_partition_of(subject_id)):  # an older state while it replays
            return _moving(self)
        try:
            record = newest(REQUESTS, subject_id, request_id)
        except RuntimeUnavailable:
            return _moving(self)
    if record is None:
        if request.headers.get(ROUTED_HEADER):  # the sender's copy says it is here
            return _moving(self)
        if not request_index.ready.is_set():  # not read yet: no answer is sure
            return _moving(self)
        days = collaborators().datamap.request_records.period_days
        reason = (
            "no request has this id, or it was finished (closed, nothing left to do for "
            f"it) and its record deleted {days} days later (data map request_records)"
        )
        answer = {"error": "unknown request", "request_id": request_id, "reason": reason}
        return self.json(answer, status=404)
    return self.json(request_json(record))


def _subject_of_local_copy(request_id: str) -> str | None:
    """Whose request ``request_id`` is, from this worker's copy of the requests table,
    when the request index is behind (a request just submitted). The copy may be a
    standby's, behind its owner: it only says which subject's owner to ask, never
    what the answer is (the subject id is stored in the clear: nothing to open)."""
    raw = requests.get(request_id)
    subject_id = raw.get("subject_id") if isinstance(raw, dict) else None
    return subject_id if isinstance(subject_id, str) else None


def request_json(rec: RequestRecord) -> dict[str, Any]:
    """The request for the DPO; `days_left` only while a deadline alert can still fire
    (not for an acknowledged complaint, whose outcome is tracked by `age_days`)."""
    today = collaborators().clock.today()
    due = timelimits.due_in_force(rec)  # a pause an earlier release counted, left out
    watched = None if rec.acknowledged_on else due
    return {
        "request_id": rec.request_id,
        "request_type": rec.request_type.value,
        "subject_id": rec.subject_id,
        "subject_ref": ref(rec.subject_id),
        "state": rec.state.value,
        "received_on": rec.received_on.isoformat(),
        "identity_received_on": _iso(rec.identity_received_on),
        "identity_verified_on": _iso(rec.identity_verified_on),
        "clock_start": _iso(rec.clock_start),
        "due_on": _iso(due),
        "days_left": deadlines.days_left(watched, today) if watched else None,
        "age_days": ((rec.closed_at.date() if rec.closed_at else today) - rec.received_on).days,
        "acknowledged_on": _iso(rec.acknowledged_on),
        "paused_days": rec.paused_days,
        "pauses": [
            {"asked_on": _iso(p.asked), "answered_on": _iso(p.answered)} for p in rec.pauses
        ],
        "extended": rec.extended,
        "extension_reason": rec.extension_reason,
        "reason": rec.reason,
        "linked_request_id": rec.linked_request_id,
        # a lift that lifted nothing (from 0.45): the restriction it names had already
        # ended, or these others still stand
        "lifted_nothing": bool(rec.still_restricted_by),
        "still_restricted_by": [x for x in rec.still_restricted_by if x != NONE_STANDING],
        # an upheld legitimate-interest objection: the purposes processing stopped for
        "objected_purposes": rec.objected_purposes,
        # an access request's search details (the subject's words: day, hours, place,
        # appearance), for the DPO reviewing what the search found
        "search": rec.search,
        # the systems keeping what that search finds from their deletion by age until
        # the request is finished
        "preserved": [s.value for s in rec.preserved],
        # a refused request's ground (the DPO's letter is ``reason``)
        "refusal_ground": rec.refusal_ground.value if rec.refusal_ground else None,
        # a portability request's organisation to send the copies to (Art. 20(2): the
        # subject's words, for the DPO who sends them)
        "send_to": rec.send_to,
        # made by a representative (from 0.41): who and how to reach them (their words),
        # in what capacity, and the day the evidence of their authority arrived
        "representative": rec.representative,
        "capacity": rec.capacity.value if rec.capacity else None,
        "authority_received_on": _iso(rec.authority_received_on),
        # the work waits for that evidence (a request that changes or discloses data)
        "awaiting_authority": rec.awaiting_authority and rec.open,
        # an erasure waiting for the subject's access or portability responses to go out
        # first (from 0.42), and the day its work goes out at the latest
        "waits_for": rec.waits_for if response_first.waiting(rec) else [],
        "erase_on": _iso(rec.erase_on) if response_first.waiting(rec) else None,
        "tasks": [
            {
                "task_id": t.task_id,
                "system": t.system.value,
                "action": t.action.value,
                "state": t.state.value,
                "attempts": t.attempts,
                "categories": [c.value for c in t.categories],
                "keep": [k.model_dump(mode="json") for k in t.keep],
                "answered_at": t.answered_at.isoformat() if t.answered_at else None,
                "outcome_reason": t.outcome_reason,
                "export": t.export.model_dump(mode="json") if t.export else None,
                # the DPO's redacted copy replaced the system's, kept here for the DPO
                "redacted": t.redacted,
                "original_export": (
                    t.original_export.model_dump(mode="json") if t.original_export else None
                ),
            }
            for t in rec.tasks.values()
        ],
        "retained": [k.model_dump(mode="json") for k in rec.kept],
        "followups": [f.model_dump(mode="json") for f in rec.followups],
        "manifest": rec.manifest,
        "history": [h.model_dump(mode="json") for h in rec.history],
        # From this day the record is deleted (None while the request is not finished;
        # a legal hold or an open request linking to it keeps it longer).
        "record_kept_until": _iso(
            wf.expires_on(rec, collaborators().datamap.request_records.period_days)
        ),
    }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None
