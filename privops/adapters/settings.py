"""Frozen, typed settings from the environment (``PRIVOPS_*``), validated at start-up."""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from privops import contract
from privops.adapters import cluster
from privops.adapters.credentials import credentials_path
from privops.core.errors import ConfigError
from privops.core.pii import looks_like_pii

REPO_ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)

READ_ELSEWHERE: frozenset[str] = frozenset(
    {
        "PRIVOPS_COMMAND_WAIT",
        "PRIVOPS_REGISTRY_VERSION",
        "PRIVOPS_KEK_DIR",
        "PRIVOPS_TEST_PORT_BASE",
    }
)
"""PRIVOPS_* names read outside these settings: the CLI's wait for answers, the registry
jar's version, compose's KEK folder, the tests' ports."""


# Published development values: fine on a laptop, never in production (PRIVOPS_ENV=prod
# refuses them, naming the setting).
DEV_SECRETS: dict[str, str] = {
    "pseudonym_key": "local-dev-pseudonym-key-change-me",
    "audit_key": "local-dev-audit-key-change-me",
}


SECRET_FILES: tuple[str, ...] = (
    "kafka_password",
    "registry_password",
    "pseudonym_key",
    "audit_key",
)
"""The secrets that may be given as a file (``PRIVOPS_<NAME>_FILE``)."""
SECRET_JSON_FILES: tuple[str, ...] = ("pseudonym_previous_keys", "audit_previous_keys")
"""Retired keys, JSON as in the environment, that may be given as a file too."""
MAX_SECRET_FILE_BYTES = 4096
MAX_SECRET_JSON_FILE_BYTES = 256 * 1024


def _read_text(path: Path, setting: str, limit: int) -> str:
    try:
        with path.expanduser().open("rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path} ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise ValueError(f"{setting}: {path} is over {limit} bytes: not a secret")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{setting}: {path} is not UTF-8 text") from None


def _read_secret_json(path: Path, setting: str) -> Any:
    """A JSON list or object of retired keys. The parser's complaint names a line and
    column, never the text, which is secret."""
    try:
        return json.loads(_read_text(path, setting, MAX_SECRET_JSON_FILE_BYTES))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{setting}: {path} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        ) from None


def _read_secret(path: Path, setting: str) -> str:
    text = _read_text(path, setting, MAX_SECRET_FILE_BYTES)
    text = text.removesuffix("\n").removesuffix("\r")
    if not text or "\n" in text or "\r" in text:
        raise ValueError(f"{setting}: {path} must hold the secret on one line")
    # A key read with a byte-order mark or a trailing space is another key: subject refs
    # change, the suppression list stops matching, the audit chain breaks (review).
    if text != text.strip() or text.startswith("\ufeff"):
        raise ValueError(
            f"{setting}: {path} has spaces around the secret, or a byte-order mark: save it "
            "as the secret alone (a final newline is fine)"
        )
    return text


def _default_home() -> Path:
    return Path.home() / ".cache" / "privops"


