"""`privops local up|down|status`: the local Kafka broker and schema registry."""

from __future__ import annotations

import typer

from privops.adapters import runtime
from privops.cli.common import EXIT_UNAVAILABLE, Json, console, emit_json, handled, say, settings
from privops.tools.views import table

app = typer.Typer(help="Run Kafka (KRaft) and the schema registry locally, on loopback.")


@app.command()
def up() -> None:
    """Start Kafka and the registry (fetches jars on first use). Idempotent."""
    with handled():
        runtime.up(settings(), say)
    console.print("[green]local runtime ready[/]")


@app.command()
def down() -> None:
    """Stop the registry and Kafka. Data stays under the privops home."""
    with handled():
        runtime.down(settings(), say)


@app.command()
def status(as_json: Json = False) -> None:
    """Show whether each component runs and answers. Exit 3 if any is not ready."""
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
