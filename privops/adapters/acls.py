"""Who may do what on the broker (DESIGN.md section 8), as data, and the request that says so.

Principal names are contract: ``privops`` (the worker), ``dpo`` (the CLI's default DPO
principal), ``system-<name>`` per business system. ``admin`` exists only inside the
local runtime: the brokers talk to each other and the runtime grants these ACLs as
``admin``, the one super user, so the worker cannot change who may do what.

The broker denies whatever no ACL allows (``allow.everyone.if.no.acl.found=false``), so
this list is the whole of the policy. aiokafka has no admin call for ACLs; CreateAcls
(v1) is small enough to send directly, and it is idempotent: granting a binding that
exists changes nothing, so every `privops local up` grants the full list again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int8, Int16, Int32, Schema, String

from privops.core.errors import RuntimeUnavailable
from privops.core.topics import (
    ALERTS,
    AUDIT,
    COMMAND_RESULTS,
    COMMANDS,
    CONSENT_STATE,
    DEADLETTER,
    LEGAL_HOLDS_PREFIX,
    NOTIFICATIONS,
    SUBJECT_KEYS,
    events_topic,
    legal_holds_topic,
    task_results_topic,
    tasks_topic,
)
from privops.core.vocab import System

ADMIN = "admin"
WORKER = "privops"
DPO = "dpo"
# Every topic, group and transactional id privops owns starts with this (internal
# topics, Faust's changelogs and groups, whatever the app id).
OWNED_PREFIX = "privops"
TASKS_PREFIX = "privacy.tasks."
CLUSTER = "kafka-cluster"


def system_principal(system: System | str) -> str:
    return f"system-{System(system).value}"


def system_of(principal: str) -> System | None:
    """The system whose principal ``principal`` is, if any."""
    return _SYSTEMS_BY_PRINCIPAL.get(principal)


_SYSTEMS_BY_PRINCIPAL: dict[str, System] = {system_principal(s): s for s in System}


def connector_group(system: System | str) -> str:
    """Every consumer group of a system's connector starts with this: the only groups
    its principal may use, so it can never join (and disturb) the worker's group."""
    return f"privops-connector-{System(system).value}"


def principals() -> tuple[str, ...]:
    """Every principal the local runtime creates credentials for."""
    return (ADMIN, WORKER, DPO, *(system_principal(s) for s in System))


class Resource(IntEnum):
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class Pattern(IntEnum):
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """Kafka's codes. READ and WRITE imply DESCRIBE, so it is granted on its own only
    where nothing else is."""

    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10


ALLOW = 3
ANY_HOST = "*"
ENFORCED_WITHIN_S = 30.0


@dataclass(frozen=True, order=True)
class Acl:
    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    def wire(self) -> tuple[int, str, int, str, str, int, int]:
        """One CreateAcls v1 creation."""
        return (
            self.resource,
            self.name,
            self.pattern,
            f"User:{self.principal}",
            ANY_HOST,
            self.operation,
            ALLOW,
        )


def _grant(
    principal: str,
    resource: Resource,
    names: Iterable[str],
    operations: Iterable[Operation],
    pattern: Pattern = Pattern.LITERAL,
) -> list[Acl]:
    ops = tuple(operations)
    return [Acl(principal, resource, name, pattern, op) for name in names for op in ops]


def worker_acls() -> list[Acl]:
    """The worker reads every privacy topic and the systems' events, writes what privops
    writes (follow-up erasures are commands it issues itself), creates the topics, and
    owns everything under ``privops``. It never writes a system's events or answers."""
    writes = [COMMANDS, COMMAND_RESULTS, CONSENT_STATE, SUBJECT_KEYS, AUDIT, ALERTS]
    writes += [NOTIFICATIONS, DEADLETTER]
    t, op = Resource.TOPIC, Operation
    return [
        *_grant(WORKER, t, [OWNED_PREFIX], [op.ALL], Pattern.PREFIXED),
        *_grant(WORKER, t, ["privacy."], [op.READ, op.DESCRIBE_CONFIGS], Pattern.PREFIXED),
        *_grant(WORKER, t, [TASKS_PREFIX, LEGAL_HOLDS_PREFIX], [op.WRITE], Pattern.PREFIXED),
        *_grant(WORKER, t, writes, [op.WRITE]),
        *_grant(WORKER, t, [events_topic(s) for s in System], [op.READ, op.DESCRIBE_CONFIGS]),
        *_grant(WORKER, Resource.GROUP, [OWNED_PREFIX], [op.READ], Pattern.PREFIXED),
        *_grant(
            WORKER,
            Resource.TRANSACTIONAL_ID,
            [OWNED_PREFIX],
            [op.WRITE, op.DESCRIBE],
            Pattern.PREFIXED,
        ),
        *_grant(WORKER, Resource.CLUSTER, [CLUSTER], [op.CREATE, op.DESCRIBE, op.DESCRIBE_CONFIGS]),
    ]


