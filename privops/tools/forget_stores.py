"""The local half of `privops subject forget-check`: the worker's RocksDB stores, and the
report both halves fill in (``privops.tools.forget_check`` reads the cluster).

Stores are read as the worker wrote them, through RocksDB, read-only. A running worker
holds its data dir's lock, and a store being written is a moving target, so the scan
refuses it (or, if told to, skips the stores and says so). While the scan reads, it holds
a shared lock on each data dir, so no worker starts under it.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from rocksdict import AccessType, Options, Rdict

from privops.core import forget_scan as fs
from privops.core.errors import RuntimeUnavailable

Progress = Callable[[str, int, int], None]
"""(what is being read, done, total; total 0 when unknown)."""

# Table names of streams/tables.py (not imported: that builds the Faust app).
IDENTITIES_TABLE: Final = "identities"
# Chain heads are keyed hashes by design, like the suppression list.
AUDIT_CHAINS_TABLE: Final = "audit-chains"
# An erased subject's consent state is kept on purpose: their suppression marker (no
# contact details) is what refuses a re-import's re-activation and any new data key.
CONSENT_TABLE: Final = "consent"
KEPT_TABLES: Final = frozenset({AUDIT_CHAINS_TABLE, CONSENT_TABLE})
FAUST_OFFSET_KEY: Final = b"__faust\0offset__"
WORKER_LOCK: Final = "worker.lock"  # streams.startup.lock_data_dir


class StoresLocked(RuntimeUnavailable):
    """A worker is running on the data dir: its stores change under the scan."""


@dataclass(frozen=True)
class Finding:
    place: str
    partition: int | None
    offset: int | None
    kind: str
    what: str
    where: str


@dataclass
class Report:
    """What the scan found and what it could not see: both go to the regulator."""

    subject_id: str
    principal: str
    findings: list[Finding] = field(default_factory=list)
    topics: int = 0
    records: int = 0
    stores: int = 0
    store_entries: int = 0
    shredded: int = 0
    warnings: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "findings"},
            "findings": [asdict(f) for f in self.findings],
            "clean": self.clean,
            "complete": not self.incomplete,
        }


@contextmanager
def held_stores(data_dir: Path) -> Iterator[list[Path]]:
    """Every RocksDB store under ``data_dir``, with each worker's data dir locked (shared)
    for the scan; ``StoresLocked`` if a worker holds one."""
    with ExitStack() as stack:
        for lock in sorted(data_dir.rglob(WORKER_LOCK)):
            try:
                handle = stack.enter_context(lock.open("r"))
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoresLocked(
                    f"a worker is running on {lock.parent} and holds its stores: stop it and "
                    "run forget-check again, or pass --skip-stores to scan the topics only "
                    "(the report then says the stores were not scanned)"
                ) from None
            except OSError as exc:
                raise StoresLocked(f"cannot lock {lock} to read its stores: {exc}") from exc
        yield sorted(p.parent for p in data_dir.rglob("CURRENT") if p.parent.name.endswith(".db"))


def _open(path: Path) -> Rdict:
    # raw_mode as Faust writes them; the WAL of a worker that stopped is replayed in memory.
    return Rdict(
        str(path),
        Options(raw_mode=True),
        access_type=AccessType.read_only(error_if_log_file_exist=False),
    )


def _table_of(store: Path) -> tuple[str, int | None]:
    table, _, partition = store.name.removesuffix(".db").rpartition("-")
    return (table, int(partition)) if table and partition.isdigit() else (store.stem, None)


def store_identities(stores: list[Path], subject: bytes, report: Report) -> list[bytes]:
    """The subject's identity records in the local ``identities`` stores."""
    found = []
    for store in stores:
        if _table_of(store)[0] != IDENTITIES_TABLE:
            continue
        try:
            db = _open(store)
        except Exception as exc:  # noqa: BLE001 - rocksdict raises bare Exception
            report.incomplete.append(f"store {store}: not readable ({exc})")
            continue
        try:
            value = db.get(subject)
        finally:
            db.close()
        if isinstance(value, bytes):
            found.append(value)
    return found


def scan_store(
    store: Path, name: str, matcher: fs.Matcher, report: Report, progress: Progress
) -> None:
    table, partition = _table_of(store)
    place = f"store {name}"
    try:
        db = _open(store)
    except Exception as exc:  # noqa: BLE001 - rocksdict raises bare Exception
        report.incomplete.append(f"{place}: not readable ({exc})")
        return
    subject = matcher.subject_id.encode()
    entries = table not in KEPT_TABLES
    seen = 0
    try:
        for key, value in db.items():
            if not isinstance(key, bytes) or key == FAUST_OFFSET_KEY:
                continue
            seen += 1
            hits, shredded = matcher.record(key, value)
            report.shredded += shredded
            report.findings.extend(
                Finding(place, partition, None, h.kind, h.what, f"{h.part} {h.at}") for h in hits
            )
            if entries and key == subject and value is not None:
                report.findings.append(
                    Finding(place, partition, None, fs.Kind.LIVE_ENTRY, "entry present", "key")
                )
            if seen % 10_000 == 0:
                progress(place, seen, 0)
    finally:
        db.close()
    progress(place, seen, seen)
    report.stores += 1
    report.store_entries += seen
