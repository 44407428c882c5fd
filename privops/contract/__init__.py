"""Where the files privops reads at run time are: the Avro contract and the deploy assets.

The repository keeps them at the top (``schemas/``, ``deploy/``), where other teams look
for them; the wheel carries the same directories as the packages
``privops.contract.schemas`` and ``privops.contract.deploy`` (``setup.py`` maps them), so
an installed privops finds them without a source tree. Settings can point elsewhere
(``PRIVOPS_SCHEMA_DIR``, ``PRIVOPS_DATAMAP``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# A source checkout (also an editable install, whose path hook knows only the checkout)
# has the directories beside the package.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _data_dir(top: str) -> Path:
    if (_SOURCE_ROOT / top).is_dir() and (_SOURCE_ROOT / "pyproject.toml").is_file():
        return _SOURCE_ROOT / top
    # The data directories have no __init__.py; resolve them under this regular package.
    return Path(str(files(__name__))) / top


def schema_dir() -> Path:
    """The committed Avro schemas (``schemas/<namespace>/<Record>.v<N>.avsc``)."""
    return _data_dir("schemas")


def deploy_dir() -> Path:
    """The deploy assets: data map, local runtime config, Prometheus and Grafana files."""
    return _data_dir("deploy")


def default_datamap() -> Path:
    return deploy_dir() / "datamap.yaml"
