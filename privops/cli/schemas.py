"""`privops schemas generate|check|register`: the Avro contract in schemas/."""

from __future__ import annotations

from itertools import pairwise

import typer

from privops.adapters.avro import backward_problems, generate, load_versions
from privops.adapters.serde import Serde
from privops.cli.common import EXIT_FAILED, console, handled, say, settings

app = typer.Typer(help="The Avro contract: generate versions, check compatibility, register.")


@app.command("generate")
def generate_cmd() -> None:
    """Write a new schema version for every record model that changed."""
    written = generate(settings().schema_dir)
    for path in written:
        say(f"wrote {path}")
    console.print(f"{len(written)} schema file(s) written")


@app.command()
def check() -> None:
    """Check every schema version BACKWARD-compatible with the one before it."""
    problems = []
    for name, versions in load_versions(settings().schema_dir).items():
        for old, new in pairwise(versions):
            problems += [
                f"{name} v{old.version}->v{new.version}: {p}"
                for p in backward_problems(old.schema, new.schema)
            ]
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    if problems:
        raise typer.Exit(EXIT_FAILED)
    console.print("[green]all schema versions are BACKWARD compatible[/]")


@app.command()
def register() -> None:
    """Register the newest version of every schema in the registry."""
    cfg = settings()
    with handled():
        count = Serde(cfg.registry_url, cfg.schema_dir).register_all()
    console.print(f"{count} schema(s) registered at {cfg.registry_url}")