class Settings(BaseSettings):
    """Every knob privops reads. Defaults are the embedded local runtime."""

    # Errors never quote what was given: a secret or a URL with a password in it would
    # land in a traceback.
    model_config = SettingsConfigDict(
        env_prefix="PRIVOPS_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_controller_port: int = Field(default=19093, ge=1, le=65535)
    kafka_node_port_step: int = Field(
        default=10,
        ge=2,
        le=1000,
        description="Local runtime with --brokers 3: node n listens on the bootstrap and "
        "controller ports + n * step",
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=cluster.MAX_REPLICATION,
        description="Copies of every privops topic (3 gives min.insync.replicas=2); "
        "defaults to what the local runtime's broker count allows",
    )
    kafka_security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL", "PLAINTEXT"] = Field(
        default="SASL_PLAINTEXT",
        description="How clients connect, and (PLAINTEXT or SASL_PLAINTEXT) how the local "
        "runtime listens; defaults to what the last `privops local up` under this home ran",
    )
    kafka_plaintext: Literal["refuse", "allow"] = Field(
        default="refuse",
        description="Outside dev a worker or a connector refuses PLAINTEXT Kafka (no "
        "principal is proven: no ACL holds and the HTTP API answers anyone); `allow` where "
        "nothing else shares the network (the compose file's private network)",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_principal: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Who this process connects as where the caller names no principal "
        "(else the worker's `privops`, or `dpo` for the CLI's DPO verbs)",
    )
    kafka_password: SecretStr | None = Field(
        default=None,
        description="The password of PRIVOPS_KAFKA_PRINCIPAL. Without it, in PRIVOPS_ENV=dev "
        "only, passwords come from the local runtime's credentials file",
    )
    kafka_credentials_file: Path = Field(
        default=Path(),
        description="The local runtime's SCRAM passwords (mode 0600; dev only)",
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA bundle for SASL_SSL (default: the system's)"
    )
    registry_url: str = Field(
        default="http://127.0.0.1:18081/apis/ccompat/v7",
        description="The Confluent-compatible schema registry API (no credentials in it: "
        "a URL is shown in errors; PRIVOPS_REGISTRY_USERNAME and _PASSWORD say who asks)",
    )
    registry_username: str | None = Field(
        default=None,
        min_length=1,
        description="Who this process asks the schema registry as (HTTP basic auth), "
        "where the registry asks: the worker and `privops schemas register` write, "
        "connectors and the CLI only read",
    )
    registry_password: SecretStr | None = Field(
        default=None, description="The password of PRIVOPS_REGISTRY_USERNAME"
    )
    registry_ca: Path | None = Field(
        default=None,
        description="CA bundle for an https registry (default: the system's)",
    )
    registry_port: int = Field(default=18081, ge=1, le=65535)
    registry_management_port: int = Field(default=19001, ge=1, le=65535)
    home: Path = Field(
        default_factory=lambda: _default_home(),
        description="Runtime state: broker and registry data, logs, pid files, worker tables",
    )
    cache: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "privops",
        description="Downloaded jars (Kafka, Apicurio); shared by every home",
    )
    schema_dir: Path = Field(default_factory=contract.schema_dir)
    datamap: Path = Field(default_factory=contract.default_datamap)
    app_id: str = Field(
        default="privops",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="The Faust app id: names the consumer group, the changelog topics, the "
        "table directory and the audit chains' namespace (letters, digits, . _ -; a '/' "
        "would make one deployment's chains another's prefix)",
    )
    web_port: int = Field(default=6066, ge=1, le=65535)
    web_host: str = "127.0.0.1"
    web_tls_cert: Path | None = Field(
        default=None,
        description="The worker's HTTPS certificate chain (PEM); with PRIVOPS_WEB_TLS_KEY "
        "the API is served over TLS (privops.adapters.web_tls)",
    )
    web_tls_key: Path | None = Field(
        default=None, description="The private key of PRIVOPS_WEB_TLS_CERT (PEM, mode 0600)"
    )
    web_ca: Path | None = Field(
        default=None,
        description="CA bundle the API's clients (CLI, connector SDK, other workers) trust "
        "for it (default: the system's)",
    )
    web_url: str | None = Field(
        default=None,
        description="Where clients reach the worker's API, e.g. https://privops.internal:6066 "
        "(default: PRIVOPS_WEB_HOST:PRIVOPS_WEB_PORT, https with PRIVOPS_WEB_CA)",
    )
    web_advertised_url: str | None = Field(
        default=None,
        description="This worker's address for the other workers of its group, which "
        "forward questions to it, e.g. https://worker-1.internal:6066 (default: "
        "http(s)://PRIVOPS_WEB_HOST:PRIVOPS_WEB_PORT; set it when it listens on 0.0.0.0)",
    )
    web_plaintext: Literal["loopback", "allow"] = Field(
        default="loopback",
        description="Outside dev, plain HTTP is served on loopback only; `allow` when TLS "
        "ends in front of the worker (an ingress, a sidecar)",
    )
    store: str = "rocksdb://"
    data_dir: Path | None = None
    env: Literal["dev", "prod"] = Field(
        default="dev",
        description="dev: local runtime, demo, tests. Anything else refuses development secrets",
    )
    pseudonym_key: str = Field(
        default=DEV_SECRETS["pseudonym_key"],
        min_length=16,
        description="HMAC key for subject refs and the suppression list",
    )
    pseudonym_previous_keys: list[str] = Field(
        default_factory=list,
        description="Pseudonym keys replaced by rotation, newest first (JSON): suppression "
        "keys made under them keep matching until re-keyed",
    )
    audit_key: str = Field(
        default=DEV_SECRETS["audit_key"],
        min_length=16,
        description="HMAC key of the audit hash chain (only the worker holds it)",
    )
    audit_key_version: int = Field(
        default=1, ge=1, description="Version new audit records and anchors are keyed with"
    )
    audit_previous_keys: dict[int, str] = Field(
        default_factory=dict,
        description="Audit keys replaced by rotation, by version (JSON); verify still accepts them",
    )
    topic_partitions: int = Field(default=4, ge=1, le=256)
    sweep_interval_seconds: float = Field(
        default=0.1,
        gt=0,
        description="Pause between two timer sweeps (overdue task answers, deadline alerts, "
        "follow-ups, record expiries); each sweep hands out at most "
        "PRIVOPS_SWEEP_MAX_RESENDS re-sends",
    )
    fetch_max_wait_ms: int = Field(
        default=20,
        ge=0,
        le=1500,
        description="How long the worker's fetch waits on the broker for "
        "PRIVOPS_FETCH_MIN_BYTES: longer costs latency, shorter costs CPU (an idle worker "
        "fetches 1000/this times a second)",
    )
    fetch_min_bytes: int = Field(
        default=64 * 1024,
        ge=1,
        description="How much data a fetch waits for (1: answer at once, Kafka's default)",
    )
    sweep_max_resends: int = Field(
        default=10,
        ge=1,
        description="Overdue task answers re-sent (or escalated) per sweep at most; the "
        "longest overdue first, the rest at the next sweep. With the default sweep "
        "interval, up to 100 a second, ten at a time: a silent system's re-sends never "
        "reach the worker as one burst ahead of the DPO's commands",
    )
    alert_days_before: tuple[int, ...] = (7, 3, 1)
    # DPA 2018 s. 164A: within 30 days, never more (legal review, session 43).
    complaint_ack_days: int = Field(default=30, ge=1, le=30)
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="The worker's log level"
    )
    actor: str = "dpo"
    signers_file: Path = Field(
        description="Public keys the worker trusts for DPO commands (privops keys)",
        default=Path(),
    )
    signing_key_file: Path = Field(
        description="This CLI's private signing key (mode 0600)", default=Path()
    )
    kek_file: Path = Field(
        default=Path(),
        description="The key-encryption key that wraps every subject's data key (mode 0600; "
        "`privops keys kek`); created on the spot only in PRIVOPS_ENV=dev",
    )
    personal_plaintext: Literal["accept", "refuse"] = Field(
        default="accept",
        description="A personal field of an upstream event that is not encrypted under "
        "the subject's key: `accept` (the migration window; counted in "
        "privops_plaintext_personal_fields_total) or `refuse` (dead letter malformed_field)",
    )
    consumer_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a new consumer group starts (the demo starts at the end)",
    )
    standby_replicas: int = Field(
        default=1,
        ge=0,
        le=8,
        description="Warm copies of each table partition kept by other workers of the group "
        "(Faust's standby replicas): when the holder has room for a dead owner's partition "
        "it takes the partition over from its copy instead of the changelog (0: none)",
    )
    group_session_timeout_seconds: float = Field(
        default=30.0,
        ge=6.0,
        le=300.0,
        description="How long the group waits for a silent worker before its partitions "
        "go to the others (Kafka's group.min.session.timeout.ms is 6 s)",
    )
    clock_offset_days: float = Field(
        default=0.0, description="Shift the worker's clock (demos and deadline tests only)"
    )

    kafka_password_file: Path | None = Field(
        default=None, description="A file holding PRIVOPS_KAFKA_PASSWORD (a mounted secret)"
    )
    registry_password_file: Path | None = Field(
        default=None, description="A file holding PRIVOPS_REGISTRY_PASSWORD"
    )
    pseudonym_key_file: Path | None = Field(
        default=None, description="A file holding PRIVOPS_PSEUDONYM_KEY"
    )
    audit_key_file: Path | None = Field(
        default=None, description="A file holding PRIVOPS_AUDIT_KEY"
    )
    pseudonym_previous_keys_file: Path | None = Field(
        default=None, description="A file holding PRIVOPS_PSEUDONYM_PREVIOUS_KEYS (its JSON)"
    )
    audit_previous_keys_file: Path | None = Field(
        default=None, description="A file holding PRIVOPS_AUDIT_PREVIOUS_KEYS (its JSON)"
    )

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """``PRIVOPS_<SECRET>_FILE`` names a file holding the secret (a Docker or
        Kubernetes secret mounted as a file), so it need not sit in the environment,
        which ``ps e``, ``/proc/<pid>/environ`` and crash reports show. Its one line is
        read (a final newline dropped); giving both the value and its file is an error,
        as is a file that cannot be read or is empty. Retired keys are read as the JSON
        their setting takes. Errors name the file, never what it holds."""
        if not isinstance(data, dict):
            return data
        for name in (*SECRET_FILES, *SECRET_JSON_FILES):
            path = data.get(f"{name}_file")
            if path is None:
                continue
            if data.get(name) not in (None, ""):  # a blank value is unset, as everywhere
                raise ValueError(
                    f"PRIVOPS_{name.upper()} and PRIVOPS_{name.upper()}_FILE are both set: say one"
                )
            read = _read_secret_json if name in SECRET_JSON_FILES else _read_secret
            data[name] = read(Path(path), f"PRIVOPS_{name.upper()}_FILE")
        return data

    @model_validator(mode="before")
    @classmethod
    def _key_paths_under_home(cls, data: Any) -> Any:
        """Key files default to $PRIVOPS_HOME/keys/, so the CLI and the worker meet."""
        if isinstance(data, dict):
            home = Path(data.get("home") or _default_home()).expanduser()
            data.setdefault("signers_file", home / "keys" / "signers.json")
            data.setdefault("signing_key_file", home / "keys" / f"{data.get('actor') or 'dpo'}.key")
            data.setdefault("kafka_credentials_file", credentials_path(home))
            data.setdefault("kek_file", home / "keys" / "kek.json")
        return data

    @model_validator(mode="before")
    @classmethod
    def _local_cluster_defaults(cls, data: Any) -> Any:
        """After `privops local up --brokers 3`, clients know all three brokers and give
        topics three replicas, unless PRIVOPS_KAFKA_BOOTSTRAP / _REPLICATION_FACTOR say;
        they speak the protocol it was started with, trusting its CA for SASL_SSL."""
        if isinstance(data, dict):
            home = Path(data.get("home") or _default_home()).expanduser()
            state = cluster.read_state(home)
            if state is not None:
                if state.brokers > 1:
                    data.setdefault("kafka_bootstrap", state.bootstrap)
                if state.security_protocol is not None:
                    data.setdefault("kafka_security_protocol", state.security_protocol)
                if state.security_protocol == "SASL_SSL":  # its listener's development CA
                    data.setdefault("kafka_ssl_cafile", cluster.kafka_ca(home))
                data.setdefault("replication_factor", cluster.replication_for(state.brokers))
        return data

    @model_validator(mode="after")
    def _registry_credentials_apart(self) -> Settings:
        if urlsplit(self.registry_url).password is not None:
            raise ValueError(
                "PRIVOPS_REGISTRY_URL holds a password: put the user in "
                "PRIVOPS_REGISTRY_USERNAME and the password in PRIVOPS_REGISTRY_PASSWORD "
                "(the URL is shown in errors and logs)"
            )
        if (self.registry_username is None) != (self.registry_password is None):
            raise ValueError(
                "PRIVOPS_REGISTRY_USERNAME and PRIVOPS_REGISTRY_PASSWORD go together: set "
                "both where the registry asks for credentials, or neither"
            )
        return self

    @property
    def registry_auth(self) -> tuple[str, str] | None:
        """(user, password) for the schema registry's basic auth, or None."""
        if self.registry_username is None or self.registry_password is None:
            return None
        return self.registry_username, self.registry_password.get_secret_value()

    @model_validator(mode="after")
    def _password_has_a_principal(self) -> Settings:
        if self.kafka_password is not None and self.kafka_principal is None:
            raise ValueError(
                "PRIVOPS_KAFKA_PASSWORD is set without PRIVOPS_KAFKA_PRINCIPAL: say whose it is"
            )
        return self

    @field_validator(
        "web_tls_cert",
        "web_tls_key",
        "web_ca",
        "web_url",
        "web_advertised_url",
        "registry_ca",
        "registry_username",
        "registry_password",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """``PRIVOPS_WEB_CA=`` means no CA file, not the current directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("app_id")
    @classmethod
    def _no_contact_detail_in_the_app_id(cls, value: str) -> str:
        # Every audit chain key starts with it, and the audit refuses any text shaped like
        # an email or a UK phone number: such an app id (a suffix "-0750592810") passed
        # start-up and stopped the worker at its first audit step (CI, session 31).
        if looks_like_pii(f"-{value}"):
            raise ValueError(
                "looks like a phone number or an email to the audit, which every audit "
                "chain key starts with: add a letter to its digits"
            )
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _brokers(cls, value: str) -> str:
        """HOST:PORT, comma-separated: a port that is no number, or out of range, crashed
        every Kafka client deep in aiokafka with a traceback (and one with none was
        reported as an outage), so each command said something else (review, session
        35)."""
        entries = [entry.strip() for entry in value.split(",")]
        for n, entry in enumerate(entries, 1):
            host, _, port = entry.rpartition(":")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]  # an IPv6 address, as aiokafka reads one: [::1]:9092
            elif ":" in host or "[" in host or "]" in host:
                host = ""  # unbracketed IPv6 (aiokafka reads all of it as the address)
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                which = f"broker {n} of {len(entries)}" if len(entries) > 1 else "the broker"
                raise ValueError(
                    f"{which} is not HOST:PORT with a port from 1 to 65535 (give "
                    "HOST:PORT[,HOST:PORT...], e.g. kafka-1.internal:9092, an IPv6 "
                    "address in brackets: [::1]:9092)"
                )
        return ",".join(entries)

    @field_validator("web_url", "web_advertised_url")
    @classmethod
    def _an_origin(cls, value: str | None) -> str | None:
        return None if value is None else origin(value)

    @model_validator(mode="after")
    def _tls_cert_with_its_key(self) -> Settings:
        if (self.web_tls_cert is None) != (self.web_tls_key is None):
            raise ValueError(
                "PRIVOPS_WEB_TLS_CERT and PRIVOPS_WEB_TLS_KEY go together: set both to serve "
                "the API over TLS, or neither"
            )
        advertised = self.web_advertised_url
        if self.web_tls_cert is not None and advertised and not advertised.startswith("https"):
            raise ValueError(
                "PRIVOPS_WEB_ADVERTISED_URL: a worker that serves TLS advertises https://"
            )
        return self

    @model_validator(mode="after")
    def _dev_said_where_it_reaches_out(self) -> Settings:
        # dev, the default, takes the published development secrets, makes its own KEK,
        # and allows plain HTTP and Kafka without a proven principal: fine on this
        # machine, failing open elsewhere. A host installed without PRIVOPS_ENV ran so
        # against a remote cluster, unsaid (ops and connector reviews, session 33).
        if "env" in self.model_fields_set:
            return self
        remote = sorted(h for h in self._reached_hosts() if not is_loopback(h))
        if remote:
            raise ValueError(
                f"PRIVOPS_ENV is not set and this process reaches or serves "
                f"{', '.join(remote)}, beyond this machine: set PRIVOPS_ENV=prod (or "
                "PRIVOPS_ENV=dev to use the development settings there on purpose)"
            )
        return self

    def _reached_hosts(self) -> set[str]:
        """The hosts this process talks to or listens on. The API's own address counts
        (PRIVOPS_WEB_HOST, PRIVOPS_WEB_ADVERTISED_URL): a worker behind a loopback Kafka
        proxy, listening on 0.0.0.0, ran dev's published keys and plain HTTP for every
        other machine to reach, unsaid (ops review, session 44)."""
        hosts = {hp.strip().rsplit(":", 1)[0].strip("[]") for hp in self.kafka_bootstrap.split(",")}
        hosts.add(self.web_host.strip("[]"))
        for url in (self.registry_url, self.web_url, self.web_advertised_url):
            if url and (host := urlsplit(url).hostname):
                hosts.add(host)
        return {h for h in hosts if h}

    @model_validator(mode="after")
    def _clock_shifted_only_in_dev(self) -> Settings:
        # The worker's clock decides legal deadlines, command freshness and audit times,
        # while Prometheus and the broker keep the wall clock: outside a demo or a test,
        # a shift would move every deadline and make alerts disagree (ops review).
        if self.env != "dev" and self.clock_offset_days:
            raise ValueError(
                f"PRIVOPS_CLOCK_OFFSET_DAYS shifts the worker's clock (legal deadlines, "
                f"audit times): for demos and tests only, refused with PRIVOPS_ENV={self.env}"
            )
        return self

    @model_validator(mode="after")
    def _no_dev_secrets_outside_dev(self) -> Settings:
        """A development secret set on purpose outside dev is refused at once. One left
        unset is refused by what uses it (``require_secrets``: the worker, the audit
        CLI): a business system's connector holds neither key and must not be asked for
        them (review, session 25: a production connector had to be given privops' audit
        key, which only the worker and the DPO may hold, or made-up values)."""
        weak = self._dev_secrets(set(self.model_fields_set))
        if weak:
            raise ValueError(weak)
        return self

    def require_secrets(self, *names: str) -> Settings:
        """``self``, or a ConfigError naming each of privops' own secrets (``names``;
        default: both) still at its development value outside dev. Called by everything
        that hashes or signs with them, before it does, for the ones it uses."""
        weak = self._dev_secrets(set(names or DEV_SECRETS))
        if weak:
            raise ConfigError(f"invalid settings: {weak}")
        return self

    def _dev_secrets(self, names: set[str]) -> str | None:
        if self.env == "dev":
            return None
        weak = [n for n, value in DEV_SECRETS.items() if n in names and getattr(self, n) == value]
        if not weak:
            return None
        listed = ", ".join(f"PRIVOPS_{n.upper()}" for n in weak)
        return (
            f"PRIVOPS_ENV={self.env} with the development value of {listed}; "
            "set a secret of your own"
        )

    @property
    def worker_data_dir(self) -> Path:
        return self.data_dir or (self.home / "worker")

    @property
    def app_data_dir(self) -> Path:
        """This app id's table state: two app ids on one machine never share a store."""
        return self.worker_data_dir / self.app_id


LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (a loopback name or address)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unknown_names(environ: Mapping[str, str]) -> list[str]:
    """A line for each ``PRIVOPS_*`` name in ``environ`` that nothing reads (a misspelt
    one is otherwise ignored, its default used unsaid), with the nearest that is."""
    known = {f"PRIVOPS_{name.upper()}" for name in Settings.model_fields} | READ_ELSEWHERE
    # Matched without the prefix every name shares, or any name is near enough.
    stems = sorted(k.removeprefix("PRIVOPS_") for k in known)
    lines = []
    for name in sorted(n for n in environ if n.startswith("PRIVOPS_") and n not in known):
        near = difflib.get_close_matches(name.removeprefix("PRIVOPS_"), stems, n=1, cutoff=0.6)
        hint = f" (did you mean PRIVOPS_{near[0]}?)" if near else ""
        lines.append(f"{name} is not a privops setting and is ignored{hint}")
    return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    for line in unknown_names(os.environ):
        log.warning("%s", line)
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc
    except SettingsError as exc:
        # pydantic-settings parses list and map settings as JSON before validating and
        # fails outside ValidationError; the value may be a secret, so only its name.
        raise ConfigError(f"invalid settings: {_unparsable(str(exc))}") from None


_FIELD_IN_ERROR = re.compile(r'field "(\w+)"')


