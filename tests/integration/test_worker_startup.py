"""The worker runs whole or not at all: every start-up problem is one clear line.

Real `privops worker` subprocesses against the session's broker and registry.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from privops.adapters.settings import DEV_SECRETS, Settings
from tests.conftest import REPO, port, start_worker

pytestmark = pytest.mark.integration


def run_worker_briefly(
    env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `privops worker` expecting it to refuse to start; fail if it keeps running."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "privops.cli.main", "worker"],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    done.elapsed = time.monotonic() - started  # type: ignore[attr-defined]
    return done


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Traceback" not in out, out
    for text in expected:
        assert text in out, out


def test_broken_datamap_exits_naming_the_field_and_line(
    local_runtime: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "datamap.yaml"
    bad.write_text("organisation:\n  controller: X\nsystems:\n  orders:\n    categories: [nope]\n")
    done = run_worker_briefly(
        {
            "PRIVOPS_DATAMAP": str(bad),
            "PRIVOPS_DATA_DIR": str(tmp_path / "data"),
            "PRIVOPS_WEB_PORT": str(port(70)),
        }
    )
    assert_one_clear_line(done, "systems.orders.categories", "line 5")
    assert done.returncode == 2
    assert done.elapsed < 30  # type: ignore[attr-defined]


def test_taken_port_and_shared_data_dir_are_refused(
    local_runtime: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = start_worker(local_runtime, "startup-first", web_port=port(71), data_dir=data)
    try:
        same_port = run_worker_briefly(
            {
                "PRIVOPS_DATA_DIR": str(tmp_path / "other"),
                "PRIVOPS_WEB_PORT": str(port(71)),
                "PRIVOPS_APP_ID": "privops-startup-second",
            }
        )
        assert_one_clear_line(same_port, f"web port 127.0.0.1:{port(71)} is taken")
        assert same_port.returncode == 3

        same_dir = run_worker_briefly(
            {
                "PRIVOPS_DATA_DIR": str(data),
                "PRIVOPS_WEB_PORT": str(port(72)),
                "PRIVOPS_APP_ID": first.env["PRIVOPS_APP_ID"],
            }
        )
        assert_one_clear_line(same_dir, "another worker is using")
        assert same_dir.returncode == 3
    finally:
        first.stop()


def test_two_app_ids_one_after_the_other_share_nothing(
    local_runtime: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    for name in ("appid-a", "appid-b", "appid-a"):
        worker = start_worker(local_runtime, name, web_port=port(73), data_dir=data)
        worker.stop()
        assert "ConsistencyError" not in worker.log.read_text()
    assert {p.name for p in data.iterdir()} == {"privops-appid-a", "privops-appid-b"}


def test_tables_of_another_cluster_are_rebuilt_not_a_crash(
    local_runtime: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    worker = start_worker(local_runtime, "stale", web_port=port(74), data_dir=data)
    worker.stop()
    app_dir = data / worker.env["PRIVOPS_APP_ID"]
    (app_dir / "kafka-cluster-id").write_text("a-cluster-that-was-reset\n")
    again = start_worker(local_runtime, "stale", web_port=port(74), data_dir=data)
    again.stop()
    assert "rebuilding them from the changelogs" in again.log.read_text()


def test_prod_without_its_own_audit_key_exits_naming_it(
    local_runtime: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left unset, a secret is not refused as settings load (a connector holds none of
    privops' secrets), but the worker, which signs with it, refuses to start."""
    monkeypatch.delenv("PRIVOPS_AUDIT_KEY", raising=False)
    done = run_worker_briefly(
        {
            "PRIVOPS_ENV": "prod",
            "PRIVOPS_PSEUDONYM_KEY": "a-pseudonym-key-of-our-own",
            "PRIVOPS_DATA_DIR": str(tmp_path / "data"),
            "PRIVOPS_WEB_PORT": str(port(76)),
        }
    )
    assert_one_clear_line(done, "PRIVOPS_AUDIT_KEY", "PRIVOPS_ENV=prod")


def test_prod_with_a_development_secret_exits_naming_it(
    local_runtime: Settings, tmp_path: Path
) -> None:
    done = run_worker_briefly(
        {
            "PRIVOPS_ENV": "prod",
            "PRIVOPS_PSEUDONYM_KEY": DEV_SECRETS["pseudonym_key"],
            "PRIVOPS_AUDIT_KEY": "an-audit-key-of-our-own",
            "PRIVOPS_DATA_DIR": str(tmp_path / "data"),
            "PRIVOPS_WEB_PORT": str(port(75)),
        }
    )
    assert_one_clear_line(done, "PRIVOPS_PSEUDONYM_KEY", "PRIVOPS_ENV=prod")
    assert "PRIVOPS_AUDIT_KEY" not in done.stdout + done.stderr
