"""The Faust application: the only place the App is created (agents import it).

Values travel as raw bytes on every topic and are decoded by the agents themselves
(``streams.io``), so a record that cannot be decoded is dead-lettered with its original
bytes, topic, partition and offset instead of being skipped inside the consumer.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from pathlib import Path

import faust
from faust.sensors.prometheus import setup_prometheus_sensors

from privops.adapters import metrics, web_tls
from privops.adapters.kafka import client_options
from privops.adapters.settings import get_settings
from streams import batching

log = logging.getLogger(__name__)
settings = get_settings().require_secrets()  # it hashes and signs with them
# The worker connects as the `privops` principal (SASL/SCRAM unless the cluster is open).
kafka_client = client_options(settings)

app = faust.App(
    settings.app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    broker_credentials=(
        faust.SASLCredentials(
            username=kafka_client["sasl_plain_username"],
            password=kafka_client["sasl_plain_password"],
            mechanism=kafka_client["sasl_mechanism"],
            ssl_context=kafka_client.get("ssl_context"),
        )
        if "sasl_mechanism" in kafka_client
        else None
    ),
    store=settings.store,
    datadir=str(settings.app_data_dir),
    autodiscover=["agents"],
    origin="streams",
    topic_partitions=settings.topic_partitions,
    topic_allow_declare=True,
    topic_disable_leader=True,
    value_serializer="raw",
    key_serializer="raw",
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_bind=settings.web_host,
    # HTTPS when the worker has a certificate (privops.adapters.web_tls): the address the
    # other workers forward to says so (PRIVOPS_WEB_ADVERTISED_URL, else the listening one).
    web_ssl_context=web_tls.server_context(settings),
    canonical_url=web_tls.own_url(settings),
    # Faust's /table pages serve any table's values to whoever asks, and /router the
    # group's topology; privops answers through its own authenticated pages (agents.http)
    # and routes with app.router directly, so neither is served.
    web_tables_enabled=False,
    web_router_enabled=False,
    producer_acks=-1,
    topic_replication_factor=settings.replication_factor,
    stream_wait_empty=False,
    broker_commit_every=100,
    # A flush hands the producer whole batches (streams.batching.send_batched): fewer,
    # larger batches per partition (the broker takes up to 1 MB).
    producer_max_batch_size=256 * 1024,
    broker_commit_interval=1.0,
    table_cleanup_interval=60.0,
    consumer_auto_offset_reset=settings.consumer_offset_reset,
    broker_session_timeout=settings.group_session_timeout_seconds,
    table_standby_replicas=settings.standby_replicas,
    broker_heartbeat_interval=min(3.0, settings.group_session_timeout_seconds / 3),
)
# Every send is idempotent (a retry after a lost acknowledgement writes once), set before
# anything makes the app's transport (streams.batching).
batching.idempotent_producer(app)
batching.set_fetch_wait(settings.fetch_min_bytes, settings.fetch_max_wait_ms)
setup_prometheus_sensors(
    app, pattern="/metrics", registry=metrics.REGISTRY, name_prefix=metrics.FAUST_SENSOR_PREFIX
)
batching.fetch_monitor(app)


# The garbage collector (docs/benchmarks.md, session 8). The worker's heap is large and
# long-lived (Faust, the schemas, the key rings, the decoded values it keeps), and the
# hot path allocates many short-lived containers. With CPython's default thresholds
# (700, 10, 10) the young generations are collected every few hundred allocations and
# the whole heap every hundred of those passes: 15-30% of an event's CPU in process.
# The worker collects its young generation every 50,000 net allocations instead, and
# takes what it holds once started out of every pass (``settle_heap``). Cyclic garbage
# is still collected; it just waits longer.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Collect the young generations less often (the worker process only)."""
    gc.set_threshold(*GC_THRESHOLDS)


def settle_heap() -> None:
    """Collect once, then freeze what survives: the collector's passes skip it from now
    on (``gc.freeze``). Called when the worker has started (tables recovered)."""
    gc.collect()
    gc.freeze()


class Worker(faust.Worker):
    """Faust's worker with a bound on shutdown.

    With the broker gone, stopping the Kafka consumer thread waits out mode's 60 s child
    timeout, then the producer and the group leave time out too (~95 s measured). Every
    handler is idempotent and offsets are committed only after processing, so ending the
    process after a grace period loses nothing that a restart does not redo. Overrides
    mode's (mode-streaming 0.4, faust-streaming 0.15) signal hooks, which call the same
    shutdown as before.

    With the broker answering (the last health check said so), the shutdown is given up
    to ``longest_seconds``: closing large RocksDB tables takes longer than the grace
    (8.1 s at 50,000 subjects), and the consumer leaves its group only after them. Cut
    short, it never leaves, and the worker that takes over waits out the group's session
    timeout (30 s) before it is assigned anything (docs/benchmarks.md, restart).
    """

    grace_seconds: float = 8.0
    longest_seconds: float = 45.0

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        settle_heap()

    def _arm_watchdog(self) -> None:
        started = time.monotonic()

        def expire() -> None:
            waited = time.monotonic() - started
            if waited < self.longest_seconds and _broker_answered():
                arm(min(self.grace_seconds, self.longest_seconds - waited))
                return
            log.warning("shutdown took over %.0f s (broker gone?): exiting now", waited)
            logging.shutdown()
            os._exit(0)

        def arm(seconds: float) -> None:
            timer = threading.Timer(seconds, expire)
            timer.daemon = True
            timer.start()

        arm(self.grace_seconds)

    def _stopping(self) -> None:
        """A stop signal: bound the shutdown, and make stopping the tables cheap.

        Faust's RocksDB store runs a full ``gc.collect()`` as each table stops
        (faust/stores/rocksdb.py, ``Store.stop``): six passes over the whole heap, which
        grows with the subjects held (key rings, decoded values). py-spy put 2.3 s of a
        small bench worker's 2.4 s shutdown CPU there. Freezing the heap first leaves
        those passes only what the shutdown itself allocates: nothing the worker holds
        is garbage to look for now, and the process is ending.
        """
        self._arm_watchdog()
        gc.freeze()

    def _on_sigterm(self) -> None:
        self._stopping()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._stopping()
        super()._on_sigint()


def _broker_answered() -> bool:
    """Whether the worker's last health check found the broker and registry answering."""
    from streams.health import health  # imports this module: read at shutdown only

    return health.ok


def run_worker(loglevel: str | None = None) -> None:
    """Check everything, create the topics, register the schemas, then run until stopped.

    Any problem found before Faust starts (data map, schemas, an agent module, the web
    port, another worker on the same data dir, the broker) ends the command with one
    clear line and a non-zero exit instead of a half-started worker.
    """
    from privops.core.records import ALL_RECORDS
    from streams.bootstrap import ensure_topics
    from streams.context import collaborators
    from streams.startup import preflight

    collaborators()  # the data map, clock, schedule and keys: a bad data map stops here
    # Until Faust runs, a failed connect is reported once, as the command's own line;
    # aiokafka's lines before it broke "one line" for a log reader (review, session 32).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    lock = preflight(settings, settings.app_data_dir, Path(app.conf.tabledir), app.conf)
    from streams.io import serde

    ensure_topics()
    serde.register_all()
    from streams import pipeline

    pipeline.start()
    metrics.register_event_types(record.__name__ for record in ALL_RECORDS)
    tune_gc()
    worker = Worker(app, loglevel=loglevel or settings.log_level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        worker.execute_from_commandline()
    finally:
        lock.close()
