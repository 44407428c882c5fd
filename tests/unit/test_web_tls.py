"""TLS for the worker's HTTP API (privops.adapters.web_tls): its settings, the
certificate `privops local web-cert` makes, a real handshake with it, and the refusal
to serve passwords in the clear beyond loopback outside dev."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from typer.testing import CliRunner

from privops.adapters import web_tls
from privops.adapters.settings import Settings, get_settings
from privops.adapters.web_tls import WebCertificates
from privops.cli.main import app as cli
from privops.cli.worker_http import unreachable
from privops.core.errors import ConfigError
from streams import startup
from streams.startup import check_web_tls

PROD = {
    "env": "prod",
    "pseudonym_key": "a-real-pseudonym-key-0001",
    "audit_key": "a-real-audit-key-02",
}


@pytest.fixture
def made(tmp_path: Path) -> WebCertificates:
    return web_tls.development_certificates(tmp_path / "tls", ["localhost", "127.0.0.1"])


def settings(tmp_path: Path, **values: object) -> Settings:
    """Settings of a client or worker; dev unless ``values`` say (said, since a dev
    process reaching another machine must say so: test_settings)."""
    return Settings(home=tmp_path, **{"env": "dev", **values})  # type: ignore[arg-type]


def test_a_certificate_needs_its_key_and_the_error_names_both(
    tmp_path: Path, made: WebCertificates
) -> None:
    with pytest.raises(
        ValueError, match="PRIVOPS_WEB_TLS_CERT and PRIVOPS_WEB_TLS_KEY go together"
    ):
        settings(tmp_path, web_tls_cert=made.cert)
    with pytest.raises(
        ValueError, match="PRIVOPS_WEB_TLS_CERT and PRIVOPS_WEB_TLS_KEY go together"
    ):
        settings(tmp_path, web_tls_key=made.key)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://host:6066", "use http(s)://HOST:PORT"),
        ("http://", "use http(s)://HOST:PORT"),
        ("https://:6066", "use http(s)://HOST:PORT"),
        ("https://a b:6066", "use http(s)://HOST:PORT"),
        ("https://host:6066/consent", "no path, query or fragment"),
        ("https://host:6066?x=1", "no path, query or fragment"),
        ("https://host:0", "the port is not a number"),
        ("https://host:notaport", "the port is not a number"),
        ("https://dpo:s3cret@host:6066", "holds no user or password"),
    ],
)
def test_a_web_url_is_scheme_host_and_port_only(tmp_path: Path, url: str, said: str) -> None:
    for name in ("web_url", "web_advertised_url"):
        with pytest.raises(ValueError, match=name) as caught:
            Settings.model_validate({"home": tmp_path, name: url})
        assert said in str(caught.value)
        assert url not in str(caught.value)  # named, never repeated (README)


def test_a_url_with_a_password_is_refused_without_repeating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PRIVOPS_WEB_URL", "https://dpo:s3cret@host:6066")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="PRIVOPS_WEB_URL: a base URL holds no user") as e:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "s3cret" not in str(e.value)


def test_a_blank_setting_is_unset_and_a_scheme_any_case(tmp_path: Path) -> None:
    blank = settings(tmp_path, web_ca="", web_tls_cert=" ", web_tls_key="", web_url="")
    assert (blank.web_ca, blank.web_tls_cert, blank.web_tls_key, blank.web_url) == (None,) * 4
    assert settings(tmp_path, web_url="HTTPS://Host:6066/").web_url == "https://Host:6066"


def test_the_api_url_says_https_once_the_worker_has_a_certificate(
    tmp_path: Path, made: WebCertificates
) -> None:
    assert web_tls.api_url(settings(tmp_path, web_port=7001)) == "http://127.0.0.1:7001"
    served = settings(tmp_path, web_port=7001, web_tls_cert=made.cert, web_tls_key=made.key)
    assert web_tls.api_url(served) == web_tls.own_url(served) == "https://127.0.0.1:7001"
    # A client that has only the CA (another machine) speaks https too.
    client = settings(tmp_path, web_host="privops.internal", web_ca=made.ca)
    assert web_tls.api_url(client) == "https://privops.internal:6066"
    assert web_tls.own_url(settings(tmp_path, web_host="::1", web_port=7001)) == "http://[::1]:7001"
    elsewhere = settings(tmp_path, web_url="https://privops.internal:6066/")
    assert web_tls.api_url(elsewhere) == "https://privops.internal:6066"
    assert web_tls.own_url(elsewhere) == "http://127.0.0.1:6066"  # what other workers use
    assert web_tls.api_url(elsewhere, "https://other:1/") == "https://other:1"


def test_a_worker_listening_everywhere_advertises_its_own_name(
    tmp_path: Path, made: WebCertificates
) -> None:
    tls = {"web_tls_cert": made.cert, "web_tls_key": made.key, "web_host": "0.0.0.0"}
    assert web_tls.own_url(settings(tmp_path, **tls)) == "https://0.0.0.0:6066"
    named = settings(tmp_path, **tls, web_advertised_url="https://worker-1.internal:6066")
    assert web_tls.own_url(named) == "https://worker-1.internal:6066"
    assert web_tls.local_url(named) == "https://127.0.0.1:6066"  # the demo's own worker
    # A client beside a worker listening everywhere asks it on loopback.
    assert web_tls.api_url(settings(tmp_path, web_host="0.0.0.0")) == "http://127.0.0.1:6066"
    with pytest.raises(ValueError, match="a worker that serves TLS advertises https://"):
        settings(tmp_path, **tls, web_advertised_url="http://worker-1.internal:6066")


@pytest.mark.parametrize(
    ("values", "url", "refused"),
    [
        (PROD, "http://privops.internal:6066", True),
        (PROD, "http://10.0.0.5:6066", True),
        (PROD, "http://127.0.0.1:6066", False),
        (PROD, "http://localhost:6066", False),
        (PROD, "https://privops.internal:6066", False),
        ({**PROD, "web_plaintext": "allow"}, "http://privops.internal:6066", False),
        ({}, "http://privops.internal:6066", False),  # dev
    ],
)
def test_outside_dev_a_client_never_sends_its_password_over_plain_http_beyond_loopback(
    tmp_path: Path, values: dict[str, object], url: str, refused: bool
) -> None:
    """An independent review (session 23): a connector given the worker's host and CA
    but no URL spoke http:// to a TLS worker, its password on the wire before the
    worker hung up."""
    for given in ({"web_url": url}, {}):
        cfg = settings(tmp_path, **values, **given)
        explicit = None if given else url  # a --worker-url, a ConnectorRunner(worker_url=)
        if refused:
            with pytest.raises(ConfigError, match="in the clear"):
                web_tls.api_url(cfg, explicit)
        else:
            assert web_tls.api_url(cfg, explicit) == url


@pytest.mark.parametrize(
    ("values", "owner", "refused"),
    [
        ({"tls": True}, "http://127.0.0.1:6067", "this worker serves TLS"),
        ({"tls": True}, "https://127.0.0.1:6067", None),
        (PROD, "http://10.0.0.6:6066", "plain HTTP beyond loopback"),
        (PROD, "http://127.0.0.1:6067", None),
        ({**PROD, "web_plaintext": "allow"}, "http://10.0.0.6:6066", None),
        ({}, "http://10.0.0.6:6066", None),  # dev
    ],
)
def test_a_worker_forwards_credentials_over_plain_http_only_where_a_client_may(
    tmp_path: Path,
    made: WebCertificates,
    values: dict[str, object],
    owner: str,
    refused: str | None,
) -> None:
    values = dict(values)
    if values.pop("tls", False):
        values |= {"web_tls_cert": made.cert, "web_tls_key": made.key}
    why = web_tls.forward_refused(settings(tmp_path, **values), owner)
    if refused is None:
        assert why is None
    else:
        assert why is not None
        assert refused in why


def test_the_served_address_is_checked_as_faust_will_use_it(
    tmp_path: Path, made: WebCertificates
) -> None:
    """Faust's own WEB_BIND and NODE_CANONICAL_URL win over privops' settings."""
    with pytest.raises(ConfigError, match=r"listens on 0\.0\.0\.0"):
        check_web_tls(settings(tmp_path, **PROD), bind="0.0.0.0")
    served = settings(tmp_path, web_tls_cert=made.cert, web_tls_key=made.key)
    with pytest.raises(ConfigError, match="NODE_CANONICAL_URL"):
        check_web_tls(served, advertised="http://127.0.0.1:6066")
    check_web_tls(served, advertised="https://127.0.0.1:6066")


def test_a_development_key_replaces_a_file_or_symlink_never_writes_through_it(
    tmp_path: Path,
) -> None:
    """An independent review (session 23): the key was written through a symlink at its
    path, and into an older file while it still had that file's mode."""
    where = tmp_path / "tls"
    where.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("kept\n")
    (where / web_tls.KEY_FILE).symlink_to(victim)
    (where / web_tls.CERT_FILE).write_text("old\n")
    (where / web_tls.CERT_FILE).chmod(0o666)
    made = web_tls.development_certificates(where, ["localhost"])
    assert victim.read_text() == "kept\n"
    assert not made.key.is_symlink()
    assert made.key.stat().st_mode & 0o777 == 0o600
    assert made.cert.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in where.iterdir()) == sorted(
        [web_tls.CA_FILE, web_tls.CERT_FILE, web_tls.KEY_FILE]
    )


