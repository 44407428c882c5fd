"""The bench's own Kafka, registry and workers: never a developer's or the tests'.

A fresh Kafka + registry under a temporary home on ports of its own, and real
`privops worker` subprocesses (one group, each with its own web port and data dir),
watched through their /health, /metrics and /proc CPU times.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Self

from privops.adapters import runtime
from privops.adapters.kafka import client_options, create_topics
from privops.adapters.serde import Serde
from privops.adapters.settings import REPO_ROOT, Settings
from privops.core.topics import TopicSpec, catalogue, events_topic, tasks_topic
from privops.core.vocab import System
from privops.tools.bench.baselines import SCRATCH_TOPICS
from privops.tools.bench.cpu import CpuTimes, process_cpu
from privops.tools.bench.kafka_io import commit_at_end
from privops.tools.bench.measure import Say, http_text, quiet, upstream_consumed, worker_timers
from privops.tools.worker_process import WorkerProcess

# The bench's own runtime listens on fixed offsets from a port base (default 24000): never
# the developer's (19092/18081/6066) nor the test sessions' (29092/29081/29166 and
# a block of 1000 ports per xdist worker above them). Worker i
# of a group gets web port base + 66 + i, so at most MAX_WORKERS stay below the registry.
DEFAULT_PORT_BASE = 24000
MAX_WORKERS = 8
_OFFSETS: dict[str, int] = {
    "kafka": 92,
    "controller": 93,
    "registry": 81,
    "registry_management": 1,
    "web": 66,
}


def bench_ports(base: int = DEFAULT_PORT_BASE) -> dict[str, int]:
    return {name: base + offset for name, offset in _OFFSETS.items()}


PING_TOPIC = "privops.bench.ping"
_PING_SPEC = TopicSpec(PING_TOPIC, "none", 1)
EVENT_TOPICS: tuple[str, ...] = tuple(events_topic(s) for s in System)
TASK_TOPICS: tuple[str, ...] = tuple(tasks_topic(s) for s in System)
WORKER_START_TIMEOUT_S = 180.0


class BenchRuntime:
    """A fresh Kafka + registry under a temporary home, and the worker the bench runs."""

    def __init__(
        self, say: Say = quiet, *, partitions: int = 4, port_base: int = DEFAULT_PORT_BASE
    ) -> None:
        self.say = say
        self.home = Path(tempfile.mkdtemp(prefix="privops-bench-"))
        ports = bench_ports(port_base)
        self.env: dict[str, str] = {
            "PRIVOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['kafka']}",
            "PRIVOPS_KAFKA_CONTROLLER_PORT": str(ports["controller"]),
            "PRIVOPS_REGISTRY_URL": f"http://127.0.0.1:{ports['registry']}/apis/ccompat/v7",
            "PRIVOPS_REGISTRY_PORT": str(ports["registry"]),
            "PRIVOPS_REGISTRY_MANAGEMENT_PORT": str(ports["registry_management"]),
            "PRIVOPS_HOME": str(self.home),
            "PRIVOPS_TOPIC_PARTITIONS": str(partitions),
            "PRIVOPS_WEB_PORT": str(ports["web"]),
            "PRIVOPS_WEB_HOST": "127.0.0.1",
            "PRIVOPS_PSEUDONYM_KEY": "bench-pseudonym-key-0123456789",
            # The bench's private runtime listens without SASL: SCRAM costs only each
            # connection's handshake, and the bench's raw clients stay simple.
            "PRIVOPS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        }
        self.settings = Settings(
            kafka_bootstrap=self.env["PRIVOPS_KAFKA_BOOTSTRAP"],
            kafka_controller_port=ports["controller"],
            registry_url=self.env["PRIVOPS_REGISTRY_URL"],
            registry_port=ports["registry"],
            registry_management_port=ports["registry_management"],
            home=self.home,
            topic_partitions=partitions,
            web_port=ports["web"],
            kafka_security_protocol="PLAINTEXT",
        )
        self.serde = Serde.for_settings(self.settings)
        self.workers: list[WorkerProc] = []
        # Set by a scenario that went on after a failure whose log is in the home.
        self.keep_logs = False
        self.app_id = f"privops-bench-{uuid.uuid4().hex[:8]}"
        self.subjects_loaded = 0

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    def start(self) -> None:
        runtime.up(self.settings, self.say)
        specs = catalogue(self.settings.topic_partitions)
        # The produce baseline's outputs: copies of the worker's topics, never the topics.
        by_name = {spec.name: spec for spec in specs}
        scratch = [dataclasses.replace(by_name[t], name=s) for t, s in SCRATCH_TOPICS.items()]
        client = client_options(self.settings)  # the bench runtime listens without SASL
        asyncio.run(create_topics(client, [*specs, *scratch, _PING_SPEC]))
        self.serde.register_all()

    def stop(self, *, keep_logs: bool = False) -> None:
        """Stop everything; after a failure keep the home, whose logs say why."""
        self.stop_workers()
        runtime.down(self.settings, self.say)
        if keep_logs:
            self.say(f"kept {self.home} for its logs (remove it when done)")
        else:
            shutil.rmtree(self.home, ignore_errors=True)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []

    def data_dir(self, index: int) -> Path:
        return self.home / ("worker-data" if index == 0 else f"worker-data-{index}")

    def web_port(self, index: int) -> int:
        return self.settings.web_port + index

    def ensure_worker(self) -> WorkerProc:
        if len(self.workers) != 1 or not self.workers[0].running:
            return self.fresh_workers(1, skip_backlog=True)[0]
        return self.workers[0]

    def fresh_workers(
        self, count: int, *, skip_backlog: bool, prepare: Callable[[], None] | None = None
    ) -> list[WorkerProc]:
        """`count` workers of one new group (new app id), with empty tables.

        skip_backlog: commit the group's offsets at the current end of the six event
        topics first, so it only takes in what the scenario produces next.
        prepare: called after that and before the workers start (it produces their input).
        """
        if not 1 <= count <= MAX_WORKERS:
            raise ValueError(f"1 to {MAX_WORKERS} workers, not {count}")
        self.stop_workers()
        self.app_id = f"privops-bench-{uuid.uuid4().hex[:8]}"
        self.subjects_loaded = 0
        for index in range(MAX_WORKERS):
            shutil.rmtree(self.data_dir(index), ignore_errors=True)
        if skip_backlog:
            asyncio.run(commit_at_end(self.bootstrap, self.app_id, EVENT_TOPICS))
        if prepare is not None:
            prepare()
        # Start them all before waiting, so they join the group together.
        self.workers = [
            WorkerProc.start(self, self.data_dir(i), web_port=self.web_port(i), wait=False)
            for i in range(count)
        ]
        for worker in self.workers:
            worker.wait_healthy(WORKER_START_TIMEOUT_S)
        return self.workers


class Stopped(Exception):
    """The bench was asked to stop (SIGTERM) while its runtime ran."""


def _stop_asked(_signum: int, _frame: object) -> None:
    raise Stopped("the bench was stopped (SIGTERM)")


@contextmanager
def bench_runtime(say: Say = quiet, port_base: int = DEFAULT_PORT_BASE) -> Iterator[BenchRuntime]:
    """The runtime for the body, stopped afterwards: its home is kept after a failure
    (its logs say why) and removed otherwise. A SIGTERM stops it too, as Ctrl-C does:
    without this, the bench's Kafka, registry and workers outlived it, and so did its
    home (631 MB after a partial 1,000,000-subject load)."""
    rt = BenchRuntime(say, port_base=port_base)
    failed = True
    previous = signal.signal(signal.SIGTERM, _stop_asked)
    try:
        rt.start()
        yield rt
        failed = False
    except (Stopped, KeyboardInterrupt):
        failed = False  # asked to stop: nothing went wrong to keep logs for
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        rt.stop(keep_logs=failed or rt.keep_logs)


class WorkerProc(WorkerProcess):
    """A worker on the bench runtime, which reads its progress from /metrics."""

    @classmethod
    def start(cls, rt: BenchRuntime, data_dir: Path, *, web_port: int, wait: bool = True) -> Self:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PRIVOPS_")},
            **rt.env,
            "PRIVOPS_APP_ID": rt.app_id,
            "PRIVOPS_DATA_DIR": str(data_dir),
            "PRIVOPS_WEB_PORT": str(web_port),
        }
        url = f"http://127.0.0.1:{web_port}"
        log = rt.home / f"worker-{web_port}.log"
        worker = cls.spawn(env, url, log, cwd=REPO_ROOT)
        if wait:
            worker.wait_healthy(WORKER_START_TIMEOUT_S)
        return worker

    def consumed(self) -> int:
        """Upstream events the worker has taken in so far."""
        return upstream_consumed(http_text(f"{self.url}/metrics"))

    def cpu(self) -> CpuTimes:
        """CPU the worker process has used so far."""
        return process_cpu(self.proc.pid)

    def timers(self) -> dict[str, float]:
        """The worker's own timers so far (``measure.WORKER_TIMERS``)."""
        return worker_timers(http_text(f"{self.url}/metrics"))


