"""The worker's HTTP API over TLS, on the real secured broker (privops.adapters.web_tls).

Two workers of one group, each with a certificate `privops local web-cert` style
(a throwaway CA, a certificate for 127.0.0.1): each answers for every subject, the
ones the other owns forwarded over HTTPS with the caller's credentials; plain HTTP on
their port gets no answer; the CLI and the connector SDK's key service work with
PRIVOPS_WEB_CA, and the CLI says to set it when it is missing.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from privops.adapters import kek as kekfile
from privops.adapters import web_tls
from privops.adapters.key_topic import subject_partition
from privops.adapters.settings import Settings
from tests.conftest import REPO, WorkerProcess, port, start_worker
from tests.integration.helpers import http_json, key_service, produce, wait_for
from tests.integration.test_scale_out import consent, group_env, partitions

pytestmark = pytest.mark.integration
CHECK = [sys.executable, "-m", "privops.cli.main", "consent", "check"]


def allowed(worker: WorkerProcess, subject_id: str) -> bool:
    status, body = http_json(
        f"{worker.url}/consent/{subject_id}?purpose=marketing&channel=sms", trust=worker.trust
    )
    return status == 200 and body["allowed"] is True


def cli_check(
    worker: WorkerProcess, subject_id: str, **env: str | None
) -> subprocess.CompletedProcess[str]:
    """`privops consent check` in the worker's environment, with ``env`` changed (None:
    removed)."""
    changed = {**worker.env, "COLUMNS": "200", **env}
    return subprocess.run(
        [*CHECK, subject_id, "--purpose", "marketing", "--channel", "sms"],
        capture_output=True,
        text=True,
        env={k: v for k, v in changed.items() if v is not None},
        cwd=REPO,
        timeout=60,
    )


def test_two_workers_serve_and_forward_over_tls(
    local_runtime: Settings, tmp_path: Path, uid: str
) -> None:
    made = web_tls.development_certificates(tmp_path / "tls", ["127.0.0.1", "localhost"])
    env = {
        **group_env(f"tls-{uid}"),
        "PRIVOPS_WEB_TLS_CERT": str(made.cert),
        "PRIVOPS_WEB_TLS_KEY": str(made.key),
        "PRIVOPS_WEB_CA": str(made.ca),
    }
    workers = [
        start_worker(local_runtime, f"tls{i}-{uid}", web_port=port(250 + i), extra_env=env)
        for i in range(2)
    ]
    n = local_runtime.topic_partitions
    # Three subjects on each partition, whichever worker gets it (twelve ids drawn at
    # random missed two partitions in about one run in a few hundred).
    candidates = (f"TLS-{uid}-{i}" for i in range(10_000))
    subjects: list[str] = []
    for candidate in candidates:
        if sum(subject_partition(s, n) == subject_partition(candidate, n) for s in subjects) < 3:
            subjects.append(candidate)
        if len(subjects) == 3 * n:
            break
    try:
        wait_for("both workers to own partitions", lambda: all(partitions(w) for w in workers))
        owned = [set(partitions(w)) for w in workers]
        assert not owned[0] & owned[1], owned
        # Each worker is asked about subjects only the other owns: forwarded over HTTPS.
        for mine, theirs in ((owned[0], owned[1]), (owned[1], owned[0])):
            assert {subject_partition(s, n) for s in subjects} & theirs, (mine, theirs)
        produce(local_runtime, [consent(s, 1, given=True) for s in subjects])
        wait_for(
            "every consent, asked of both workers",
            lambda: all(allowed(w, s) for w in workers for s in subjects),
        )

        # Plain HTTP on the TLS port gets no answer (a client's bytes are out by then:
        # clients refuse plain HTTP beyond loopback outside dev, test_web_tls.py).
        plain = f"http://127.0.0.1:{workers[0].web_port}/health"
        with pytest.raises(ConnectionError):
            urllib.request.urlopen(plain, timeout=5)
        # Nor does a client that does not trust the CA get an answer.
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            http_json(f"{workers[0].url}/health", trust=ssl.create_default_context())

        # The CLI reads PRIVOPS_WEB_TLS_CERT as "https" and trusts PRIVOPS_WEB_CA ...
        other = next(s for s in subjects if subject_partition(s, n) in owned[1])
        ok = cli_check(workers[0], other)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "ALLOWED" in ok.stdout
        # ... and without the CA it says what to set.
        refused = cli_check(workers[0], other, PRIVOPS_WEB_CA=str(tmp_path / "none.pem"))
        assert refused.returncode != 0
        said = " ".join((refused.stdout + refused.stderr).split())
        assert "PRIVOPS_WEB_CA" in said, said
        untrusted = cli_check(workers[0], other, PRIVOPS_WEB_CA=None)
        said = " ".join((untrusted.stdout + untrusted.stderr).split())
        assert untrusted.returncode == 3, said
        assert "does not trust" in said
        assert "set PRIVOPS_WEB_CA" in said

        # A system's key service over HTTPS, from either worker.
        trusted = Settings(web_ca=made.ca, home=local_runtime.home)
        kek = kekfile.provider(local_runtime.kek_file, "dev", print)
        keys = [
            key_service(w.url, kek, verify=web_tls.client_context(trusted)).current_key(
                other, "main"
            )
            for w in workers
        ]
        assert keys[0].key_id == keys[1].key_id
    finally:
        for worker in workers:
            worker.stop()
