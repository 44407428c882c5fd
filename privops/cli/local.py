"""`privops local up|down|status|credentials|web-cert`: the local Kafka broker(s) and schema
registry, and a development certificate for the worker's HTTPS API."""

from __future__ import annotations

from typing import Annotated

import typer

from privops.adapters import cluster, runtime, web_tls
from privops.cli.common import (
    EXIT_UNAVAILABLE,
    Json,
    console,
    emit_json,
    handled,
    say,
    settings,
)
from privops.tools.views import table

app = typer.Typer(help="Run Kafka (KRaft) and the schema registry locally, on loopback.")

Brokers = Annotated[
    int | None,
    typer.Option(
        "--brokers",
        help="Kafka nodes: 1, or 3 (3-voter quorum, replication 3, min.insync.replicas 2). "
        "Default: as many as the last `up` under this PRIVOPS_HOME, else 1.",
        show_default=False,
    ),
]


@app.command()
def up(brokers: Brokers = None) -> None:
    """Start Kafka and the registry (fetches jars on first use). Idempotent."""
    with handled():
        layout = runtime.up(settings(), say, brokers)
    console.print("[green]local runtime ready[/]")
    if layout.brokers > 1:
        console.print(
            f"{layout.brokers} brokers at [bold]{layout.bootstrap}[/]; privops commands under "
            f"this PRIVOPS_HOME use them and replication factor {layout.replication_factor} "
            f"(min.insync.replicas {cluster.min_insync_for(layout.replication_factor)}). "
            f"Elsewhere: PRIVOPS_KAFKA_BOOTSTRAP={layout.bootstrap} "
            f"PRIVOPS_REPLICATION_FACTOR={layout.replication_factor}",
            soft_wrap=True,
        )


@app.command()
def down() -> None:
    """Stop the registry and every Kafka node. Data stays under the privops home."""
    with handled():
        runtime.down(settings(), say)


@app.command()
def status(as_json: Json = False) -> None:
    """Show whether each component (each Kafka node) runs and answers. Exit 3 if any is
    not ready."""
    with handled():
        rows = runtime.status(settings())
    if as_json:
        emit_json([row.__dict__ for row in rows])
    else:
        out = table("component", "state", "pid", "address", "log")
        for row in rows:
            state = (
                "[green]ready[/]"
                if row.ready
                else ("[yellow]starting[/]" if row.running else "[red]stopped[/]")
            )
            out.add_row(row.name, state, str(row.pid or "-"), row.address, str(row.log))
        console.print(out)
    if not all(row.ready for row in rows):
        raise typer.Exit(EXIT_UNAVAILABLE)


@app.command()
def credentials(
    principal: Annotated[
        str,
        typer.Argument(
            help="privops (the worker), dpo (the CLI's DPO), system-<name> per business "
            "system (e.g. system-crm), or admin (the runtime's own super user).",
            show_default=False,
        ),
    ],
    as_json: Json = False,
) -> None:
    """Print how to connect to the local runtime as PRINCIPAL: bootstrap servers, security
    protocol, SASL mechanism, username and password. Without --json, as Java client
    properties (a `--command-config` file for Kafka's tools)."""
    with handled():
        found = runtime.client_settings(settings(), principal)
    if as_json:
        emit_json(found)
        return
    lines = [
        f"# {principal} on the local runtime (secret: keep it out of shared places)",
        f"bootstrap.servers={found['bootstrap_servers']}",
        f"security.protocol={found['security_protocol']}",
    ]
    if "ssl_cafile" in found:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={found['ssl_cafile']}"]
    if "password" in found:
        lines += [
            f"sasl.mechanism={found['sasl_mechanism']}",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{found["username"]}" password="{found["password"]}";',
        ]
    typer.echo("\n".join(lines))


@app.command("web-cert")
def web_cert(
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A name or IP address the worker's API is reached at (repeat it). "
            "Default: localhost, 127.0.0.1 and PRIVOPS_WEB_HOST.",
            show_default=False,
        ),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", min=1, max=825, help="How long the certificate is valid.")
    ] = 365,
    as_json: Json = False,
) -> None:
    """Make a throwaway CA and a certificate for the worker's HTTPS API under
    $PRIVOPS_HOME/tls/, and print the settings that use them (for trying TLS out: a
    production worker's certificate comes from your own PKI). Running it again replaces
    both, so clients need the new CA."""
    cfg = settings()
    names = list(dict.fromkeys(hosts or ["localhost", "127.0.0.1", cfg.web_host]))
    with handled():
        made = web_tls.development_certificates(cfg.home / "tls", names, days=days)
    found = {
        "PRIVOPS_WEB_TLS_CERT": str(made.cert),
        "PRIVOPS_WEB_TLS_KEY": str(made.key),
        "PRIVOPS_WEB_CA": str(made.ca),
        "hosts": names,
    }
    if as_json:
        emit_json(found)
        return
    say(f"certificate for {', '.join(names)}, valid {days} days, signed by a new CA")
    typer.echo(
        "# the worker (serves HTTPS); and every client: CLI, connectors, other workers\n"
        f"export PRIVOPS_WEB_TLS_CERT={made.cert}\n"
        f"export PRIVOPS_WEB_TLS_KEY={made.key}\n"
        f"export PRIVOPS_WEB_CA={made.ca}"
    )
