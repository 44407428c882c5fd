"""The local runtime's SCRAM passwords: one file per runtime home, readable by its owner only.

`privops local up` generates a password per principal the first time it formats the
broker storage (the passwords go into the storage as SCRAM credentials), so no two
laptops share one and none is a published default. Clients of the local runtime read
them from here, in ``PRIVOPS_ENV=dev`` only: anywhere else a process brings its own
principal and password (``PRIVOPS_KAFKA_PRINCIPAL`` / ``PRIVOPS_KAFKA_PASSWORD``).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from privops.core.errors import ConfigError, RuntimeUnavailable

CREDENTIALS_FILE = "credentials.json"
MECHANISM = "SCRAM-SHA-512"
# 32 random bytes; URL-safe characters need no quoting in a JAAS line or --add-scram.
PASSWORD_BYTES = 32


def credentials_path(home: Path) -> Path:
    return home / CREDENTIALS_FILE


def ensure_credentials(path: Path, principals: Iterable[str]) -> dict[str, str]:
    """The passwords in ``path``, adding a fresh one for any principal without one."""
    passwords = read_credentials(path) if path.exists() else {}
    missing = [p for p in principals if p not in passwords]
    if missing:
        passwords.update({p: secrets.token_urlsafe(PASSWORD_BYTES) for p in missing})
        _write_private(path, {"mechanism": MECHANISM, "passwords": passwords})
    return passwords


def read_credentials(path: Path) -> dict[str, str]:
    """Every principal's password; refuses a file others could read."""
    try:
        mode = path.stat().st_mode
        data = json.loads(path.read_text())
        passwords = data["passwords"]
    except FileNotFoundError:
        # The runtime is not up (exit 3, as every command that needs it says), not a
        # setting to fix (review, session 35: `local credentials` said exit 2).
        raise RuntimeUnavailable(
            f"no Kafka credentials at {path}: start the local runtime with `privops local up` "
            "(it creates them), or set PRIVOPS_KAFKA_PRINCIPAL and PRIVOPS_KAFKA_PASSWORD"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"unreadable Kafka credentials file {path}: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} holds passwords but others may read it (mode {stat.S_IMODE(mode):o}); "
            f"chmod 600 {path}"
        )
    if not isinstance(passwords, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in passwords.items()
    ):
        raise ConfigError(f"{path}: 'passwords' must map each principal to its password")
    return dict(passwords)


def password(path: Path, principal: str) -> str:
    passwords = read_credentials(path)
    if principal not in passwords:
        known = ", ".join(sorted(passwords))
        raise ConfigError(f"no Kafka principal {principal!r} in {path} (there are: {known})")
    return passwords[principal]


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file only its owner can read (or ``mode``), never visible half-written or
    wider open: a new file renamed over ``path``, so a file or symlink there is replaced,
    never written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())  # never an empty key file after a power cut
        if mode != 0o600:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_private(path: Path, data: object) -> None:
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
