"""Where a reference system writes an export, and the location it reports to privops.

privops passes an export to the subject only if its location lies below the answering
system's export root in the data map (``privops.core.exports``), so the reference
systems report their files there, as the export server at that root would serve them:

- an https root: the files are in ``<data dir>/exports/<system>/``, which that server
  would publish at the root (``<root><request id>.json``);
- a file:// root (a shared directory): the files are written in that directory;
- no root declared: ``file://`` locations of ``<data dir>/exports/<system>/``, which
  privops refuses like any export from a system without a root.

A request id is used in the file name as it is, never rewritten: an id that is not
path-safe raises :class:`UnsafeRequestId`, which the runner answers as a permanent failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from privops.adapters.datamap_file import default_datamap_path, load_datamap
from privops.core.datamap import DataMap
from privops.core.errors import PrivopsError
from privops.core.exports import below_root, path_safe
from privops.core.vocab import System


class UnsafeRequestId(PrivopsError):
    """The request id cannot name a file as it is; re-sending the task cannot change that."""


@dataclass(frozen=True)
class ExportPlace:
    """One system's export directory and the root it is published at."""

    root: str
    directory: Path

    def locate(self, request_id: str) -> tuple[Path, str]:
        """The file to write for a request and the location to report for it."""
        if not path_safe(request_id):
            raise UnsafeRequestId("the request id is not usable as a file name as it is")
        name = f"{request_id}.json"
        return self.directory / name, self.root + name


def export_place(system: System, data_dir: Path, datamap: DataMap | None = None) -> ExportPlace:
    """Where ``system`` puts exports under ``data_dir``, given its declared root."""
    roots = _roots(datamap) if datamap is not None else _default_roots(_datamap_key())
    root = roots.get(system)
    local = (data_dir / "exports" / system.value).resolve()
    if root is None:
        return ExportPlace(local.as_uri() + "/", local)
    parts = urlsplit(root)
    if parts.scheme.lower() == "file":
        return ExportPlace(root, Path(unquote(parts.path)))
    return ExportPlace(root, local)


def exported_file(data_dir: Path, location: str, datamap: DataMap | None = None) -> Path | None:
    """The local file behind a location a reference system reported (tests, the demo)."""
    for system in System:
        place = export_place(system, data_dir, datamap)
        below = below_root(place.root, location)
        if below is not None and len(below) == 1:
            return place.directory / below[0]
    return None


def _roots(datamap: DataMap) -> dict[System, str | None]:
    return {system: spec.export_root for system, spec in datamap.systems.items()}


def _datamap_key() -> tuple[Path, int]:
    path = default_datamap_path()
    try:
        return path, path.stat().st_mtime_ns
    except OSError:
        return path, -1  # load_datamap reports the missing file


@cache
def _default_roots(key: tuple[Path, int]) -> dict[System, str | None]:
    """The default data map's roots, read once per file version (a load takes ~0.1 s)."""
    return _roots(load_datamap(key[0]))
