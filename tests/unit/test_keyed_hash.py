"""privops.core.keyed_hash: the same HMAC-SHA256 as the standard library.

That it keeps the GIL is a performance property, measured with `privops bench` and
py-spy (docs/benchmarks.md, session 14), not by a timed test: how long a thread waits
for the GIL depends on what else the machine runs, and a test timed on it failed under
xdist."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privops.core.errors import ConfigError
from privops.core.keyed_hash import hmac_sha256


@given(key=st.binary(min_size=1, max_size=200), message=st.binary(max_size=5000))
def test_same_bytes_as_the_standard_library(key: bytes, message: bytes) -> None:
    # Keys longer than SHA-256's block (64 bytes) are hashed first, messages past 2 KiB
    # take the other branch of CPython's update: both are covered by the sizes above.
    assert hmac_sha256(key, message) == hmac.digest(key, message, "sha256")


def test_one_key_prepared_twice_gives_independent_digests() -> None:
    key = b"k" * 32
    first = hmac_sha256(key, b"first")
    assert hmac_sha256(key, b"second") != first
    assert hmac_sha256(key, b"first") == first  # nothing of "second" was left behind


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty"):
        hmac_sha256(b"", b"message")
