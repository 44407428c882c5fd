"""The key-encryption key (KEK): versioned, kept in a file only its owner may read.

Every data key on ``privacy.subject-keys`` is wrapped by one KEK version; the newest
wraps, every version kept in the file unwraps. Rotation adds a version and re-wraps the
records (``stale``, then ``subject_keys.rewrap``); once every record is under the new
version the old one is retired from the file, and any copy of a wrapped key still
sitting in an uncompacted segment or a backup no longer opens.

``KekProvider`` is the interface a KMS implementation would also meet (there the KEK
never leaves the KMS and each unwrap is authorised and logged per principal); the
file is the local implementation. The file is JSON, created 0600 in a 0700 directory,
never overwritten in place, and refused when group or others may read it (as ssh
refuses such keys). A development KEK is created on the spot only under
``PRIVOPS_ENV=dev`` and is marked so: any other environment refuses it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from privops.core.errors import ConfigError
from privops.core.fieldcrypt import KEY_BYTES, DataKey
from privops.core.subject_keys import Kek, SubjectKey, unwrap

FORMAT: Final = "privops-kek/1"
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700


class UnknownKekVersion(ConfigError):
    """A wrapped key names a KEK version the file no longer (or never) had."""


class KekExists(ConfigError):
    """A KEK file is already there: it is rotated, never replaced."""


class KekProvider(Protocol):
    def current(self) -> Kek:
        """The version new data keys are wrapped with."""
        ...

    def version(self, version: int) -> Kek:
        """Any version still kept, for unwrapping; ``UnknownKekVersion`` otherwise."""
        ...


# --- the file -------------------------------------------------------------------------------


class _Version(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    key: str
    created_at: AwareDatetime


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    format: str = Field(pattern=f"^{FORMAT}$")
    dev: bool
    current: int = Field(ge=1)
    versions: dict[int, _Version]


@dataclass(frozen=True)
class KekFile:
    """The versions in one KEK file, as read (a ``KekProvider``)."""

    path: Path
    dev: bool
    current_version: int
    keys: dict[int, Kek] = field(repr=False)
    created: dict[int, datetime] = field(repr=False)

    def current(self) -> Kek:
        return self.keys[self.current_version]

    def version(self, version: int) -> Kek:
        try:
            return self.keys[version]
        except KeyError:
            raise UnknownKekVersion(
                f"KEK version {version} is not in {self.path} (kept: {sorted(self.keys)})"
            ) from None

    def unwrapper(self) -> Callable[[SubjectKey], DataKey]:
        """What a ``KeyRing`` unwraps its records with."""
        return lambda record: unwrap(record, self.version(record.kek_version))

    def _doc(self) -> _Doc:
        versions = {
            n: _Version(key=base64.b64encode(k.secret).decode(), created_at=self.created[n])
            for n, k in sorted(self.keys.items())
        }
        return _Doc(format=FORMAT, dev=self.dev, current=self.current_version, versions=versions)


def _parse(path: Path, raw: bytes) -> KekFile:
    try:
        doc = _Doc.model_validate_json(raw)
        keys = {n: Kek(n, base64.b64decode(v.key, validate=True)) for n, v in doc.versions.items()}
    except (ValidationError, ValueError) as exc:
        # Never echo the content: it is the key.
        raise ConfigError(f"{path} is not a privops KEK file ({type(exc).__name__})") from None
    if doc.current not in keys:
        raise ConfigError(f"{path}: the current KEK version {doc.current} is not in the file")
    created = {n: v.created_at for n, v in doc.versions.items()}
    return KekFile(path, doc.dev, doc.current, keys, created)


def load(path: Path) -> KekFile:
    """The KEK file, refused if anyone but its owner may read or write it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read the KEK file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(f"the KEK file {path} is open to others (mode {mode:o}): chmod 600 it")
    return _parse(path, raw)


def _dump(kek: KekFile) -> bytes:
    return json.dumps(kek._doc().model_dump(mode="json"), indent=2).encode() + b"\n"


