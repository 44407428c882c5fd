"""The data map read from its file: ``PRIVOPS_DATAMAP``, else the copy the package carries
(``privops.contract``: the repository's ``deploy/datamap.yaml`` in a checkout, package data
in an installed wheel). The parsing and every rule are pure (``privops.core.datamap``);
this is the file and the environment around them."""

from __future__ import annotations

import os
from pathlib import Path

from privops.contract import default_datamap
from privops.core.datamap import DataMap, parse_datamap
from privops.core.errors import ConfigError

DATAMAP_ENV = "PRIVOPS_DATAMAP"


def default_datamap_path() -> Path:
    """The file ``PRIVOPS_DATAMAP`` names, else the data map the package carries."""
    override = os.environ.get(DATAMAP_ENV)
    if override:
        return Path(override)
    return default_datamap()


def load_datamap(path: Path | str | None = None) -> DataMap:
    """Read and validate the data map; every problem becomes a ConfigError naming path and line."""
    path = Path(path) if path is not None else default_datamap_path()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"data map {path}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # a file saved as Windows-1252 (a traceback before)
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"data map {path}, line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None
    return parse_datamap(text, source=str(path))
