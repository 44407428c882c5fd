"""Signing keys on disk: each DPO's private key file and the signers file the worker trusts.

Where they live is settings: `signing_key_file` (the configured actor's key; another
actor's key is `<actor>.key` beside it) and `signers_file`, both under
$PRIVOPS_HOME/keys/ by default so the CLI and a worker on the same home meet there.
A private key file is PEM (PKCS#8), created with mode 0600 and never overwritten. The
signers file changes only under a lock and is replaced whole, so a worker re-reading it
never sees half a file and two CLIs creating keys at once both land.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from privops.adapters import metrics
from privops.adapters.settings import Settings
from privops.core.admission import is_principal_name
from privops.core.errors import ConfigError, PrivopsError
from privops.core.signing import SignerKey, Signers, SigningKey

log = logging.getLogger(__name__)

KEYS_DIR_MODE: Final = 0o700
KEY_FILE_MODE: Final = 0o600
SIGNERS_FILE_MODE: Final = 0o644
RESERVED_OWNER: Final = "privops"
"""The worker's principal; it and `privops-*` (its scheduler) are no DPO key's owner."""
FINGERPRINT_LENGTH: Final = 16
_FINGERPRINT_DOMAIN: Final = "privops signer set v1"


class KeyExists(ConfigError):
    """A key file is already there: keys are never overwritten."""


class UnknownKey(PrivopsError):
    """No key with that id in the signers file."""


def key_file(cfg: Settings, actor: str) -> Path:
    """The private key file `actor` signs with."""
    if actor == cfg.actor:
        return cfg.signing_key_file
    return cfg.signing_key_file.parent / f"{actor}.key"


def check_owner(owner: str) -> str:
    """A key's owner is what the audit names for ten years: a plain principal name."""
    if not is_principal_name(owner):
        # Not repeated: what is no principal name is often an email address (review,
        # session 43: it went to stderr and the logs that keep it).
        raise ConfigError(
            f"the owner given ({len(owner)} characters) is not a principal name: use "
            "letters, digits, '.', '_' or '-' (not an email address or a person's name)"
        )
    if owner == RESERVED_OWNER or owner.startswith(f"{RESERVED_OWNER}-"):
        raise ConfigError(f"'{owner}' is reserved for privops' own principals")
    return owner


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=KEYS_DIR_MODE)
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_signers(path: Path) -> Signers:
    """The signers file; none yet is an empty registry."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Signers()
    except OSError as exc:
        raise ConfigError(f"cannot read the signers file {path}: {exc.strerror}") from exc
    return Signers.parse(raw, f"the signers file {path}")


def signers_fingerprint(signers: Signers) -> str:
    """What a signers file trusts, as 16 hex: the same wherever the same DPOs' commands
    are taken, so workers that differ show it (alert PrivopsSignersDiffer).

    A SHA-256 over the sorted (key id, public key, owner, revoked) of every key: not the
    file's bytes, order, layout or times (a key created or revoked at another moment on
    another host is trusted alike; a revocation counts whatever its time). The owner is
    in it because a command is taken only from its actor's key. A field added to
    SignerKey that changes what is trusted belongs here too."""
    listing = sorted(
        (kid, entry.public_key, entry.owner, entry.revoked_at is not None)
        for kid, entry in signers.root.items()
    )
    canonical = json.dumps([_FINGERPRINT_DOMAIN, listing], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def _write_signers(path: Path, signers: Signers) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".signers-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(signers.dump())
        os.chmod(tmp, SIGNERS_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_new_key(path: Path, key: SigningKey) -> None:
    """Write the key where none is: created 0600 from the start, never over another."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError as exc:
        raise KeyExists(f"{path} already exists; keys are never overwritten") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(key.to_pem())


def _generate(cfg: Settings, owner: str, path: Path, now: datetime) -> SigningKey:
    """Create the key file and trust its public half; the caller holds the lock."""
    key = SigningKey.generate()
    _write_new_key(path, key)
    signers = read_signers(cfg.signers_file)
    _write_signers(cfg.signers_file, signers.with_key(key.entry(owner, now)))
    return key


def generate(cfg: Settings, owner: str, path: Path | None = None) -> tuple[SigningKey, Path]:
    """A new key for `owner` in `path` (default: its key file), trusted in the signers file."""
    check_owner(owner)
    path = path or key_file(cfg, owner)
    with _locked(cfg.signers_file.parent):
        path.parent.mkdir(parents=True, exist_ok=True, mode=KEYS_DIR_MODE)
        if path.exists():
            raise KeyExists(f"{path} already exists; keys are never overwritten")
        return _generate(cfg, owner, path, datetime.now(UTC)), path


def revoke(cfg: Settings, kid: str) -> SignerKey:
    """Mark `kid` revoked in the signers file (idempotent); UnknownKey if it is not there."""
    with _locked(cfg.signers_file.parent):
        signers = read_signers(cfg.signers_file)
        if kid not in signers.root:
            raise UnknownKey(f"no key {kid} in {cfg.signers_file}")
        updated = signers.revoked(kid, datetime.now(UTC))
        if updated is not signers:
            _write_signers(cfg.signers_file, updated)
        return updated.root[kid]


