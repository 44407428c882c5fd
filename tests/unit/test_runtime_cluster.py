"""The local cluster's layout, node properties, replication rules and persisted broker count.

Everything here is computed without starting a JVM; the 3-broker integration test
(tests/integration/test_three_brokers.py) runs what these describe.
"""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privops.adapters import cluster, dev_certs, runtime
from privops.adapters.kafka import producer_options, replication_config
from privops.adapters.settings import Settings
from privops.cli.common import EXIT_BAD_INPUT
from privops.cli.main import app
from privops.core.errors import ConfigError


def props(layout: cluster.Layout, node_id: int, tmp_path: Path) -> dict[str, str]:
    text = cluster.render_properties(
        runtime.KAFKA_TEMPLATE.read_text(), layout, layout.nodes[node_id - 1], tmp_path
    )
    return cluster.parse_properties(text)


def test_one_broker_is_the_single_node_runtime_it_always_was(tmp_path: Path) -> None:
    layout = cluster.plan("127.0.0.1:19092", 19093, 1, 10)
    assert layout.bootstrap == "127.0.0.1:19092"
    assert layout.voters == "1@127.0.0.1:19093"
    assert [layout.name(n) for n in layout.nodes] == ["kafka"]
    p = props(layout, 1, tmp_path)
    assert p["node.id"] == "1"
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert p["log.dirs"] == str(tmp_path)
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "min.insync.replicas",
        "transaction.state.log.min.isr",
    ):
        assert p[key] == "1", key


