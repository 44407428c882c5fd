"""HMAC-SHA256 and random bytes for the worker's hot path, without giving the GIL up.

The worker's Kafka consumer runs in a second thread. A C call that gives the GIL up lets
that thread take it, and the event loop then waits to have it back: py-spy put ~11% of
the event loop thread's wall time on taking the GIL back after two such calls, made for
almost every event (docs/benchmarks.md, session 14):

- CPython's one-shot ``hmac.digest`` gives the GIL up on every call, however short the
  message (audit chain hashes, suppression keys, subject refs). A keyed ``hmac.HMAC``
  prepared once per key and copied per message keeps it for messages under 2 KiB, and
  is cheaper as well (the key is not padded again each time). Same OpenSSL HMAC.
- ``os.urandom`` gives it up around the ``getrandom`` system call (the nonce of every
  sealed value, every new data key). ``ssl.RAND_bytes`` draws from OpenSSL's DRBG (a
  CSPRNG seeded from the operating system, and reseeded after a fork) in process.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
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


def random_bytes(count: int) -> bytes:
    """``count`` cryptographically strong random bytes (keys, nonces)."""
    return ssl.RAND_bytes(count)
