"""Throwaway certificates for development and tests: a CA made on the spot and one
server certificate it signs (the worker's HTTPS API: ``privops local web-cert``; the
local runtime's SASL_SSL listener). Production certificates come from the company's
own PKI."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from privops.adapters.credentials import write_private
from privops.core.errors import ConfigError


@dataclass(frozen=True)
class Certificates:
    """Where ``development_certificates`` wrote: the CA the clients trust, and the
    server's certificate and private key."""

    ca: Path
    cert: Path
    key: Path


def files(directory: Path, prefix: str) -> Certificates:
    """Where ``development_certificates`` writes a set named ``prefix``."""
    return Certificates(
        directory / f"{prefix}-ca.pem", directory / f"{prefix}.pem", directory / f"{prefix}-key.pem"
    )


def usable(
    directory: Path, prefix: str, hosts: Sequence[str], *, margin: timedelta = timedelta(days=1)
) -> Certificates | None:
    """The set named ``prefix`` in ``directory`` if it is whole and still good: the key
    is the certificate's, the CA signed it, it names every one of ``hosts`` and lasts
    ``margin`` more; else None (make a new one)."""
    found = files(directory, prefix)
    try:
        ca = x509.load_pem_x509_certificate(found.ca.read_bytes())
        cert = x509.load_pem_x509_certificate(found.cert.read_bytes())
        key = serialization.load_pem_private_key(found.key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (
        OSError,
        ValueError,
        TypeError,
        x509.ExtensionNotFound,
        InvalidSignature,
        UnsupportedAlgorithm,
    ):
        return None
    if key.public_key() != cert.public_key():
        return None
    now = datetime.now(UTC)
    if max(ca.not_valid_before_utc, cert.not_valid_before_utc) > now:
        return None
    if min(ca.not_valid_after_utc, cert.not_valid_after_utc) < now + margin:
        return None
    return found if all(_san(h) in names for h in hosts) else None


def development_certificates(
    directory: Path,
    hosts: Sequence[str],
    *,
    prefix: str,
    days: int = 365,
    now: datetime | None = None,
) -> Certificates:
    """A new throwaway CA and a server certificate it signed for ``hosts`` (names or IP
    addresses), written to ``directory`` as ``<prefix>-ca.pem``, ``<prefix>.pem`` and
    ``<prefix>-key.pem`` (the key mode 0600). The CA's own private key is never
    written: it cannot sign anything else."""
    if not hosts:
        raise ConfigError("a certificate needs at least one host name or address")
    names = [_san(h) for h in hosts]  # a ConfigError for one that is neither
    now = now or datetime.now(UTC)
    valid = (now - timedelta(minutes=5), now + timedelta(days=days))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"privops development {prefix} CA")]
    )
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), valid)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    # Clients check the names in the subject alternative names, not the common name.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"privops {prefix}")])
    cert = (
        _builder(subject, ca_name, key.public_key(), valid)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    out = files(directory, prefix)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(out.key, private.decode())
    write_private(out.cert, cert.public_bytes(serialization.Encoding.PEM).decode(), 0o644)
    write_private(out.ca, ca.public_bytes(serialization.Encoding.PEM).decode(), 0o644)
    return out


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    valid: tuple[datetime, datetime],
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def _san(host: str) -> x509.GeneralName:
    """A host as a certificate names it: an IP address, or a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _DNS_NAME.fullmatch(host):
        raise ConfigError(
            f"--host {host!r}: not a host name or an IP address (letters, digits, hyphens "
            "and dots; e.g. privops.internal or 10.0.0.5)"
        )
    return x509.DNSName(host)
