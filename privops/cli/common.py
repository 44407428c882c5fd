"""What every CLI verb shares: the console, settings, error handling, input checks, --json.

Input checks exit 2 naming the option at fault, before anything is sent anywhere, so a
typo never reaches the broker or the worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import Enum
from typing import Annotated, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape

from privops.adapters.settings import Settings, get_settings
from privops.core.errors import (
    ConfigError,
    DomainError,
    PrivopsError,
    RegistryError,
    RuntimeUnavailable,
)
from privops.core.pii import looks_like_pii

console = Console()
err_console = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_FAILED = 1

UK = ZoneInfo("Europe/London")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
"""The `--json` flag of every verb that can print for a script instead of a person."""

E = TypeVar("E", bound=Enum)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    # One line when stderr is no terminal (a log, systemd, a pipe): rich wraps at 80
    # columns there, and a line-based log alert saw half a message (review, session 32).
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=not err_console.is_terminal)
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
    with handled():
        return asyncio.run(factory())


def quiet_kafka_logs() -> None:
    """aiokafka logs each failed connect; the CLI reports the failure once, itself."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


# --- input checks ----------------------------------------------------------------------------


def uk_today() -> date:
    """Today's date in the UK: legal deadlines are UK local dates."""
    return datetime.now(UTC).astimezone(UK).date()


def parse_date(value: str, option: str, *, allow_future: bool = False) -> date:
    """A YYYY-MM-DD option value, or exit 2 naming the option."""
    text = value.strip()
    try:
        if not _DATE_RE.fullmatch(text):
            raise ValueError(text)
        parsed = date.fromisoformat(text)
    except ValueError:
        fail(f"invalid date {shown(value)} for {option}: use YYYY-MM-DD")
    if not allow_future and parsed > uk_today():
        fail(f"{option} {parsed} is in the future (today in the UK is {uk_today()})")
    return parsed


def check_id(value: str, what: str = "request id") -> str:
    """A request, hold or subject id: a short word without spaces or slashes.

    Ids end up in URL paths and message keys, so anything else is refused here. What
    was given is not repeated: something that is not an id is often what a DPO knows
    the subject by instead (an e-mail address, a name), and messages land in logs.
    """
    value = value.strip()
    if not _ID_RE.fullmatch(value):
        fail(
            f"invalid {what} ({_chars(len(value))}, not repeated here): an id is 1 to 64 "
            "letters, digits and . _ : -, starting with a letter or digit"
        )
    return value


def shown(value: str) -> str:
    """A value given on the command line, quoted for an error message, unless it looks
    like contact details (a number pasted into the wrong option, a subject "id" that is
    the subject's phone number): messages land in logs. Such an id is not refused: the
    systems choose their subject ids, and a customer number may look like one (diff
    review, session 35)."""
    if looks_like_pii(value):
        return f"({_chars(len(value))}, not repeated here: it looks like contact details)"
    return f"'{escape(value)}'"


def _chars(n: int) -> str:
    return f"{n} character{'s' if n != 1 else ''}"


def choices(kind: type[Enum]) -> str:
    """The values of a vocabulary, for help texts and error messages."""
    return ", ".join(str(member.value) for member in kind)


def parse_choice(kind: type[E], value: str, what: str, *, echo: bool = True) -> E:
    """A vocabulary value, case-insensitive; exit 2 listing the values there are. With
    ``echo`` False, one not known is not repeated (where a name typed in the wrong
    place, or split off another option by the shell, may land)."""
    try:
        return kind(value.strip().lower())
    except ValueError:
        given = f" {shown(value)}" if echo else ""
        fail(f"unknown {what}{given}: use one of {choices(kind)}")
