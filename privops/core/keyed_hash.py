"""HMAC-SHA256 that keeps the GIL: the keyed hashes of the worker's hot path (audit
chain hashes, suppression keys, subject refs).

CPython's one-shot ``hmac.digest`` gives the GIL up for every call, however short the
message. The worker's Kafka consumer runs in a second thread, so each of those calls
could hand the GIL over and then wait to take it back: py-spy put ~10% of the event
loop thread's wall time on taking it back after ``hmac.digest`` (docs/benchmarks.md,
session 14). A keyed ``hmac.HMAC`` prepared once per key and copied per message keeps
the GIL for short messages (OpenSSL's HMAC, as before; CPython releases it only for
messages of 2 KiB or more), and is cheaper as well: the key is not re-padded each time.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Final

from privops.core.errors import ConfigError

# Keys come from configuration (the pseudonym and audit keys, current and replaced), so
# few: a handful per keyring, bounded anyway.
_KEYS_KEPT: Final = 64


@lru_cache(maxsize=_KEYS_KEPT)
def _prepared(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of ``message`` under ``key``: the same bytes as
    ``hmac.digest(key, message, "sha256")``. ConfigError for an empty key."""
    if not key:
        raise ConfigError("the HMAC key is empty")
    mac = _prepared(key).copy()
    mac.update(message)
    return mac.digest()
