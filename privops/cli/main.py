"""The ``privops`` console script: one entry point, one sub-command per concern."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from privops import __version__
from privops.cli import (
    audit,
    bench,
    consent,
    dsar,
    keys,
    local,
    request,
    ropa,
    schemas,
    simulate,
    subject,
    topics,
)
from privops.cli.common import EXIT_BAD_INPUT, err_console, handled, settings


class _Cli(typer.Typer):
    """The console script (``privops.cli.main:app``): with a file or directory the CLI
    cannot use said in one line and exit 2, not a traceback and exit 1 (a PRIVOPS_HOME
    that does not exist or cannot be written, a key file's directory missing; review,
    session 35). Only a path the settings name (PRIVOPS_HOME, a PRIVOPS_*_FILE or
    _DIR, or what lies under or above one): any other error is a bug, and keeps its
    traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except OSError as exc:
            if exc.filename is None or not _configured(Path(str(exc.filename))):
                raise
            err_console.print(
                f"[bold red]error:[/] cannot use {escape(str(exc.filename))}: "
                f"{exc.strerror or type(exc).__name__} (check PRIVOPS_HOME and the file "
                "settings that name it, and their permissions)",
                soft_wrap=not err_console.is_terminal,
            )
            raise SystemExit(EXIT_BAD_INPUT) from None


def _configured(path: Path) -> bool:
    """Whether ``path`` is one the settings name, lies under one, or is a directory one
    lies under (a missing parent)."""
    named = [
        Path(value).expanduser()
        for name, value in os.environ.items()
        if value
        and (
            name == "PRIVOPS_HOME"
            or (name.startswith("PRIVOPS_") and name.endswith(("_FILE", "_DIR")))
        )
    ]
    named.append(Path.home() / ".cache" / "privops")  # the default home
    path = path.expanduser()
    return any(path == p or p in path.parents or path in p.parents for p in named)


app = _Cli(
    name="privops",
    help="Privacy operations on Apache Kafka: consent, rights requests, deadlines, audit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(local.app, name="local")
app.add_typer(topics.app, name="topics")
app.add_typer(schemas.app, name="schemas")
app.add_typer(request.app, name="request")
app.add_typer(consent.app, name="consent")
app.add_typer(dsar.app, name="dsar")
app.add_typer(audit.app, name="audit")
app.add_typer(simulate.app, name="simulate")
app.add_typer(keys.app, name="keys")
app.add_typer(subject.app, name="subject")
app.command("ropa")(ropa.ropa)
app.command("bench")(bench.bench)


def _version(given: bool) -> None:
    if given:
        typer.echo(f"privops {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print this CLI's release and exit (a worker's is on its /health).",
    ),
) -> None:
    """Privacy operations on Apache Kafka: consent, rights requests, deadlines, audit."""


@app.command()
def worker() -> None:
    """Run the Faust worker (agents, tables, HTTP on PRIVOPS_WEB_PORT)."""
    # The CLI is the composition root: the worker lives in `streams`/`agents`, which
    # privops itself never imports at module level.
    with handled():
        # Importing the app reads and validates the settings: inside handled(), so a bad
        # setting is one line and exit 2.
        from streams.app import run_worker

        run_worker()


@app.command()
def demo(
    keep: bool = typer.Option(
        False, "--keep", help="Leave the worker and the local runtime running afterwards."
    ),
) -> None:
    """The main job: local Kafka, worker, simulated systems, a scripted story."""
    from privops.cli.common import console
    from privops.tools.demo import run

    with handled():
        run(settings(), console, keep=keep)


if __name__ == "__main__":
    app()
