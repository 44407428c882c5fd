"""The local runtime's security: whose passwords, how the runtime connects, which ACLs.

Kept apart from the processes (``privops.adapters.runtime``) so the rules read on their
own: passwords are made with the storage they are formatted into; the runtime connects
as ``admin`` (the one super user) to check readiness and grant ``acls.bindings()``;
nothing here applies with PRIVOPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.helpers import create_ssl_context

from privops.adapters import acls, cluster
from privops.adapters.acls import ADMIN
from privops.adapters.cluster import Layout
from privops.adapters.credentials import MECHANISM, ensure_credentials, read_credentials
from privops.adapters.processes import Say
from privops.adapters.settings import Settings
from privops.core.errors import ConfigError


def is_secure(settings: Settings) -> bool:
    return settings.kafka_security_protocol != "PLAINTEXT"


def passwords_for(settings: Settings, *, formatted: bool) -> dict[str, str]:
    """Every principal's password, created with the storage they are formatted into.

    Storage formatted without them (before the runtime was secured, or before a principal
    existed) cannot learn them later from here: it has to be formatted again.
    """
    path = settings.kafka_credentials_file
    if not is_secure(settings):
        return {}
    if not formatted:
        return ensure_credentials(path, acls.principals())
    known = read_credentials(path) if path.exists() else {}
    missing = [p for p in acls.principals() if p not in known]
    if missing:
        raise ConfigError(
            f"the Kafka storage under {settings.home} was formatted without SCRAM credentials "
            f"for {', '.join(missing)}; stop the runtime (`privops local down`) and delete "
            f"{settings.home}/kafka* to start afresh, or set "
            "PRIVOPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT to run it open"
        )
    return known


def admin_options(settings: Settings, bootstrap: str) -> dict[str, Any]:
    """How the runtime itself connects: as ``admin``, the super user of the local runtime."""
    options: dict[str, Any] = {"bootstrap_servers": bootstrap}
    if not is_secure(settings):
        return options
    options |= {
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": ADMIN,
        "sasl_plain_password": read_credentials(settings.kafka_credentials_file)[ADMIN],
    }
    if settings.kafka_security_protocol == "SASL_SSL":  # its own listener's CA
        options["ssl_context"] = create_ssl_context(cafile=str(cluster.kafka_ca(settings.home)))
    return options


def grant_acls(settings: Settings, layout: Layout, say: Say) -> None:
    if not is_secure(settings):
        return
    bindings = acls.bindings()
    asyncio.run(acls.create_acls(admin_options(settings, layout.bootstrap), bindings))
    say(f"ACLs in force: {len(bindings)} for {len(acls.principals()) - 1} principals")


def client_settings(settings: Settings, principal: str) -> dict[str, str]:
    """What a client of the local runtime needs to connect as ``principal``."""
    if principal not in acls.principals():
        raise ConfigError(
            f"unknown principal {principal!r}: the local runtime has "
            + ", ".join(acls.principals())
        )
    out = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol == "SASL_SSL":
        out["ssl_cafile"] = str(settings.kafka_ssl_cafile or cluster.kafka_ca(settings.home))
    if not is_secure(settings):
        return out
    passwords = read_credentials(settings.kafka_credentials_file)
    if principal not in passwords:
        raise ConfigError(f"no password for {principal} in {settings.kafka_credentials_file}")
    return out | {
        "sasl_mechanism": MECHANISM,
        "username": principal,
        "password": passwords[principal],
    }
