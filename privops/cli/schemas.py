"""`privops schemas generate|check|register`: the Avro contract in schemas/."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import typer
from rich.markup import escape

from privops.adapters.avro import SchemaVersion, backward_problems, generate, load_versions
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
    found = _versions(settings().schema_dir)
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


def _versions(schema_dir: Path) -> dict[str, list[SchemaVersion]]:
    """Every schema version in ``schema_dir``; exit 2 if it cannot be read or holds none:
    nothing checked or registered is not success (a mistyped PRIVOPS_SCHEMA_DIR would
    pass every check and register nothing)."""
    try:
        found = load_versions(schema_dir)
    except (OSError, ValueError) as exc:
        fail(f"cannot read the schemas in {escape(str(schema_dir))}: {escape(str(exc))}")
    if not found:
        fail(
            f"no schema files (<namespace>/<Name>.v<N>.avsc) in {escape(str(schema_dir))}: "
            "set PRIVOPS_SCHEMA_DIR to the repository's schemas/ directory, or run "
            "`privops schemas generate`"
        )
    return found


@app.command()
def register() -> None:
    """Register the newest version of every schema in the registry."""
    cfg = settings()
    _versions(cfg.schema_dir)
    with handled():
        count = Serde.for_settings(cfg).register_all()
    console.print(f"{count} schema(s) registered at {cfg.registry_url}")