def test_three_brokers_get_their_own_ports_and_one_quorum(tmp_path: Path) -> None:
    layout = cluster.plan("127.0.0.1:29092,127.0.0.1:29102", 29093, 3, 10)
    assert [(n.node_id, n.broker_port, n.controller_port) for n in layout.nodes] == [
        (1, 29092, 29093),
        (2, 29102, 29103),
        (3, 29112, 29113),
    ]
    assert layout.bootstrap == "127.0.0.1:29092,127.0.0.1:29102,127.0.0.1:29112"
    assert layout.voters == "1@127.0.0.1:29093,2@127.0.0.1:29103,3@127.0.0.1:29113"
    assert [layout.name(n) for n in layout.nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    every = [props(layout, n, tmp_path / str(n)) for n in (1, 2, 3)]
    assert [p["node.id"] for p in every] == ["1", "2", "3"]
    assert {p["controller.quorum.voters"] for p in every} == {layout.voters}
    assert every[1]["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29102"
    assert every[2]["log.dirs"] == str(tmp_path / "3")
    for p in every:
        assert p["process.roles"] == "broker,controller"
        assert p["offsets.topic.replication.factor"] == "3"
        assert p["transaction.state.log.replication.factor"] == "3"
        assert p["share.coordinator.state.topic.replication.factor"] == "3"
        assert p["default.replication.factor"] == "3"
        assert p["transaction.state.log.min.isr"] == "2"
        assert p["share.coordinator.state.topic.min.isr"] == "2"
        assert p["min.insync.replicas"] == "2"
        assert p["unclean.leader.election.enable"] == "false"
        assert p["auto.create.topics.enable"] == "false"


@pytest.mark.parametrize(
    ("bootstrap", "controller", "brokers", "step", "says"),
    [
        ("127.0.0.1:19092", 19093, 2, 10, "--brokers 2: the local runtime runs 1 broker"),
        ("127.0.0.1:19092", 19093, 0, 10, "--brokers 0"),
        ("127.0.0.1:19092", 19093, 5, 10, "--brokers 5"),
        ("kafka.example.com:9092", 19093, 3, 10, "only runs on loopback"),
        ("127.0.0.1:19092", 19102, 3, 10, "ports overlap"),
        ("127.0.0.1:65530", 65531, 3, 10, "out of range"),
        ("127.0.0.1:x", 19093, 1, 10, "has no port"),
    ],
)
def test_impossible_layouts_say_what_to_fix(
    bootstrap: str, controller: int, brokers: int, step: int, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        cluster.plan(bootstrap, controller, brokers, step)


@pytest.mark.parametrize(
    ("brokers", "replication", "min_isr", "topic_config"),
    [(1, 1, 1, {}), (3, 3, 2, {"min.insync.replicas": "2"})],
)
def test_replication_follows_the_broker_count(
    brokers: int, replication: int, min_isr: int, topic_config: dict[str, str]
) -> None:
    assert cluster.replication_for(brokers) == replication
    assert cluster.min_insync_for(replication) == min_isr
    assert replication_config(replication) == topic_config


def test_every_producer_waits_for_all_in_sync_replicas_and_is_idempotent() -> None:
    options = producer_options("127.0.0.1:1,127.0.0.1:2")
    assert options == {
        "bootstrap_servers": "127.0.0.1:1,127.0.0.1:2",
        "acks": "all",
        "enable_idempotence": True,
    }


def test_the_broker_count_is_kept_under_the_home(tmp_path: Path) -> None:
    assert cluster.read_state(tmp_path) is None
    layout = cluster.plan("127.0.0.1:19092", 19093, 3, 10)
    cluster.write_state(tmp_path, layout)
    assert cluster.read_state(tmp_path) == cluster.RuntimeState(3, layout.bootstrap)
    cluster.state_path(tmp_path).write_text("{not json")
    assert cluster.read_state(tmp_path) is None


def test_settings_follow_the_local_cluster_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRIVOPS_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("PRIVOPS_REPLICATION_FACTOR", raising=False)
    assert Settings(home=tmp_path).replication_factor == 1
    layout = cluster.plan("127.0.0.1:19092", 19093, 3, 10)
    cluster.write_state(tmp_path, layout)
    found = Settings(home=tmp_path)
    assert (found.kafka_bootstrap, found.replication_factor) == (layout.bootstrap, 3)
    monkeypatch.setenv("PRIVOPS_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    monkeypatch.setenv("PRIVOPS_REPLICATION_FACTOR", "1")
    told = Settings(home=tmp_path)
    assert (told.kafka_bootstrap, told.replication_factor) == ("127.0.0.1:19092", 1)


def test_status_lists_every_node_of_the_chosen_count(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:19092")
    assert [row.name for row in runtime.status(settings)] == ["kafka", "registry"]
    cluster.write_state(tmp_path, runtime.layout_of(settings, 3))
    rows = runtime.status(settings)
    assert [row.name for row in rows] == ["kafka-1", "kafka-2", "kafka-3", "registry"]
    assert [row.address for row in rows[:3]] == [
        "127.0.0.1:19092",
        "127.0.0.1:19102",
        "127.0.0.1:19112",
    ]
    assert rows[2].log == tmp_path / "kafka-3" / "kafka-3.log"
    assert not any(row.running for row in rows)


def test_up_with_another_count_refuses_while_the_old_nodes_run(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:19092")
    node = runtime.Kafka(settings, runtime.layout_of(settings, 3), 2)
    node.root.mkdir(parents=True)
    node.pid_file.write_text(str(os.getpid()))  # a live process stands in for the node
    with pytest.raises(ConfigError, match=r"runs 3 broker\(s\).*privops local down"):
        runtime.up(settings, brokers=1)
    assert cluster.read_state(tmp_path) is None  # nothing was started or recorded


def test_cli_rejects_a_broker_count_other_than_1_or_3() -> None:
    out = CliRunner().invoke(app, ["local", "up", "--brokers", "2"])
    assert out.exit_code == EXIT_BAD_INPUT, out.output
    assert "1 broker (the default) or 3" in " ".join(out.output.split())


def test_cluster_ids_are_what_kafka_storage_tool_accepts() -> None:
    ids = {cluster.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for text in ids:
        assert len(text) == 22
        assert not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16


def test_a_sasl_ssl_node_serves_its_development_certificate_and_clients_trust_its_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PRIVOPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL privops local up`: the client listener
    speaks SASL_SSL with a certificate for loopback, its PEM in the properties on one
    line each (a PEM key file would need a key password); the CA is made once per home,
    and every client of that home trusts it unless told otherwise."""
    monkeypatch.delenv("PRIVOPS_KAFKA_SECURITY_PROTOCOL", raising=False)
    monkeypatch.delenv("PRIVOPS_KAFKA_SSL_CAFILE", raising=False)
    settings = Settings(home=tmp_path, kafka_security_protocol="SASL_SSL")
    tls = runtime.broker_tls(settings)
    assert tls is not None
    assert runtime.broker_tls(settings) == tls  # kept: a client holds the CA it has
    assert tls.ca == cluster.kafka_ca(tmp_path).read_text()
    layout = cluster.plan("127.0.0.1:19092", 19093, 1, 10)
    security = cluster.Security(runtime.SECURITY_TEMPLATE.read_text(), "admin-pw", tls)
    text = cluster.render_properties(
        runtime.KAFKA_TEMPLATE.read_text(), layout, layout.nodes[0], tmp_path, security
    )
    p = cluster.parse_properties(text)
    assert p["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert p["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
    assert "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config" in p
    assert p["ssl.keystore.type"] == p["ssl.truststore.type"] == "PEM"
    assert p["ssl.keystore.key"].startswith("-----BEGIN PRIVATE KEY-----\\n")
    assert p["ssl.truststore.certificates"] == tls.ca.strip().replace("\n", "\\n")
    assert "BEGIN PRIVATE KEY" not in tls.chain + tls.ca
    assert runtime.broker_tls(Settings(home=tmp_path)) is None  # SASL_PLAINTEXT
    cluster.write_state(tmp_path, layout, "SASL_SSL")
    client = Settings(home=tmp_path)
    assert client.kafka_security_protocol == "SASL_SSL"
    assert client.kafka_ssl_cafile == cluster.kafka_ca(tmp_path)


def test_the_nodes_of_a_sasl_ssl_cluster_share_one_certificate_made_once(
    tmp_path: Path,
) -> None:
    """`--brokers 3` prepares its nodes in parallel: each must read the one set the
    first made (an independent review, session 23: three CAs, or a key not matching its
    certificate, in 17 trials of 30); a set that is broken, or about to expire, is made
    again."""
    settings = Settings(home=tmp_path, kafka_security_protocol="SASL_SSL")
    with ThreadPoolExecutor(3) as pool:
        made = list(pool.map(lambda _n: runtime.broker_tls(settings), range(3)))
    assert made[0] is not None
    assert made.count(made[0]) == 3
    where = tmp_path / cluster.TLS_DIR
    assert dev_certs.usable(where, "kafka", runtime.LOOPBACK_NAMES) is not None
    (where / "kafka-key.pem").write_text("")  # a power cut mid-write, say
    again = runtime.broker_tls(settings)
    assert again is not None
    assert again.ca != made[0].ca
    assert dev_certs.usable(where, "kafka", runtime.LOOPBACK_NAMES) is not None
    dev_certs.development_certificates(where, runtime.LOOPBACK_NAMES, prefix="kafka", days=1)
    expiring = dev_certs.usable(where, "kafka", runtime.LOOPBACK_NAMES, margin=timedelta(days=2))
    assert expiring is None
    renewed = runtime.broker_tls(settings)
    assert renewed is not None
    assert dev_certs.usable(where, "kafka", runtime.LOOPBACK_NAMES, margin=timedelta(days=30))


def test_up_refuses_to_switch_protocol_under_a_running_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = cluster.plan("127.0.0.1:19092", 19093, 1, 10)
    cluster.write_state(tmp_path, layout, "SASL_PLAINTEXT")
    monkeypatch.setattr(runtime.Kafka, "pid", lambda _self: 4242)
    with pytest.raises(ConfigError, match="runs SASL_PLAINTEXT; stop it"):
        runtime.up(Settings(home=tmp_path, kafka_security_protocol="SASL_SSL"))


def test_a_certificate_near_expiry_is_renewed_only_with_every_node_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new set is a new CA: a node restarted beside running ones would no longer reach
    them (an independent review, session 23). Within 30 days of expiry it is renewed at
    a start with no node running, kept (and warned about) otherwise."""
    settings = Settings(home=tmp_path, kafka_security_protocol="SASL_SSL")
    where = tmp_path / cluster.TLS_DIR
    dev_certs.development_certificates(where, runtime.LOOPBACK_NAMES, prefix="kafka", days=10)
    old = cluster.kafka_ca(tmp_path).read_text()
    monkeypatch.setattr(runtime, "_nodes_running", lambda _settings: True)
    kept = runtime.broker_tls(settings)
    assert kept is not None
    assert kept.ca == old
    monkeypatch.setattr(runtime, "_nodes_running", lambda _settings: False)
    renewed = runtime.broker_tls(settings)
    assert renewed is not None
    assert renewed.ca != old