@pytest.mark.parametrize("host", ["", "-x", "a" * 64, "bad host", "x_y.example", "a..b"])
def test_local_web_cert_refuses_a_name_a_certificate_cannot_hold(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="not a host name or an IP address"):
        web_tls.development_certificates(tmp_path / "tls", [host])


def test_a_key_that_is_not_the_certificates_is_named(tmp_path: Path, made: WebCertificates) -> None:
    other = web_tls.development_certificates(tmp_path / "other", ["localhost"])
    mixed = settings(tmp_path, web_tls_cert=made.cert, web_tls_key=other.key)
    with pytest.raises(ConfigError, match="PRIVOPS_WEB_TLS_CERT / PRIVOPS_WEB_TLS_KEY"):
        web_tls.server_context(mixed)


def test_unreadable_files_are_named(tmp_path: Path, made: WebCertificates) -> None:
    missing = settings(tmp_path, web_tls_cert=made.cert, web_tls_key=tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match="PRIVOPS_WEB_TLS_KEY: cannot read"):
        web_tls.server_context(missing)
    not_a_ca = tmp_path / "ca.pem"
    not_a_ca.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"PRIVOPS_WEB_CA: .* holds no PEM CA certificate"):
        web_tls.client_context(settings(tmp_path, web_ca=not_a_ca))