def load_key(path: Path) -> SigningKey:
    """A private key file, refused if others may read it (as ssh refuses such keys)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(f"the signing key {path} is readable by others: chmod 600 it")
    return SigningKey.from_pem(pem, f"the signing key {path}")


def signing_key(
    cfg: Settings, actor: str, *, say: Callable[[str], None], create: bool | None = None
) -> SigningKey:
    """The key `actor`'s commands are signed with.

    In development (PRIVOPS_ENV=dev, or `create`) a missing key is created and trusted
    on the spot, telling `say`, so the demo and tests run with no set-up; anywhere else
    a missing key is a ConfigError saying how to make one.
    """
    check_owner(actor)
    path = key_file(cfg, actor)
    create = cfg.env == "dev" if create is None else create
    with _locked(cfg.signers_file.parent):
        if path.exists() or not create:
            if not path.exists():
                raise ConfigError(
                    f"no signing key for '{actor}' at {path}: run "
                    f"`privops keys generate --owner {actor}` (or set PRIVOPS_SIGNING_KEY_FILE)"
                )
            return load_key(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=KEYS_DIR_MODE)
        key = _generate(cfg, actor, path, datetime.now(UTC))
    say(
        f"created a development signing key for '{actor}' (key id {key.key_id}) at {path}; "
        f"its public key is trusted in {cfg.signers_file}"
    )
    return key


def unsafe_signers(path: Path, st: os.stat_result, directory: os.stat_result) -> str | None:
    """What makes the signers file ``path`` (``st``; its directory's: ``directory``) unfit
    to trust, and how to fix it; None if nothing does.

    Whoever can write the file, or replace it in its directory, chooses whose commands
    the worker takes: a group- or world-writable one, or one another user owns, is that
    user's say, not the DPO's (a private key that others can read is refused for the
    same reason: ``load_key``). Root may own either: only root could write them then.
    A world-writable directory with the sticky bit (/tmp, mounted secrets) lets no one
    else replace a file they do not own, so there only the file's owner counts."""
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        return (
            f"the signers file {path} is owned by uid {st.st_uid}, not by the worker's user "
            f"(uid {me}) or root: `chown` it to the worker's user"
        )
    if stat.S_IMODE(st.st_mode) & 0o022:
        return (
            f"the signers file {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):o}): `chmod go-w {path}`"
        )
    parent = path.parent
    if directory.st_uid not in (me, 0):
        return (
            f"the signers file's directory {parent} is owned by uid {directory.st_uid}, not "
            f"by the worker's user (uid {me}) or root: move the file to a directory of its own"
        )
    if stat.S_IMODE(directory.st_mode) & 0o022 and not directory.st_mode & stat.S_ISVTX:
        return (
            f"the signers file's directory {parent} is writable by group or others "
            f"(mode {stat.S_IMODE(directory.st_mode):o}): `chmod go-w {parent}`"
        )
    return None


class SignersWatch:
    """The signers file as the worker trusts it, re-read whenever the file changes.

    `refresh()` looks at the file's and its directory's identity (inode, size, mtime,
    owner, mode) on every call, which costs two stats; the workflow agent calls it at each
    chunk's first command and then every 50 ms, so a key created or revoked is in force
    within that, and so is a `chmod`; the health check calls it every 5 s too, so what
    it shows follows the file with no command coming. An unreadable, invalid or
    unsafe (``unsafe_signers``) file trusts no file key at all (fail closed: a
    revocation must never be missed, nor a key slipped in), and says so in the log once
    per change. `builtin` keys (the worker's own) are trusted whatever the file says.

    `fingerprint` is the file's (``signers_fingerprint``; the builtin keys are not in it),
    or ``metrics.SIGNERS_MISSING`` / ``metrics.SIGNERS_FAIL_CLOSED``; it is worked out,
    and ``privops_signers_info`` set, only when the file changed, off the per-command path.
    """

    def __init__(self, path: Path, builtin: tuple[SignerKey, ...] = ()) -> None:
        self.path = path
        self.builtin = builtin
        self._seen: tuple[int, ...] | None = None  # None: never looked
        self._signers = self._with_builtin(Signers())
        self.fingerprint = metrics.SIGNERS_MISSING
        self.refresh()

    def _with_builtin(self, signers: Signers) -> Signers:
        for entry in self.builtin:
            signers = signers.with_key(entry)
        return signers

    def refresh(self) -> Signers:
        stats: tuple[os.stat_result, os.stat_result] | None = None
        try:
            stats = (self.path.stat(), self.path.parent.stat())
        except FileNotFoundError:
            seen = _MISSING
        except OSError:
            seen = _UNREADABLE
        else:
            st, directory = stats
            seen = (
                *(st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid),
                *(directory.st_ino, directory.st_mode, directory.st_uid),
            )
        if seen == self._seen:
            return self._signers
        self._seen = seen
        try:
            unsafe = unsafe_signers(self.path, *stats) if stats is not None else None
            if unsafe is not None:
                raise ConfigError(unsafe)
            signers = read_signers(self.path)
        except ConfigError as exc:
            log.error("%s; every DPO command will be rejected until it is fixed", exc)
            signers, fingerprint = Signers(), metrics.SIGNERS_FAIL_CLOSED
        else:
            if seen == _MISSING:
                log.warning("no signers file at %s: no DPO command will be accepted", self.path)
                fingerprint = metrics.SIGNERS_MISSING
            else:
                fingerprint = signers_fingerprint(signers)
                log.info(
                    "trusting %d signing key(s) from %s (signer set %s)",
                    len(signers.root),
                    self.path,
                    fingerprint,
                )
        self._signers = self._with_builtin(signers)
        self.fingerprint = fingerprint
        metrics.set_signers_fingerprint(fingerprint)
        return self._signers


_MISSING: Final[tuple[int, ...]] = (0, 0, 0)
_UNREADABLE: Final[tuple[int, ...]] = (-1, -1, -1)
