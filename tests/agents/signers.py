"""Signed commands for agent tests: a DPO key the workflow agent is made to trust.

The worker accepts only commands signed by a key of its signers file, so agent tests
sign theirs with `TEST_KEY` (owner `dpo`) and point the agent at a signers file of their
own with `trust`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

import agents.requests  # noqa: F401 - the agents (and their tables) are declared
from privops.adapters.signing_keys import SignersWatch
from privops.core import records as r
from privops.core.signing import SignerKey, Signers, SigningKey
from streams.context import collaborators

C = TypeVar("C", bound=r.Command)

OWNER = "dpo"
TEST_KEY = SigningKey.derive(b"agent tests only", "dpo test key")
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def sign(command: C, key: SigningKey = TEST_KEY) -> C:
    """``command`` signed for the deployment the agents run in (streams.context)."""
    return key.sign(command, deployment=collaborators().deployment)


def signers_file(path: Path, *entries: SignerKey) -> Path:
    """Write a signers file trusting `entries` (TEST_KEY's for `dpo` if none)."""
    signers = Signers()
    for entry in entries or (TEST_KEY.entry(OWNER, CREATED),):
        signers = signers.with_key(entry)
    path.write_bytes(signers.dump())
    path.chmod(0o644)  # whatever the umask: a group-writable signers file is not trusted
    return path


def trust(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Path:
    """Make the workflow agent trust TEST_KEY (and its own key) through a real signers file;
    returns the file, which a test may rewrite (the agent re-reads it on change)."""
    path = signers_file(directory / "signers.json")
    builtin = collaborators().signers.builtin
    monkeypatch.setattr(collaborators(), "signers", SignersWatch(path, builtin))
    return path