def test_the_private_key_is_written_for_its_owner_only(made: WebCertificates) -> None:
    assert made.key.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in made.ca.read_bytes() + made.cert.read_bytes()


@pytest.fixture
async def https_server(made: WebCertificates, tmp_path: Path) -> AsyncIterator[int]:
    """A TLS server with the worker's context that answers one line of HTTP."""
    context = web_tls.server_context(
        settings(tmp_path, web_tls_cert=made.cert, web_tls_key=made.key)
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_a_client_trusting_the_web_ca_completes_the_handshake(
    https_server: int, made: WebCertificates, tmp_path: Path
) -> None:
    trust = web_tls.client_context(settings(tmp_path, web_ca=made.ca))
    for host in ("127.0.0.1", "localhost"):
        async with httpx.AsyncClient(verify=trust) as client:
            resp = await client.get(f"https://{host}:{https_server}/health")
        assert resp.text == "ok"


async def test_a_client_without_the_web_ca_refuses_the_certificate(
    https_server: int, made: WebCertificates, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(verify=web_tls.client_context(settings(tmp_path))) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://127.0.0.1:{https_server}/health")


async def test_a_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    elsewhere = web_tls.development_certificates(tmp_path / "tls", ["privops.internal"])
    context = web_tls.server_context(
        settings(tmp_path, web_tls_cert=elsewhere.cert, web_tls_key=elsewhere.key)
    )
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    trust = web_tls.client_context(settings(tmp_path, web_ca=elsewhere.ca))
    async with server:
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            await asyncio.open_connection("127.0.0.1", port, ssl=trust)


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        ({**PROD, "web_host": "0.0.0.0"}, True),
        ({**PROD, "web_host": "10.1.2.3"}, True),
        ({**PROD, "web_host": "privops.internal"}, True),
        ({**PROD, "web_host": "0.0.0.0", "web_plaintext": "allow"}, False),
        ({**PROD, "web_host": "127.0.0.1"}, False),
        ({**PROD, "web_host": "localhost"}, False),
        ({**PROD, "web_host": "::1"}, False),
        ({"web_host": "0.0.0.0"}, False),  # dev: a warning only
    ],
)
def test_outside_dev_plain_http_is_served_on_loopback_only(
    tmp_path: Path, values: dict[str, object], refused: bool
) -> None:
    problem = web_tls.check_plaintext(settings(tmp_path, **values))
    assert (problem is not None) is refused
    if refused:
        assert problem is not None
        assert "PRIVOPS_WEB_TLS_CERT" in problem
        assert "PRIVOPS_WEB_PLAINTEXT=allow" in problem
        with pytest.raises(ConfigError, match="without TLS"):
            check_web_tls(settings(tmp_path, **values))


