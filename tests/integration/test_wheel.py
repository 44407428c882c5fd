"""The built wheel runs outside the source tree: package data, console script, worker.

The wheel is built from this checkout and installed non-editable into a fresh venv in a
temporary directory. Its dependencies come from the test venv's site-packages through a
path entry (a plain path line does not run that directory's .pth files, so the test
venv's editable install of this checkout stays invisible): what is imported as
``privops`` is the wheel's copy, which the test asserts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from privops.adapters.settings import Settings
from tests.conftest import REPO, port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
        check=True,
        cwd=root,
    )
    (wheel,) = dist.glob("privops-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
    )
    return venv


def run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "privops"), *args],
        cwd=cwd,
        # The defaults must come from the wheel's package data, not a setting.
        env={
            k: v
            for k, v in os.environ.items()
            if k not in ("PRIVOPS_DATAMAP", "PRIVOPS_SCHEMA_DIR")
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_wheel_is_what_runs(wheel_venv: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [
            str(wheel_venv / "bin" / "python"),
            "-c",
            "import privops, streams; print(privops.__file__, streams.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(REPO) not in where
    assert str(wheel_venv) in where
    # PEP 561: an integrator's mypy checks their connector against the SDK's types
    # (without it, "Class cannot subclass Connector (has type Any)": connector review).
    site = next((wheel_venv / "lib").glob("python3*/site-packages"))
    assert (site / "privops" / "py.typed").is_file()


def test_ropa_and_schema_check_from_package_data(wheel_venv: Path, tmp_path: Path) -> None:
    ropa = run(wheel_venv, tmp_path, "ropa", "--json")
    assert ropa.returncode == 0, ropa.stderr
    assert json.loads(ropa.stdout)["purposes"]
    check = run(wheel_venv, tmp_path, "schemas", "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_reference_systems_find_the_packaged_data_map(wheel_venv: Path, tmp_path: Path) -> None:
    """The simulated systems (``privops simulate``, compose's connectors, the demo) and
    any connector built on the SDK read the data map without PRIVOPS_DATAMAP: before,
    ``load_datamap()`` looked for deploy/ beside the installed package, where a wheel has
    none (review, session 33)."""
    probe = (
        "from pathlib import Path\n"
        "from privops.adapters.datamap_file import load_datamap, default_datamap_path\n"
        "from privops.connectors.reference.exports import export_place\n"
        "from privops.core.vocab import System\n"
        "print(default_datamap_path())\n"
        "print(sorted(load_datamap().systems))\n"
        "print(export_place(System.cctv, Path('x')).root)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PRIVOPS_DATAMAP",)}
    done = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    path, systems, root = done.stdout.splitlines()
    assert str(wheel_venv) in path
    assert "orders" in systems
    assert root == "https://exports.allled.example/dsar/cctv/"


def test_worker_starts_from_the_wheel(
    local_runtime: Settings, wheel_venv: Path, tmp_path: Path
) -> None:
    web = port(80)
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PRIVOPS_WEB_PORT": str(web),
        "PRIVOPS_DATA_DIR": str(tmp_path / "data"),
        "PRIVOPS_APP_ID": "privops-wheel",
        "PRIVOPS_CONSUMER_OFFSET_RESET": "latest",
    }
    proc = subprocess.Popen(
        [str(wheel_venv / "bin" / "privops"), "worker"],
        cwd=tmp_path,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None and not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/health", timeout=2) as resp:
                    healthy = resp.status == 200
            except OSError:
                time.sleep(0.5)
        assert healthy, log.read_text()[-4000:]
    finally:
        proc.terminate()
        proc.wait(30)