def consumed_by(workers: Sequence[WorkerProc], previous: Sequence[int] = ()) -> list[int]:
    """Upstream events each worker has taken in; one that does not answer this time
    keeps its `previous` count (0 without one)."""
    counts = [*previous, *[0] * (len(workers) - len(previous))]
    for index, worker in enumerate(workers):
        with suppress(OSError):
            counts[index] = worker.consumed()
    return counts


# Each /metrics scrape renders every metric in the worker's event loop (the old worker:
# ~40 ms of its CPU, all charged to the measured window), so the bench polls seldom while
# far from the end and often near it: the window's end is then known to POLL_MIN_S.
POLL_MIN_S = 0.05
POLL_MAX_S = 2.0


def poll_pause(remaining: int, rate: float | None) -> float:
    """Seconds to wait before the next scrape: half the time the rest should take."""
    if rate is None or rate <= 0:
        return POLL_MAX_S
    return min(POLL_MAX_S, max(POLL_MIN_S, remaining / rate / 2))


def wait_consumed(
    workers: Sequence[WorkerProc], target: int, timeout: float, say: Say = quiet
) -> tuple[int, float]:
    """Poll /metrics until the workers together have consumed `target` upstream events.

    Returns (consumed, seconds since this call) at the end or at the timeout.
    """
    started = time.perf_counter()
    last_say = started
    counts: list[int] = []
    first: int | None = None
    while True:
        counts = consumed_by(workers, counts)
        consumed = sum(counts)
        now = time.perf_counter()
        first = consumed if first is None else first
        stopped = not all(w.running for w in workers)
        if consumed >= target or now - started > timeout or stopped:
            return consumed, now - started
        rate = (consumed - first) / (now - started) if consumed > first else None
        if now - last_say > 15:
            say(f"worker consumed {consumed:,}/{target:,} ({rate or 0:,.0f}/s)")
            last_say = now
        time.sleep(poll_pause(target - consumed, rate))