def dpo_acls(principal: str = DPO) -> list[Acl]:
    """A DPO publishes commands and reads their answers and the audit trail; the CLI
    reads both without a consumer group."""
    return [
        *_grant(principal, Resource.TOPIC, [COMMANDS], [Operation.WRITE]),
        *_grant(principal, Resource.TOPIC, [COMMAND_RESULTS, AUDIT], [Operation.READ]),
    ]


def system_acls(system: System | str) -> list[Acl]:
    """A system writes its events and its answers, and reads its tasks in its groups.

    Not ``privacy.subject-keys``: a system gets a subject's keys from the worker's key
    service, one subject at a time, as it meets them. Reading the topic would hand it
    every subject's wrapped keys, which with the KEK it holds to unwrap the service's
    answers is every subject's data, and a copy it could keep past their erasure.
    """
    who = system_principal(system)
    return [
        *_grant(who, Resource.TOPIC, [events_topic(system)], [Operation.WRITE]),
        *_grant(who, Resource.TOPIC, [task_results_topic(system)], [Operation.WRITE]),
        *_grant(who, Resource.TOPIC, [tasks_topic(system)], [Operation.READ]),
        *_grant(who, Resource.TOPIC, [legal_holds_topic(system)], [Operation.READ]),
        *_grant(who, Resource.GROUP, [connector_group(system)], [Operation.READ], Pattern.PREFIXED),
    ]


def bindings() -> list[Acl]:
    """The whole policy of the local runtime."""
    return sorted({*worker_acls(), *dpo_acls(), *(a for s in System for a in system_acls(s))})


def writer_of(topic: str) -> str:
    """The principal that writes ``topic`` in normal operation: what a test or a tool
    producing to it must connect as."""
    for system in System:
        if topic in (events_topic(system), task_results_topic(system)):
            return system_principal(system)
    return DPO if topic == COMMANDS else WORKER


class Api(StrEnum):
    """The worker's HTTP API questions that need a proven caller (adapters.api_auth);
    /health and /metrics stay open to probes and Prometheus and say nothing personal."""

    CONSENT = "consent"
    REQUESTS = "requests"
    SUBJECT_KEYS = "subject-keys"
    SEAL = "seal"
    HOLDS = "holds"


def may_call(principal: str, api: Api) -> bool:
    """Who may ask the worker what. The worker (another worker forwarding) and the DPO
    anything. A system asks for its subjects' keys and checks consent before it
    contacts someone; it never reads requests, which hold other systems' answers and a
    rectification's values. ``admin`` and unknown principals: nothing."""
    if principal in (WORKER, DPO):
        return True
    return system_of(principal) is not None and api in (Api.CONSENT, Api.SUBJECT_KEYS)


def api_principals() -> tuple[str, ...]:
    """The principals that may ask the worker anything (``may_call``): the only ones the
    API checks a password of. ``admin`` may ask nothing, so its guesses are refused
    without a broker's SCRAM exchange: before, the API was an oracle for the cluster's
    super-user password (review, session 43)."""
    return tuple(p for p in principals() if any(may_call(p, api) for api in Api))


# --- CreateAcls (API key 30) v1: aiokafka has no admin call for it ----------------------


class _CreateAclsResponseV1(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 30
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", Array(("error_code", Int16), ("error_message", String("utf-8")))),
    )


