"""What every CLI verb shares: the console, settings, error handling, --json output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

from privops.adapters.settings import Settings, get_settings
from privops.core.errors import (
    ConfigError,
    DomainError,
    PrivopsError,
    RegistryError,
    RuntimeUnavailable,
)

console = Console()
err_console = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Turn privops errors into a message and a meaningful exit code."""
    try:
        yield
    except RuntimeUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except RegistryError as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except ConfigError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except DomainError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except PrivopsError as exc:
        fail(str(exc), EXIT_FAILED)


def settings() -> Settings:
    with handled():
        return get_settings()
    raise AssertionError("unreachable")


def say(message: str) -> None:
    console.print(f"[dim]•[/] {message}")


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


def run_async(factory: Callable[[], Any]) -> Any:
    import asyncio

    with handled():
        return asyncio.run(factory())
