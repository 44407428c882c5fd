"""The bench's own Kafka, registry and worker: never a developer's or the tests'.

A fresh Kafka + registry under a temporary home on ports of its own, and a real
`privops worker` subprocess, watched through its /health and /metrics.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Self

from privops.adapters import runtime
from privops.adapters.kafka import create_topics
from privops.adapters.serde import Serde
from privops.adapters.settings import REPO_ROOT, Settings
from privops.core.topics import TopicSpec, catalogue, events_topic, tasks_topic
from privops.core.vocab import System
from privops.tools.bench.kafka_io import commit_at_end
from privops.tools.bench.measure import Say, http_text, quiet, upstream_consumed
from privops.tools.worker_process import WorkerProcess

# Ports of the bench's own runtime: never the developer's (19092/18081/6066) nor the
# test session's (29092/28081/26066).
BENCH_PORTS: dict[str, int] = {
    "kafka": 24092,
    "controller": 24093,
    "registry": 24081,
    "registry_management": 24001,
    "web": 24066,
}
PING_TOPIC = "privops.bench.ping"
EVENT_TOPICS: tuple[str, ...] = tuple(events_topic(s) for s in System)
TASK_TOPICS: tuple[str, ...] = tuple(tasks_topic(s) for s in System)
WORKER_START_TIMEOUT_S = 180.0


class BenchRuntime:
    """A fresh Kafka + registry under a temporary home, and the worker the bench runs."""

    def __init__(self, say: Say = quiet, *, partitions: int = 4) -> None:
        self.say = say
        self.home = Path(tempfile.mkdtemp(prefix="privops-bench-"))
        self.env: dict[str, str] = {
            "PRIVOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{BENCH_PORTS['kafka']}",
            "PRIVOPS_KAFKA_CONTROLLER_PORT": str(BENCH_PORTS["controller"]),
            "PRIVOPS_REGISTRY_URL": f"http://127.0.0.1:{BENCH_PORTS['registry']}/apis/ccompat/v7",
            "PRIVOPS_REGISTRY_PORT": str(BENCH_PORTS["registry"]),
            "PRIVOPS_REGISTRY_MANAGEMENT_PORT": str(BENCH_PORTS["registry_management"]),
            "PRIVOPS_HOME": str(self.home),
            "PRIVOPS_TOPIC_PARTITIONS": str(partitions),
            "PRIVOPS_WEB_PORT": str(BENCH_PORTS["web"]),
            "PRIVOPS_WEB_HOST": "127.0.0.1",
            "PRIVOPS_PSEUDONYM_KEY": "bench-pseudonym-key-0123456789",
        }
        self.settings = Settings(
            kafka_bootstrap=self.env["PRIVOPS_KAFKA_BOOTSTRAP"],
            kafka_controller_port=BENCH_PORTS["controller"],
            registry_url=self.env["PRIVOPS_REGISTRY_URL"],
            registry_port=BENCH_PORTS["registry"],
            registry_management_port=BENCH_PORTS["registry_management"],
            home=self.home,
            topic_partitions=partitions,
            web_port=BENCH_PORTS["web"],
        )
        self.serde = Serde(self.settings.registry_url, self.settings.schema_dir)
        self.worker: WorkerProc | None = None
        self.app_id = f"privops-bench-{uuid.uuid4().hex[:8]}"
        self.subjects_loaded = 0

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    def start(self) -> None:
        runtime.up(self.settings, self.say)
        specs = [*catalogue(self.settings.topic_partitions), TopicSpec(PING_TOPIC, "none", 1)]
        asyncio.run(create_topics(self.bootstrap, specs))
        self.serde.register_all()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        runtime.down(self.settings, self.say)
        shutil.rmtree(self.home, ignore_errors=True)

    def ensure_worker(self) -> WorkerProc:
        if self.worker is None or not self.worker.running:
            self.worker = self.fresh_worker(skip_backlog=True)
        return self.worker

    def fresh_worker(self, *, skip_backlog: bool) -> WorkerProc:
        """A worker with a new app id and empty tables.

        skip_backlog: commit its group's offsets at the current end of the six event
        topics first, so it only takes in what the scenario produces next.
        """
        if self.worker is not None:
            self.worker.stop()
        self.app_id = f"privops-bench-{uuid.uuid4().hex[:8]}"
        self.subjects_loaded = 0
        shutil.rmtree(self.home / "worker-data", ignore_errors=True)
        if skip_backlog:
            asyncio.run(commit_at_end(self.bootstrap, self.app_id, EVENT_TOPICS))
        self.worker = WorkerProc.start(self, self.home / "worker-data")
        return self.worker


@contextmanager
def bench_runtime(say: Say = quiet) -> Iterator[BenchRuntime]:
    rt = BenchRuntime(say)
    try:
        rt.start()
        yield rt
    finally:
        rt.stop()


class WorkerProc(WorkerProcess):
    """A worker on the bench runtime, which reads its progress from /metrics."""

    @classmethod
    def start(cls, rt: BenchRuntime, data_dir: Path, *, wait: bool = True) -> Self:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PRIVOPS_")},
            **rt.env,
            "PRIVOPS_APP_ID": rt.app_id,
            "PRIVOPS_DATA_DIR": str(data_dir),
        }
        url = f"http://127.0.0.1:{rt.settings.web_port}"
        worker = cls.spawn(env, url, rt.home / "worker.log", cwd=REPO_ROOT)
        if wait:
            worker.wait_healthy(WORKER_START_TIMEOUT_S)
        return worker

    def consumed(self) -> int:
        """Upstream events the worker has taken in so far."""
        return upstream_consumed(http_text(f"{self.url}/metrics"))


def wait_consumed(
    worker: WorkerProc, target: int, timeout: float, say: Say = quiet
) -> tuple[int, float]:
    """Poll /metrics until the worker has consumed `target` upstream events.

    Returns (consumed, seconds since this call) at the end or at the timeout.
    """
    started = time.perf_counter()
    last_say = started
    consumed = 0
    while True:
        with suppress(OSError):
            consumed = worker.consumed()
        now = time.perf_counter()
        if consumed >= target or now - started > timeout or not worker.running:
            return consumed, now - started
        if now - last_say > 15:
            say(f"worker consumed {consumed:,}/{target:,} ({consumed / (now - started):,.0f}/s)")
            last_say = now
        # Each scrape renders every metric in the worker's event loop (~5-10 ms of its
        # CPU); polling 4x/s took ~9% of the measured worker, so poll twice a second.
        time.sleep(0.5)