def _write_beside(kek: KekFile, put: Callable[[str, Path], None]) -> None:
    """Write the whole file beside it, then ``put`` it in place: readers never see half."""
    fd, tmp = tempfile.mkstemp(prefix=".kek-", dir=kek.path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(_dump(kek))
            out.flush()
            os.fsync(out.fileno())
        put(tmp, kek.path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _replace(kek: KekFile) -> None:
    _write_beside(kek, os.replace)


def _create_new(kek: KekFile) -> None:
    """A hard link fails where the file exists: created whole, never over another."""
    try:
        _write_beside(kek, os.link)
    except FileExistsError as exc:
        raise KekExists(f"{kek.path} already exists; rotate it instead") from exc


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One writer of ``path`` at a time, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    with (path.parent / f".{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fresh_version(number: int, now: datetime) -> tuple[Kek, datetime]:
    return Kek(number, os.urandom(KEY_BYTES)), now.astimezone(UTC)


def create(path: Path, now: datetime, *, dev: bool = False) -> KekFile:
    """A new KEK file with version 1, created 0600 where none is."""
    kek, created = _fresh_version(1, now)
    made = KekFile(path, dev, 1, {1: kek}, {1: created})
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _create_new(made)
    return made


def rotate(path: Path, now: datetime) -> KekFile:
    """Add a version and make it current; the older ones still unwrap."""
    with _exclusive(path):
        old = load(path)
        number = max(old.keys) + 1
        kek, created = _fresh_version(number, now)
        new = KekFile(
            path, old.dev, number, {**old.keys, number: kek}, {**old.created, number: created}
        )
        _replace(new)
    return new


def retire(path: Path, version: int) -> KekFile:
    """Drop a version once no record is wrapped under it (check with ``stale`` first)."""
    with _exclusive(path):
        old = load(path)
        if version == old.current_version:
            raise ConfigError(f"KEK version {version} is current: rotate before retiring it")
        old.version(version)
        keys = {n: k for n, k in old.keys.items() if n != version}
        created = {n: c for n, c in old.created.items() if n != version}
        new = KekFile(path, old.dev, old.current_version, keys, created)
        _replace(new)
    return new


def provider(path: Path, env: str, say: Callable[[str], None]) -> KekFile:
    """The KEK the worker and the SDK use (settings: ``kek_file``, ``env``).

    Under ``PRIVOPS_ENV=dev`` a missing file is created and marked as a development
    KEK (telling ``say``); anywhere else a missing file, or a development one, is a
    ConfigError: data wrapped under a key nobody set up and backed up is data lost.
    """
    try:
        kek = load(path)
    except FileNotFoundError:
        if env != "dev":
            raise ConfigError(
                f"no KEK file at {path} (PRIVOPS_KEK_FILE): privops' workers share one, "
                "made once with `privops keys kek create` and backed up; a business "
                "system's connector takes a copy of that same file, since a KEK of its own "
                "unwraps none of privops' keys"
            ) from None
        try:
            kek = create(path, datetime.now(UTC), dev=True)
        except KekExists:  # another process of this home created it meanwhile
            return load(path)
        say(f"created a development KEK at {path} (PRIVOPS_ENV=dev only)")
        return kek
    if kek.dev and env != "dev":
        raise ConfigError(f"{path} is a development KEK; PRIVOPS_ENV={env} needs a KEK of your own")
    return kek


def stale(records: Iterable[SubjectKey], kek: KekProvider) -> list[SubjectKey]:
    """The records to re-wrap after a rotation: those not under the current version."""
    current = kek.current().version
    return [r for r in records if r.kek_version != current]


class KekWatch:
    """The KEK file as a long-running process uses it, re-read when it changes.

    ``privops keys kek rotate`` rewrites the file while workers run: from then on new
    keys must be wrapped under the new version, and records re-wrapped under it must
    open. ``current()`` looks at the file's identity (one stat) before wrapping;
    ``version()`` re-reads the file only for a version it does not know. A file that
    became unreadable, or a development KEK outside dev, keeps the KEK last read and
    logs nothing here: the caller's next start refuses it, and running on the last good
    KEK loses no data.
    """

    def __init__(self, path: Path, env: str, say: Callable[[str], None]) -> None:
        self.path = path
        self.env = env
        self._kek = provider(path, env, say)
        self._seen = _identity(path)

    @property
    def file(self) -> KekFile:
        return self._kek

    def refresh(self) -> KekFile:
        seen = _identity(self.path)
        if seen != self._seen:
            self._seen = seen
            try:
                fresh = load(self.path)
            except (OSError, ConfigError):
                return self._kek
            if not fresh.dev or self.env == "dev":
                self._kek = fresh
        return self._kek

    def current(self) -> Kek:
        return self.refresh().current()

    def version(self, version: int) -> Kek:
        if version not in self._kek.keys:
            return self.refresh().version(version)
        return self._kek.keys[version]

    def unwrapper(self) -> Callable[[SubjectKey], DataKey]:
        return lambda record: unwrap(record, self.version(record.kek_version))


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
