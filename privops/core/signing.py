"""Who issued a DPO command, proven by an Ed25519 signature (DESIGN.md section 8).

Kafka's ACLs say that some DPO principal wrote to privacy.commands; the signature says
which person's key did, and that nothing in the command changed on the way. The audit
names the key's owner, so a free-text `actor` can never put words in someone else's
mouth. Everything here is pure (bytes in, bytes out); the key files and the signers file
are privops.adapters.signing_keys'.

A signature is "<key id>:<base64 signature>" over `canonical_bytes(command, deployment)`.
The key id is a fingerprint of the public key, so the signers file cannot silently map an
id to a different key. The deployment is the id of the Kafka cluster the command is sent
to (the CLI asks the broker; the worker learns it at start-up): a command signed for one
cluster (a staging one, another group company's privops under the same DPO's key) does
not verify at another, where its subject id may name someone else. The worker signs its
own follow-up erasures for no cluster (``deployment=None``): any worker takes them, and
acts on one only as the follow-up its request issued (``workflow.issued_followup``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Final, Self, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel, model_validator

from privops.core.errors import ConfigError, PrivopsError
from privops.core.records import Command

C = TypeVar("C", bound=Command)

SIGNATURE_FIELD: Final = "signature"
KEY_ID_LENGTH: Final = 16
RAW_KEY_LENGTH: Final = 32
SIGNATURE_LENGTH: Final = 64
SEPARATOR: Final = ":"
DEPLOYMENT_FIELD: Final = "@deployment"


class SignatureProblem(StrEnum):
    """Why a command's signature proves nothing: the rejection codes, as the worker answers."""

    unsigned = "unsigned"
    unknown_signer = "unknown_signer"
    revoked_key = "revoked_key"
    bad_signature = "bad_signature"
    # Signed for no deployment (a CLI older than the deployment binding).
    unbound_signature = "unbound_signature"


class SignatureInvalid(PrivopsError):
    def __init__(self, problem: SignatureProblem, message: str) -> None:
        super().__init__(f"{problem.value}: {message}")
        self.problem = problem
        self.message = message


def canonical_bytes(command: Command, deployment: str | None = None) -> bytes:
    """The bytes a signature covers: the command's type, every field but the signature,
    and the deployment it is signed for (None: none, as before the binding).

    The type is included because several commands have the same fields (a signed
    RequestCancelled must not pass as a RequestRefused). Fields at their default are left
    out and times are UTC, so a command signed by one schema version verifies after an
    Avro round trip through another (a field added with a default changes nothing).
    """
    data = command.model_dump(mode="json", exclude={SIGNATURE_FIELD}, exclude_defaults=True)
    for name, value in command:
        if isinstance(value, datetime) and name in data:
            data[name] = _utc(value).isoformat()
    data["@type"] = command.fullname()
    if deployment is not None:
        data[DEPLOYMENT_FIELD] = deployment
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a signed command's times must be timezone-aware")
    return value.astimezone(UTC)


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:KEY_ID_LENGTH]


