"""TLS for the worker's HTTP API: its server context, and what its clients trust.

Every question to the API but ``/health`` and ``/metrics`` carries HTTP Basic with a
Kafka principal's SCRAM password (privops.adapters.api_auth), and a worker forwards a
question, credentials included, to the subject's owner. Over plain HTTP those cross the
wire in the clear, so:

- ``PRIVOPS_WEB_TLS_CERT`` and ``PRIVOPS_WEB_TLS_KEY`` (PEM) make the worker serve HTTPS,
  and advertise an ``https://`` address to the other workers of its group
  (``PRIVOPS_WEB_ADVERTISED_URL``, else its listening address);
- ``PRIVOPS_WEB_CA`` is the CA bundle its clients (the CLI, the connector SDK, the demo,
  a worker forwarding to another) trust for it; without it, the system's;
- ``PRIVOPS_WEB_URL`` is where a client on another machine reaches the API (default:
  PRIVOPS_WEB_HOST:PRIVOPS_WEB_PORT, https when this process has the worker's
  certificate or ``PRIVOPS_WEB_CA``);
- outside ``PRIVOPS_ENV=dev``, plain HTTP beyond loopback is refused everywhere a
  password would cross it: a worker will not listen on it or forward to it, a client
  will not ask over it, unless ``PRIVOPS_WEB_PLAINTEXT=allow`` says the network
  encrypts it; and a worker that serves TLS never forwards over plain HTTP.

``development_certificates`` (``privops local web-cert``) makes a throwaway CA and a
server certificate for trying this out; production certificates come from the
company's own PKI.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from privops.adapters import dev_certs
from privops.adapters.dev_certs import Certificates
from privops.adapters.settings import Settings, is_loopback, origin
from privops.core.errors import ConfigError

WEB_PREFIX = "web"
_NAMES = dev_certs.files(Path(), WEB_PREFIX)
CA_FILE, CERT_FILE, KEY_FILE = _NAMES.ca.name, _NAMES.cert.name, _NAMES.key.name
WebCertificates = Certificates


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The worker's TLS context when its certificate and key are set, else None (plain
    HTTP). A file that cannot be read or does not hold a matching certificate and key
    is a ``ConfigError`` naming the setting."""
    if settings.web_tls_cert is None or settings.web_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for name, path in (
        ("PRIVOPS_WEB_TLS_CERT", settings.web_tls_cert),
        ("PRIVOPS_WEB_TLS_KEY", settings.web_tls_key),
    ):
        _readable(name, path)
    try:
        context.load_cert_chain(settings.web_tls_cert, settings.web_tls_key)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"PRIVOPS_WEB_TLS_CERT / PRIVOPS_WEB_TLS_KEY: {settings.web_tls_cert} and "
            f"{settings.web_tls_key} are not a PEM certificate chain and its private key "
            f"({exc.__class__.__name__}: {exc})"
        ) from exc
    return context


def client_context(settings: Settings) -> ssl.SSLContext:
    """What a client of the API trusts: ``PRIVOPS_WEB_CA`` if set, else the system's
    CA bundle. Certificates and host names are always checked."""
    if settings.web_ca is None:
        return ssl.create_default_context()
    _readable("PRIVOPS_WEB_CA", settings.web_ca)
    try:
        return ssl.create_default_context(cafile=settings.web_ca)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"PRIVOPS_WEB_CA: {settings.web_ca} holds no PEM CA certificate ({exc})"
        ) from exc


def api_url(settings: Settings, explicit: str | None = None) -> str:
    """Where a client reaches the worker's API, without a trailing slash: ``explicit``
    (a ``--worker-url``), else ``PRIVOPS_WEB_URL``, else PRIVOPS_WEB_HOST:PORT, https
    when this process has the worker's certificate or a CA for it (``PRIVOPS_WEB_CA``).

    A ``ConfigError`` where a client would send its password in the clear: outside dev,
    plain HTTP to anything but loopback needs ``PRIVOPS_WEB_PLAINTEXT=allow``."""
    try:
        url = origin(explicit) if explicit else settings.web_url
    except ValueError as exc:
        raise ConfigError(f"the worker's URL: {exc}") from None
    if not url:
        tls = settings.web_tls_cert is not None or settings.web_ca is not None
        url = _url("https" if tls else "http", _reachable(settings.web_host), settings.web_port)
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" and not _plain_allowed(settings, parts.hostname or ""):
        raise ConfigError(
            f"the worker's API at {url} is plain HTTP beyond loopback: the password sent "
            "with every question would cross the network in the clear. Use https:// "
            "(PRIVOPS_WEB_URL, PRIVOPS_WEB_CA), or PRIVOPS_WEB_PLAINTEXT=allow if the "
            "network between you encrypts it"
        )
    return url