class _CreateAclsRequestV1(RequestStruct):  # type: ignore[misc]
    API_KEY = 30
    API_VERSION = 1
    RESPONSE_TYPE = _CreateAclsResponseV1
    SCHEMA = Schema(
        (
            "creations",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                ("resource_pattern_type", Int8),
                ("principal", String("utf-8")),
                ("host", String("utf-8")),
                ("operation", Int8),
                ("permission_type", Int8),
            ),
        ),
    )


class _CreateAcls(Request[_CreateAclsRequestV1]):  # type: ignore[misc]
    API_KEY = 30

    def __init__(self, acls: Iterable[Acl]) -> None:
        self.creations = [acl.wire() for acl in acls]

    def build(self, request_struct_class: type[_CreateAclsRequestV1]) -> _CreateAclsRequestV1:
        return request_struct_class(creations=self.creations)


class _DescribeAclsResponseV1(Response):  # type: ignore[misc]
    API_KEY = 29
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", String("utf-8")),
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                ("pattern_type", Int8),
                (
                    "acls",
                    Array(
                        ("principal", String("utf-8")),
                        ("host", String("utf-8")),
                        ("operation", Int8),
                        ("permission_type", Int8),
                    ),
                ),
            ),
        ),
    )


class _DescribeAclsRequestV1(RequestStruct):  # type: ignore[misc]
    API_KEY = 29
    API_VERSION = 1
    RESPONSE_TYPE = _DescribeAclsResponseV1
    SCHEMA = Schema(
        ("resource_type_filter", Int8),
        ("resource_name_filter", String("utf-8")),
        ("pattern_type_filter", Int8),
        ("principal_filter", String("utf-8")),
        ("host_filter", String("utf-8")),
        ("operation", Int8),
        ("permission_type", Int8),
    )


class _DescribeAllAcls(Request[_DescribeAclsRequestV1]):  # type: ignore[misc]
    API_KEY = 29
    ANY = 1

    def build(self, request_struct_class: type[_DescribeAclsRequestV1]) -> _DescribeAclsRequestV1:
        return request_struct_class(self.ANY, None, self.ANY, None, None, self.ANY, self.ANY)


def _granted(response: Any) -> set[Acl]:
    return {
        Acl(principal.removeprefix("User:"), Resource(rtype), name, Pattern(ptype), Operation(op))
        for rtype, name, ptype, acls in response.resources
        for principal, _host, op, permission in acls
        if permission == ALLOW
        and rtype in Resource._value2member_map_
        and ptype in Pattern._value2member_map_
        and op in Operation._value2member_map_
    }


async def create_acls(options: Mapping[str, Any], acls: Iterable[Acl]) -> None:
    """Grant ``acls`` (as a principal that may: the runtime's ``admin``) and return once
    every broker enforces them: each applies the controller's record on its own, and a
    client let in a moment too early would fail on a rule that is about to exist."""
    wanted = list(acls)
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=15000)
    try:
        await admin.start()
        response = await admin._send_request(_CreateAcls(wanted))
        _raise_refused(wanted, response.results)
        try:
            async with asyncio.timeout(ENFORCED_WITHIN_S):
                await _until_every_broker_has(admin, set(wanted))
        except TimeoutError:
            raise RuntimeUnavailable(
                f"the brokers did not all enforce the ACLs within {ENFORCED_WITHIN_S:.0f}s"
            ) from None
    finally:
        await admin.close()


async def _until_every_broker_has(admin: AIOKafkaAdminClient, wanted: set[Acl]) -> None:
    for broker in admin._client.cluster.brokers():
        while True:
            granted = _granted(await admin._send_request(_DescribeAllAcls(), broker.nodeId))
            if wanted <= granted:
                break
            await asyncio.sleep(0.1)


def _raise_refused(wanted: list[Acl], results: list[tuple[int, str | None]]) -> None:
    failed = [
        f"{acl.principal} {acl.operation.name} {acl.name}: {message or for_code(code).__name__}"
        for acl, (code, message) in zip(wanted, results, strict=True)
        if code != 0
    ]
    if failed:
        raise RuntimeUnavailable(
            f"the broker refused {len(failed)} ACL(s): " + "; ".join(failed[:5])
        )