def _b64decode(text: str, length: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not base64") from exc
    if len(raw) != length:
        raise ValueError(f"{what} must be {length} bytes, not {len(raw)}")
    return raw


# --- the signer registry (what the worker trusts) ------------------------------------------


class SignerKey(BaseModel):
    """One trusted public key: whose it is, and whether it still speaks for them."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    owner: str = Field(min_length=1)
    public_key: str
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _raw_ed25519(self) -> Self:
        _b64decode(self.public_key, RAW_KEY_LENGTH, "public_key")
        return self

    @property
    def key_id(self) -> str:
        return key_id(base64.b64decode(self.public_key))

    def verifier(self) -> Ed25519PublicKey:
        return _public_key(self.public_key)


@lru_cache(maxsize=256)
def _public_key(encoded: str) -> Ed25519PublicKey:
    """A trusted key parsed once (every command is checked against its signer's key)."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded))


class Signers(RootModel[dict[str, SignerKey]]):
    """The signers file: key id -> SignerKey. Each id must be its key's fingerprint."""

    root: dict[str, SignerKey] = {}

    @model_validator(mode="after")
    def _ids_are_fingerprints(self) -> Self:
        for kid, entry in self.root.items():
            if kid != entry.key_id:
                raise ValueError(f"key id {kid} is not the fingerprint of its public key")
        return self

    @classmethod
    def parse(cls, raw: bytes, source: str) -> Signers:
        """The signers file's content, or ConfigError naming `source` and what is wrong."""
        try:
            return cls.model_validate_json(raw or b"{}")
        except ValueError as exc:
            raise ConfigError(f"{source} is not a valid signers file: {exc}") from exc

    def dump(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()

    def with_key(self, entry: SignerKey) -> Signers:
        return Signers({**self.root, entry.key_id: entry})

    def revoked(self, kid: str, at: datetime) -> Signers:
        """The registry with `kid` revoked at `at` (kept as it was if already revoked)."""
        entry = self.root[kid]
        if entry.revoked_at is not None:
            return self
        return Signers({**self.root, kid: entry.model_copy(update={"revoked_at": _utc(at)})})

    def verify(self, command: Command, deployment: str, *, unbound_ok: bool = False) -> SignerKey:
        """The key that signed `command` for `deployment` (the Kafka cluster's id), or
        SignatureInvalid saying why it proves nothing. ``unbound_ok``: a signature for no
        deployment is taken too (the worker's own follow-ups, which it signs for none).

        A revoked key is refused whatever the command's issued_at: the signer sets that,
        so whoever holds a stolen key could backdate it.
        """
        kid, signature = parse_signature(command.signature)
        entry = self.root.get(kid)
        if entry is None:
            raise SignatureInvalid(SignatureProblem.unknown_signer, f"no trusted key {kid}")
        if entry.revoked_at is not None:
            raise SignatureInvalid(
                SignatureProblem.revoked_key,
                f"key {kid} was revoked at {entry.revoked_at.isoformat()}",
            )
        verifier = entry.verifier()
        if _verifies(verifier, signature, command, deployment):
            return entry
        if _verifies(verifier, signature, command, None):
            if unbound_ok:
                return entry
            raise SignatureInvalid(
                SignatureProblem.unbound_signature,
                f"key {kid} signed the command for no deployment (a privops CLI older than "
                "this worker): sign it again with this version's CLI, which signs for the "
                "Kafka cluster it sends to",
            )
        raise SignatureInvalid(
            SignatureProblem.bad_signature,
            f"the signature of key {kid} does not match the command as signed for this "
            f"deployment (Kafka cluster {deployment}): it was changed on the way, or "
            "signed for another cluster",
        )


def _verifies(
    verifier: Ed25519PublicKey, signature: bytes, command: Command, deployment: str | None
) -> bool:
    try:
        verifier.verify(signature, canonical_bytes(command, deployment))
    except (InvalidSignature, ValueError):
        return False
    return True


def parse_signature(signature: str | None) -> tuple[str, bytes]:
    """(key id, signature bytes) of a signature field; SignatureInvalid if unusable."""
    if not signature:
        raise SignatureInvalid(SignatureProblem.unsigned, "the command carries no signature")
    kid, sep, encoded = signature.partition(SEPARATOR)
    if not sep or len(kid) != KEY_ID_LENGTH or not all(c in "0123456789abcdef" for c in kid):
        raise SignatureInvalid(
            SignatureProblem.bad_signature, "the signature is not '<key id>:<base64>'"
        )
    try:
        return kid, _b64decode(encoded, SIGNATURE_LENGTH, "the signature")
    except ValueError as exc:
        raise SignatureInvalid(SignatureProblem.bad_signature, str(exc)) from exc


# --- the signing side --------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A private key that signs commands (the CLI's, or the worker's own follow-ups)."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def derive(cls, secret: bytes, purpose: str) -> SigningKey:
        """A key derived from a secret (HKDF-SHA256), the same wherever the secret is held.

        The worker signs the commands it issues itself (follow-up erasures) with a key
        derived from the audit key: every worker of the group has it, nobody else does,
        and no further secret has to be configured.
        """
        seed = HKDF(
            algorithm=hashes.SHA256(), length=RAW_KEY_LENGTH, salt=None, info=purpose.encode()
        ).derive(secret)
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, pem: bytes, source: str) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source} is not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{source} is not an Ed25519 private key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> str:
        return key_id(self.public_raw)

    def entry(self, owner: str, created_at: datetime) -> SignerKey:
        """What the signers file holds for this key."""
        return SignerKey(
            owner=owner,
            public_key=base64.b64encode(self.public_raw).decode(),
            created_at=_utc(created_at),
        )

    def sign(self, command: C, *, deployment: str | None) -> C:
        """`command` signed for `deployment` (the id of the Kafka cluster it goes to; None:
        for none, as the worker signs its own follow-ups), its signature field set (any
        previous one replaced)."""
        if deployment == "":
            raise ValueError("no Kafka cluster id to sign the command for")
        signature = self.private.sign(canonical_bytes(command, deployment))
        text = f"{self.key_id}{SEPARATOR}{base64.b64encode(signature).decode()}"
        return command.model_copy(update={SIGNATURE_FIELD: text})