def _unparsable(message: str) -> str:
    """Which setting pydantic-settings could not parse, and the JSON shape it wants."""
    match = _FIELD_IN_ERROR.search(message)
    field = Settings.model_fields.get(match.group(1)) if match else None
    if match is None or field is None:
        return "a PRIVOPS_* setting read as JSON is not valid JSON"
    if get_origin(field.annotation) is dict:
        shape = 'a JSON object, e.g. {"1": "..."}'
    elif example := field.get_default(call_default_factory=True):
        shape = f"a JSON list, e.g. {json.dumps(list(example))}"
    else:
        shape = 'a JSON list, e.g. ["..."]'
    return f"PRIVOPS_{match.group(1).upper()}: not valid JSON; give {shape}"


def origin(url: str) -> str:
    """``url`` as scheme://host[:port] (http or https, lower-case scheme), or a
    ValueError saying what else it holds, never the value (README: a bad setting is
    named, never repeated; review, session 35): user info would be printed in messages,
    and a path, query or fragment has no place in a base address."""
    if "@" in url:  # checked first: no message repeats a password (which may hold / ? #)
        raise ValueError("a base URL holds no user or password (the API asks for them)")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or " " in parts.netloc:
        raise ValueError("use http(s)://HOST:PORT, e.g. https://privops.internal:6066")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("scheme, host and port only, no path, query or fragment")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("the port is not a number from 1 to 65535")
    return f"{scheme}://{parts.netloc}"


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """The variable by its name, then where in its JSON value: ``PRIVOPS_ALERT_DAYS_BEFORE
    (item 0)``, not a ``PRIVOPS_ALERT_DAYS_BEFORE_0`` no one can set (review, session 43)."""
    message = message.removeprefix("Value error, ")
    if not loc:
        return message
    head, *within = loc
    where = "".join(f" (item {p})" if isinstance(p, int) else f" ({p})" for p in within)
    return f"PRIVOPS_{str(head).upper()}{where}: {message}"
