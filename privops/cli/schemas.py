"""`privops schemas generate|check|register`: the Avro contract in schemas/."""

from __future__ import annotations

from itertools import pairwise

import typer
from rich.markup import escape

from privops.adapters.avro import backward_problems, generate, load_versions
from privops.adapters.serde import Serde
from privops.cli.common import EXIT_FAILED, console, fail, handled, say, settings

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
    schema_dir = settings().schema_dir
    try:
        found = load_versions(schema_dir)
    except (OSError, ValueError) as exc:
        fail(f"cannot read the schemas in {escape(str(schema_dir))}: {escape(str(exc))}")
    if not found:
        # Nothing compared is not "all compatible": a mistyped PRIVOPS_SCHEMA_DIR would
        # pass every check.
        fail(
            f"no schema files (<namespace>/<Name>.v<N>.avsc) in {escape(str(schema_dir))}: "
            "set PRIVOPS_SCHEMA_DIR to the repository's schemas/ directory, or run "
            "`privops schemas generate`"
        )
    problems = []
    for name, versions in found.items():
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
