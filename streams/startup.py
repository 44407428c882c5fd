"""Checks before Faust starts: the worker runs whole or exits with one clear line.

Faust turns a failing agent import into a warning and keeps running half a worker, and
a taken port or stale table state surface as long tracebacks mid-start. Everything that
can be known up front is checked here, in the order an operator would fix it.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import importlib
import logging
import shutil
import socket
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from privops.adapters import web_tls
from privops.adapters.kafka import cluster_id
from privops.adapters.settings import Settings, is_loopback
from privops.core.datamap import DataMap
from privops.core.errors import ConfigError, RuntimeUnavailable
from streams.context import collaborators
from streams.keystore import load_kek

log = logging.getLogger(__name__)

AGENT_MODULES = ("agents.ingest", "agents.requests", "agents.timers", "agents.http")
CLUSTER_MARKER = "kafka-cluster-id"


def import_agents() -> None:
    """Import every agent module now, so a broken one stops the worker before it starts."""
    for name in AGENT_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(f"agent module {name} failed to load: {exc}") from exc


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the web server binds (SO_REUSEADDR): closed connections of a worker that
        # just stopped do not count, a listening one does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RuntimeUnavailable(
                    f"web port {host}:{port} is taken (another worker?); stop it or set "
                    "PRIVOPS_WEB_PORT"
                ) from exc
            raise RuntimeUnavailable(f"cannot bind the web port {host}:{port}: {exc}") from exc


def lock_data_dir(path: Path) -> IO[str]:
    """Hold an exclusive lock on the app id's data dir for the worker's lifetime."""
    path.mkdir(parents=True, exist_ok=True)
    handle = (path / "worker.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise RuntimeUnavailable(
            f"another worker is using {path}; stop it, or give this one its own "
            "PRIVOPS_DATA_DIR or PRIVOPS_APP_ID"
        ) from exc
    return handle


def reconcile_cluster(path: Path, tables_dir: Path, cluster: str) -> bool:
    """Drop local table state written against another Kafka cluster (a reset broker).

    Its persisted offsets point past the new changelogs' end, which Faust reports as a
    ConsistencyError at start; rebuilt from the changelogs instead. True if dropped.
    """
    marker = path / CLUSTER_MARKER
    known = marker.read_text().strip() if marker.exists() else None
    dropped = False
    if known is not None and known != cluster and tables_dir.exists():
        log.warning(
            "local tables in %s belong to Kafka cluster %s, not %s: rebuilding them "
            "from the changelogs",
            tables_dir,
            known,
            cluster,
        )
        shutil.rmtree(tables_dir)
        dropped = True
    marker.write_text(cluster + "\n")
    return dropped


def check_kafka_security(settings: Settings) -> None:
    """No PLAINTEXT Kafka outside PRIVOPS_ENV=dev unless PRIVOPS_KAFKA_PLAINTEXT=allow: on
    it no principal is proven, so Kafka's ACLs (who may write where: DESIGN.md section 8)
    do not hold, the HTTP API answers anyone, and any caller may ask for any key scope.
    A ConfigError otherwise (review, session 24: only a warning was logged)."""
    if (
        settings.kafka_security_protocol == "PLAINTEXT"
        and settings.env != "dev"
        and settings.kafka_plaintext != "allow"
    ):
        raise ConfigError(
            "PRIVOPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT outside PRIVOPS_ENV=dev: Kafka "
            "proves no principal, so no ACL holds and the HTTP API answers anyone; use "
            "SASL_SSL (or SASL_PLAINTEXT where the network encrypts it), or set "
            "PRIVOPS_KAFKA_PLAINTEXT=allow where nothing else can reach the network"
        )


def check_kek(settings: Settings) -> None:
    """The key-encryption key is there (created in dev), private, and not a development
    KEK outside PRIVOPS_ENV=dev: keys wrapped under a KEK nobody set up and backed up
    would be data lost, so the worker refuses to start instead."""
    load_kek(settings)


def check_web_tls(settings: Settings, bind: str | None = None, advertised: str = "") -> None:
    """The API's certificate loads, and plain HTTP is served beyond loopback only where
    it may be (privops.adapters.web_tls): a ConfigError naming the setting otherwise.

    ``bind`` and ``advertised`` are what Faust will listen on and give the group (its
    WEB_BIND and NODE_CANONICAL_URL environment variables win over privops' settings;
    ``check_served`` passes them)."""
    bind = settings.web_host if bind is None else bind
    web_tls.server_context(settings)
    web_tls.client_context(settings)  # a worker forwarding to another trusts this
    if (problem := web_tls.check_plaintext(settings, bind)) is not None:
        raise ConfigError(problem)
    if settings.web_tls_cert is not None and advertised and not advertised.startswith("https"):
        raise ConfigError(
            f"the worker serves TLS but gives the group {advertised} as its address "
            "(NODE_CANONICAL_URL in the environment?): unset it, or set "
            "PRIVOPS_WEB_ADVERTISED_URL=https://..."
        )
    if settings.web_tls_cert is None and not is_loopback(bind):
        log.warning(
            "the HTTP API listens on %s without TLS: callers' passwords cross the network "
            "in the clear (PRIVOPS_WEB_TLS_CERT, PRIVOPS_WEB_TLS_KEY)",
            bind,
        )
    if advertised and web_tls.wildcard(urlsplit(advertised).hostname or ""):
        log.warning(
            "the worker gives the other workers of its group %s as its address: with more "
            "than one worker, each must advertise its own (PRIVOPS_WEB_ADVERTISED_URL), or "
            "questions about their subjects are answered 503",
            advertised,
        )


def check_served(settings: Settings, conf: Any) -> None:
    """What Faust will really listen on and give the group (``conf``: the app's
    settings, where Faust's own WEB_BIND, WEB_PORT and NODE_CANONICAL_URL environment
    variables win over privops'): checked as the settings would be, and the port free."""
    if conf.web_port != settings.web_port:
        raise ConfigError(
            f"Faust's WEB_PORT={conf.web_port} in the environment overrides "
            f"PRIVOPS_WEB_PORT={settings.web_port}, so the worker would listen on one port "
            "and give the group the other: unset WEB_PORT"
        )
    check_web_tls(settings, conf.web_bind, str(conf.canonical_url))
    check_port_free(conf.web_bind, conf.web_port)


def preflight(settings: Settings, data_dir: Path, tables_dir: Path, conf: Any) -> IO[str]:
    """Every start-up check; returns the data-dir lock the worker must keep open.
    ``conf``: the Faust app's settings (``check_served``)."""
    check_kafka_security(settings)
    check_kek(settings)
    check_served(settings, conf)
    lock = lock_data_dir(data_dir)
    cluster = asyncio.run(cluster_id(settings.kafka_bootstrap))
    reconcile_cluster(data_dir, tables_dir, cluster)
    collaborators().deployment = cluster  # what DPO commands must be signed for
    log_grants(collaborators().datamap)
    import_agents()
    return lock


def log_grants(datamap: DataMap) -> None:
    """Say which permissions to contact each system's events may record (the data map's
    ``grants``, or what its categories imply): an upgrader whose data map says none
    sees what the defaults leave out before a system's consents go missing. A warning
    when some are implied (logging is not set up yet: an info line would not show)."""
    said = "; ".join(
        f"{system.value}: {', '.join(sorted(spec.may_grant)) or 'none'}"
        + ("" if spec.grants is not None else " (implied by its categories)")
        for system, spec in datamap.systems.items()
    )
    implied = any(spec.grants is None for spec in datamap.systems.values())
    log.log(
        logging.WARNING if implied else logging.INFO,
        "permissions to contact each system may record (data map grants%s): %s",
        "; list them under each system" if implied else "",
        said,
    )
