"""`privops topics create`: every topic of the catalogue, idempotently."""

from __future__ import annotations

import typer

from privops.adapters.datamap_file import load_datamap
from privops.adapters.kafka import create_topics
from privops.cli.common import Json, console, emit_json, handled, run_async, settings
from privops.core.topics import catalogue
from privops.tools.views import table

app = typer.Typer(help="Kafka topics from the catalogue (DESIGN.md section 4).")


@app.command()
def create(as_json: Json = False) -> None:
    """Create every missing topic with its partitions and config; report the rest."""
    cfg = settings()
    with handled():
        specs = catalogue(cfg.topic_partitions, load_datamap(cfg.datamap))
    outcomes = run_async(
        lambda: create_topics(cfg.kafka_bootstrap, specs, replication_factor=cfg.replication_factor)
    )
    if as_json:
        emit_json([o.__dict__ for o in outcomes])
        return
    out = table("topic", "partitions", "action", "note")
    for o in outcomes:
        out.add_row(o.name, str(o.partitions), "created" if o.created else "exists", o.note)
    console.print(out)