def own_url(settings: Settings) -> str:
    """The address a worker gives the others of its group (Faust's canonical URL), which
    they forward questions to: ``PRIVOPS_WEB_ADVERTISED_URL``, else its listening
    address; https when it serves TLS."""
    if settings.web_advertised_url:
        return settings.web_advertised_url.rstrip("/")
    scheme = "https" if settings.web_tls_cert is not None else "http"
    return _url(scheme, settings.web_host, settings.web_port)


def local_url(settings: Settings) -> str:
    """The worker this process starts, on this machine (the demo's): its listening
    address, loopback for a wildcard one; https when it serves TLS."""
    scheme = "https" if settings.web_tls_cert is not None else "http"
    return _url(scheme, _reachable(settings.web_host), settings.web_port)


def check_plaintext(settings: Settings, bind: str | None = None) -> str | None:
    """Why the worker must not serve its API as configured (None when it may): ``bind``
    is where it listens (default PRIVOPS_WEB_HOST).

    Outside dev, plain HTTP beyond loopback needs ``PRIVOPS_WEB_PLAINTEXT=allow``: the
    callers' passwords would otherwise cross the network in the clear."""
    bind = settings.web_host if bind is None else bind
    if settings.web_tls_cert is not None or _plain_allowed(settings, bind):
        return None
    return (
        f"the HTTP API listens on {bind} beyond loopback without TLS, so callers' "
        "passwords would cross the network in the clear: set PRIVOPS_WEB_TLS_CERT and "
        "PRIVOPS_WEB_TLS_KEY, or PRIVOPS_WEB_PLAINTEXT=allow if the network encrypts it "
        "(TLS ending in front of the worker, a service mesh between the workers)"
    )


def forward_refused(settings: Settings, owner: str) -> str | None:
    """Why this worker must not forward a question, credentials included, to the worker
    at ``owner`` (None when it may): never over plain HTTP from a worker that serves TLS
    (an owner that advertises http:// is misconfigured, or not one of ours), and outside
    dev never beyond loopback without ``PRIVOPS_WEB_PLAINTEXT=allow``."""
    parts = urlsplit(owner)
    if parts.scheme.lower() == "https":
        return None
    if settings.web_tls_cert is not None:
        return f"this worker serves TLS, and the owner advertises {parts.scheme}://"
    if not _plain_allowed(settings, parts.hostname or ""):
        return "plain HTTP beyond loopback outside dev"
    return None


def _plain_allowed(settings: Settings, host: str) -> bool:
    return is_loopback(host) or settings.env == "dev" or settings.web_plaintext == "allow"


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{_url_host(host)}:{port}"


def certificate_refused(exc: BaseException) -> str | None:
    """Why the server's certificate was refused, when that is what ``exc`` (an HTTP
    client's error) comes from; else None."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            # aiohttp's own error is one too, holding the ssl module's as
            # ``certificate_error`` (without its verify_message).
            cause = getattr(cause, "certificate_error", None) or cause
            said = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
            return str(said or cause)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def wildcard(host: str) -> bool:
    """0.0.0.0 or :: (every interface): a place to listen, not an address to reach."""
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _reachable(host: str) -> str:
    """Where a client on this machine reaches a worker listening on ``host``."""
    return "127.0.0.1" if wildcard(host) else host


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def _readable(name: str, path: Path) -> None:
    try:
        path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path} ({exc.strerror or exc})") from exc


def development_certificates(
    directory: Path, hosts: Sequence[str], *, days: int = 365
) -> Certificates:
    """A throwaway CA and a certificate for the worker's API (`privops local web-cert`):
    ``dev_certs.development_certificates`` named web-ca.pem, web.pem, web-key.pem."""
    return dev_certs.development_certificates(directory, hosts, prefix=WEB_PREFIX, days=days)
