"""The local runtime's security as data: rendered listeners, the ACL policy, the passwords
file, and which principal and password each client connects with (issue 13 point 1).

The broker itself enforcing all this is tests/integration/test_kafka_acls.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from privops.adapters import acls, cluster, credentials, runtime
from privops.adapters.acls import ADMIN, DPO, WORKER, Acl, Operation, Pattern, Resource
from privops.adapters.kafka import client_options
from privops.adapters.runtime_security import passwords_for
from privops.adapters.settings import Settings
from privops.connectors.runner import group_of
from privops.core.errors import ConfigError, RuntimeUnavailable
from privops.core.topics import (
    ALERTS,
    AUDIT,
    COMMAND_RESULTS,
    COMMANDS,
    CONSENT_STATE,
    DEADLETTER,
    NOTIFICATIONS,
    REQUEST_TICKS,
    SUBJECT_DIRECTIVES,
    SUBJECT_KEYS,
    SUPPRESSION,
    catalogue,
    events_topic,
    legal_holds_topic,
    task_results_topic,
    tasks_topic,
)
from privops.core.vocab import System

# --- the policy, evaluated the way the StandardAuthorizer does for ALLOW rules ----------

IMPLIES_DESCRIBE = {Operation.READ, Operation.WRITE, Operation.DESCRIBE, Operation.ALL}
EVERY_TOPIC = [spec.name for spec in catalogue(1)]


def allowed(principal: str, operation: Operation, resource: Resource, name: str) -> bool:
    def matches(acl: Acl) -> bool:
        if acl.principal != principal or acl.resource != resource:
            return False
        if acl.pattern == Pattern.LITERAL and acl.name != name:
            return False
        if acl.pattern == Pattern.PREFIXED and not name.startswith(acl.name):
            return False
        if acl.operation in (operation, Operation.ALL):
            return True
        return operation == Operation.DESCRIBE and acl.operation in IMPLIES_DESCRIBE

    return any(matches(acl) for acl in acls.bindings())


def writers(topic: str) -> set[str]:
    return {p for p in acls.principals() if allowed(p, Operation.WRITE, Resource.TOPIC, topic)} - {
        ADMIN
    }  # the super user needs no ACL and has none


def readers(topic: str) -> set[str]:
    return {p for p in acls.principals() if allowed(p, Operation.READ, Resource.TOPIC, topic)}


@pytest.mark.parametrize("system", list(System))
def test_each_system_writes_only_its_events_and_answers_and_reads_only_its_tasks_and_holds(
    system: System,
) -> None:
    who = acls.system_principal(system)
    assert who == f"system-{system.value}"
    written = {t for t in EVERY_TOPIC if who in writers(t)}
    assert written == {events_topic(system), task_results_topic(system)}
    read = {t for t in EVERY_TOPIC if who in readers(t)}
    assert read == {tasks_topic(system), legal_holds_topic(system)}
    assert writers(legal_holds_topic(system)) == {WORKER}
    assert writers(events_topic(system)) == {who}
    assert writers(task_results_topic(system)) == {who}
    group = acls.connector_group(system)
    assert allowed(who, Operation.READ, Resource.GROUP, group)
    assert allowed(who, Operation.READ, Resource.GROUP, f"{group}-test-123")
    assert not allowed(who, Operation.READ, Resource.GROUP, "privops")  # the worker's group
    assert not allowed(who, Operation.CREATE, Resource.CLUSTER, acls.CLUSTER)


def test_the_dpo_writes_commands_and_reads_their_answers_and_the_audit() -> None:
    assert {t for t in EVERY_TOPIC if DPO in writers(t)} == {COMMANDS}
    assert {t for t in EVERY_TOPIC if DPO in readers(t)} == {COMMAND_RESULTS, AUDIT}
    assert not any(allowed(DPO, Operation.READ, Resource.GROUP, g) for g in ("privops", ""))


@pytest.mark.parametrize(
    "topic",
    [
        AUDIT,
        CONSENT_STATE,
        SUBJECT_KEYS,
        COMMAND_RESULTS,
        ALERTS,
        NOTIFICATIONS,
        DEADLETTER,
        SUBJECT_DIRECTIVES,
        REQUEST_TICKS,
        SUPPRESSION,
        *(tasks_topic(s) for s in System),
        "privops-consent-1a2b-requests-changelog",  # a Faust changelog of any app id
    ],
)
def test_only_the_worker_writes_what_privops_writes(topic: str) -> None:
    assert writers(topic) == {WORKER}


def test_commands_come_from_the_dpo_and_the_worker_follow_ups_only() -> None:
    assert writers(COMMANDS) == {DPO, WORKER}


def test_the_worker_reads_every_input_creates_topics_and_owns_its_groups() -> None:
    for topic in EVERY_TOPIC:
        assert WORKER in readers(topic), topic
    assert allowed(WORKER, Operation.CREATE, Resource.CLUSTER, acls.CLUSTER)
    for group in ("privops", "privops-consent-1a2b", "privops-shared-test-slice"):
        assert allowed(WORKER, Operation.READ, Resource.GROUP, group)
    assert not allowed(WORKER, Operation.READ, Resource.GROUP, "billing")


def test_the_writer_of_a_topic_is_who_the_acls_let_write_it() -> None:
    for topic in EVERY_TOPIC:
        assert acls.writer_of(topic) in writers(topic), topic


# --- rendered server.properties -------------------------------------------------------


def rendered(brokers: int, node: int, tmp_path: Path) -> dict[str, str]:
    layout = cluster.plan("127.0.0.1:19092", 19093, brokers, 10)
    security = cluster.Security(runtime.SECURITY_TEMPLATE.read_text(), "s3cret-Pw_1")
    text = cluster.render_properties(
        runtime.KAFKA_TEMPLATE.read_text(), layout, layout.nodes[node - 1], tmp_path, security
    )
    return cluster.parse_properties(text)


@pytest.mark.parametrize(("brokers", "node"), [(1, 1), (3, 1), (3, 3)])
def test_every_listener_asks_for_credentials_and_the_authorizer_denies_the_rest(
    brokers: int, node: int, tmp_path: Path
) -> None:
    p = rendered(brokers, node, tmp_path)
    port = 19092 + (node - 1) * 10
    assert p["listeners"] == f"SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}"
    assert p["advertised.listeners"] == f"SASL_PLAINTEXT://127.0.0.1:{port}"
    assert p["listener.security.protocol.map"] == (
        "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    assert p["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert p["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert p["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert p["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert (
        'password="s3cret-Pw_1"' in p["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    )
    assert 'user_admin="s3cret-Pw_1"' in p["listener.name.controller.plain.sasl.jaas.config"]
    assert p["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert p["allow.everyone.if.no.acl.found"] == "false"
    assert p["super.users"] == "User:admin"


def test_without_security_the_node_is_open_as_before(tmp_path: Path) -> None:
    layout = cluster.plan("127.0.0.1:19092", 19093, 1, 10)
    text = cluster.render_properties(
        runtime.KAFKA_TEMPLATE.read_text(), layout, layout.nodes[0], tmp_path
    )
    p = cluster.parse_properties(text)
    assert p["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert "authorizer.class.name" not in p
    assert "sasl.mechanism.controller.protocol" not in p


# --- the passwords file ------------------------------------------------------------------


def test_passwords_are_generated_once_per_home_owner_only(tmp_path: Path) -> None:
    path = credentials.credentials_path(tmp_path)
    first = credentials.ensure_credentials(path, acls.principals())
    assert set(first) == set(acls.principals())
    assert len(set(first.values())) == len(first)  # none shared
    assert all(len(pw) >= 40 for pw in first.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials.ensure_credentials(path, acls.principals()) == first
    more = credentials.ensure_credentials(path, [*acls.principals(), "system-new"])
    assert {k: more[k] for k in first} == first
    assert "system-new" in more
    other = credentials.ensure_credentials(tmp_path / "elsewhere.json", acls.principals())
    assert not set(other.values()) & set(first.values())


def test_a_passwords_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = credentials.credentials_path(tmp_path)
    credentials.ensure_credentials(path, [DPO])
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        credentials.read_credentials(path)


def test_missing_file_and_unknown_principal_say_what_to_do(tmp_path: Path) -> None:
    path = credentials.credentials_path(tmp_path)
    with pytest.raises(RuntimeUnavailable, match="privops local up"):  # exit 3, not 2
        credentials.password(path, DPO)
    credentials.ensure_credentials(path, [DPO])
    with pytest.raises(ConfigError, match="no Kafka principal 'mallory'"):
        credentials.password(path, "mallory")
    path.write_text("{not json")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="unreadable"):
        credentials.read_credentials(path)


def test_storage_formatted_without_credentials_is_not_started_half_secured(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(ConfigError, match="formatted without SCRAM credentials"):
        passwords_for(settings, formatted=True)
    made = passwords_for(settings, formatted=False)
    assert passwords_for(settings, formatted=True) == made
    assert (
        passwords_for(Settings(home=tmp_path, kafka_security_protocol="PLAINTEXT"), formatted=True)
        == {}
    )


# --- who each client connects as -----------------------------------------------------------


def test_clients_connect_as_their_principal_with_the_runtime_password(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:19092")
    passwords = credentials.ensure_credentials(settings.kafka_credentials_file, acls.principals())
    worker = client_options(settings)
    assert worker == {
        "bootstrap_servers": "127.0.0.1:19092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": WORKER,
        "sasl_plain_password": passwords[WORKER],
    }
    assert client_options(settings, default=DPO)["sasl_plain_username"] == DPO
    crm = client_options(settings, "system-crm", default=DPO)
    assert (crm["sasl_plain_username"], crm["sasl_plain_password"]) == (
        "system-crm",
        passwords["system-crm"],
    )
    jane = Settings(home=tmp_path, kafka_principal="system-web")
    assert client_options(jane, default=DPO)["sasl_plain_username"] == "system-web"
    open_runtime = Settings(home=tmp_path, kafka_security_protocol="PLAINTEXT")
    assert client_options(open_runtime) == {"bootstrap_servers": open_runtime.kafka_bootstrap}


def test_outside_dev_only_a_configured_password_is_used(tmp_path: Path) -> None:
    credentials.ensure_credentials(credentials.credentials_path(tmp_path), acls.principals())
    prod = Settings(
        home=tmp_path,
        env="prod",
        pseudonym_key="a-production-pseudonym-key",
        audit_key="a-production-audit-key-123",
        kafka_principal="dpo-jane",
        kafka_password="from-the-vault-0123",
    )
    found = client_options(prod, default=DPO)
    assert (found["sasl_plain_username"], found["sasl_plain_password"]) == (
        "dpo-jane",
        "from-the-vault-0123",
    )
    with pytest.raises(ConfigError, match="PRIVOPS_KAFKA_PASSWORD"):
        client_options(prod, "system-crm")  # the dev file is never read outside dev
    with pytest.raises(ValueError, match="without PRIVOPS_KAFKA_PRINCIPAL"):
        Settings(home=tmp_path, kafka_password="orphan-password")


def test_clients_follow_the_protocol_the_runtime_was_started_with(tmp_path: Path) -> None:
    layout = cluster.plan("127.0.0.1:19092", 19093, 1, 10)
    cluster.write_state(tmp_path, layout, "PLAINTEXT")
    assert Settings(home=tmp_path).kafka_security_protocol == "PLAINTEXT"
    assert json.loads(cluster.state_path(tmp_path).read_text())["security_protocol"] == "PLAINTEXT"
    cluster.write_state(tmp_path, layout, "SASL_PLAINTEXT")
    assert Settings(home=tmp_path).kafka_security_protocol == "SASL_PLAINTEXT"


def test_the_runtime_prints_a_principals_settings_and_refuses_unknown_ones(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:19092")
    passwords = credentials.ensure_credentials(settings.kafka_credentials_file, acls.principals())
    assert runtime.client_settings(settings, "system-crm") == {
        "bootstrap_servers": "127.0.0.1:19092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "username": "system-crm",
        "password": passwords["system-crm"],
    }
    with pytest.raises(ConfigError, match="unknown principal"):
        runtime.client_settings(settings, "system-billing")


@pytest.mark.parametrize(
    ("given", "group"),
    [
        (None, "privops-connector-crm"),
        ("privops-connector-crm", "privops-connector-crm"),
        ("privops-connector-crm-run2", "privops-connector-crm-run2"),
        ("test-sim-1a2b", "privops-connector-crm-test-sim-1a2b"),
        ("privops", "privops-connector-crm-privops"),  # never the worker's group
    ],
)
def test_a_connector_uses_only_groups_its_system_may(given: str | None, group: str) -> None:
    assert group_of(System.crm, given) == group
    assert allowed("system-crm", Operation.READ, Resource.GROUP, group)


# --- the storage format step -----------------------------------------------------------------


def test_formatting_storage_never_puts_a_password_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ps` shows every process's command line to anyone on the machine: the SCRAM
    passwords go to the format tool in a java argument file (0600), removed after."""
    settings = Settings(home=tmp_path)
    node = runtime.Kafka(settings)
    seen: list[tuple[list[str], str, int]] = []

    def run(cmd: list[str], *, what: str, cwd: Path | None = None) -> str:
        argfile = Path(cmd[-1].removeprefix("@"))
        seen.append((cmd, argfile.read_text(), stat.S_IMODE(argfile.stat().st_mode)))
        return ""

    monkeypatch.setattr(runtime, "_run", run)
    monkeypatch.setattr(runtime, "_java", lambda: "java")
    node.prepare(lambda _message: None)
    passwords = credentials.read_credentials(settings.kafka_credentials_file)
    [(cmd, text, mode)] = seen
    assert cmd[:3] == ["java", "-cp", node.classpath()]
    assert cmd[3].startswith("@")
    assert mode == 0o600
    assert not any(pw in " ".join(cmd) for pw in passwords.values())
    for principal, pw in passwords.items():
        assert f'"SCRAM-SHA-512=[name={principal},password={pw}]"' in text
    assert text.startswith('"kafka.tools.StorageTool"\n"format"\n')
    assert not Path(cmd[3][1:]).exists()


def test_a_java_argument_is_quoted_with_its_backslashes_and_quotes_escaped() -> None:
    """The launcher's @argfile rules (checked against a JVM by hand: `java -cp . @file`
    gave back each of these as written; the format step itself runs at every start of
    the integration suite's secured runtime, whose clients then log in with them)."""
    assert runtime.java_argument("a b") == '"a b"'
    assert runtime.java_argument("back\\slash") == '"back\\\\slash"'
    assert runtime.java_argument('q"uote') == '"q\\"uote"'
