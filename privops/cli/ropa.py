"""`privops ropa`: the Art. 30 record of processing activities, from the data map."""

from __future__ import annotations

from pathlib import Path

import typer

from privops.cli.common import console, emit_json, handled, settings
from privops.datamap import DataMap, load_datamap
from privops.ropa import ropa_record, ropa_renderables


def ropa(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    datamap: Path | None = typer.Option(
        None,
        "--datamap",
        help="Data map YAML (default: PRIVOPS_DATAMAP or deploy/datamap.yaml).",
        dir_okay=False,
    ),
) -> None:
    """Print the Art. 30 record of processing (controller, purposes, retention, recipients)."""
    path = datamap if datamap is not None else settings().datamap
    dm: DataMap | None = None
    with handled():
        dm = load_datamap(path)
    assert dm is not None
    if as_json:
        emit_json(ropa_record(dm))
        return
    for renderable in ropa_renderables(dm):
        console.print(renderable)