def test_a_worker_with_a_certificate_may_listen_anywhere(
    tmp_path: Path, made: WebCertificates
) -> None:
    served = settings(
        tmp_path, **PROD, web_host="0.0.0.0", web_tls_cert=made.cert, web_tls_key=made.key
    )
    assert web_tls.check_plaintext(served) is None
    check_web_tls(served)


def test_local_web_cert_writes_and_prints_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVOPS_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(cli, ["local", "web-cert", "--host", "privops.internal", "--json"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    found = json.loads(out.stdout)
    assert found["hosts"] == ["privops.internal"]
    assert Path(found["PRIVOPS_WEB_CA"]).parent == tmp_path / "tls"
    served = settings(
        tmp_path,
        web_tls_cert=found["PRIVOPS_WEB_TLS_CERT"],
        web_tls_key=found["PRIVOPS_WEB_TLS_KEY"],
    )
    assert web_tls.server_context(served) is not None
    bad = CliRunner().invoke(cli, ["local", "web-cert", "--days", "0"])
    assert bad.exit_code == 2


async def test_the_cli_says_to_set_the_web_ca_when_the_certificate_is_refused(
    https_server: int, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(verify=web_tls.client_context(settings(tmp_path))) as client:
        try:
            await client.get(f"https://127.0.0.1:{https_server}/health")
        except httpx.HTTPError as exc:
            refused = exc
    base = f"https://127.0.0.1:{https_server}"
    assert web_tls.certificate_refused(refused) is not None
    assert "set PRIVOPS_WEB_CA" in unreachable(base, refused)
    assert "set PRIVOPS_WEB_URL=https" in unreachable(
        f"http://127.0.0.1:{https_server}", httpx.RemoteProtocolError("Server disconnected")
    )
    assert "start it with `privops worker`" in unreachable(base, httpx.ConnectError("refused"))


def test_the_worker_checks_what_faust_will_serve_before_it_touches_its_data_or_kafka(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, made: WebCertificates
) -> None:
    """Faust's own WEB_BIND, WEB_PORT and NODE_CANONICAL_URL win over privops' settings:
    the preflight checks the app's configuration, first (an independent review,
    session 23: WEB_PORT made a worker listen on one port and advertise another)."""
    touched: list[str] = []
    monkeypatch.setattr(startup, "check_kek", lambda _settings: None)
    monkeypatch.setattr(startup, "lock_data_dir", lambda _path: touched.append("data"))
    monkeypatch.setattr(startup, "cluster_id", lambda _bootstrap: touched.append("kafka"))
    prod = settings(tmp_path, **PROD)

    def conf(bind: str, port: int, url: str) -> SimpleNamespace:
        return SimpleNamespace(web_bind=bind, web_port=port, canonical_url=url)

    everywhere = conf("0.0.0.0", 6066, "http://0.0.0.0:6066")
    with pytest.raises(ConfigError, match=r"listens on 0\.0\.0\.0"):
        startup.preflight(prod, tmp_path, tmp_path, everywhere)
    with pytest.raises(ConfigError, match="WEB_PORT=7001"):
        startup.preflight(prod, tmp_path, tmp_path, conf("127.0.0.1", 7001, "http://x:7001"))
    served = settings(tmp_path, web_tls_cert=made.cert, web_tls_key=made.key)
    with pytest.raises(ConfigError, match="NODE_CANONICAL_URL"):
        startup.preflight(served, tmp_path, tmp_path, conf("127.0.0.1", 6066, "http://a:6066"))
    assert touched == []


def test_the_worker_refuses_plaintext_kafka_outside_dev_unless_told(tmp_path: Path) -> None:
    """On PLAINTEXT Kafka no principal is proven: no ACL holds, the HTTP API answers
    anyone and any caller may ask for any key scope (review, session 24: a warning only)."""
    plain = settings(tmp_path, kafka_security_protocol="PLAINTEXT", **PROD)
    with pytest.raises(ConfigError, match="PLAINTEXT outside PRIVOPS_ENV=dev"):
        startup.preflight(plain, tmp_path, tmp_path, SimpleNamespace())
    told = settings(tmp_path, kafka_security_protocol="PLAINTEXT", kafka_plaintext="allow", **PROD)
    startup.check_kafka_security(told)
    startup.check_kafka_security(settings(tmp_path, kafka_security_protocol="PLAINTEXT"))
    startup.check_kafka_security(settings(tmp_path, kafka_security_protocol="SASL_SSL", **PROD))
