"""privops.core.hot_crypto: the same HMAC-SHA256 as the standard library, and random
bytes.

That they keep the GIL is a performance property, measured with `privops bench` and
py-spy (docs/benchmarks.md, session 14), not by a timed test: how long a thread waits
for the GIL depends on what else the machine runs, and a test timed on it failed under
xdist."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privops.core.errors import ConfigError
from privops.core.hot_crypto import hmac_sha256, random_bytes


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


@pytest.mark.parametrize("count", [0, 1, 12, 32, 4096])
def test_random_bytes_are_as_many_as_asked(count: int) -> None:
    assert len(random_bytes(count)) == count


def test_random_bytes_do_not_repeat() -> None:
    # 12-byte nonces: a repeat among 10,000 would mean a broken generator, not bad luck
    # (the chance is ~10^-21).
    drawn = {random_bytes(12) for _ in range(10_000)}
    assert len(drawn) == 10_000


def test_random_bytes_are_not_one_value_repeated() -> None:
    # All 256 byte values show up in 64 KiB of output (a stuck or constant source fails).
    assert len(set(random_bytes(65_536))) == 256
