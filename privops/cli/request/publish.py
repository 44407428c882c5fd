"""Commands out to `privacy.commands`: ids, the envelope, and producing them.

A command id is new per invocation, so a retried CLI call is a new command the worker
answers on its own; the request id is what ties a request's commands together.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import typer
from rich.markup import escape

from privops.adapters.kafka import producer
from privops.adapters.serde import Serde
from privops.cli.common import console, emit_json, fail, quiet_kafka_logs, run_async, settings
from privops.core.records import Command
from privops.core.topics import COMMANDS


def new_request_id() -> str:
    return "REQ-" + uuid.uuid4().hex[:12].upper()


def new_hold_id() -> str:
    return "HOLD-" + uuid.uuid4().hex[:12].upper()


def envelope(request_id: str, actor: str) -> dict[str, Any]:
    # Commands are to be Ed25519-signed (DESIGN.md section 8); no signing key is
    # configured for the CLI yet, so the signature is left empty.
    return {
        "command_id": str(uuid.uuid4()),
        "request_id": request_id,
        "issued_at": datetime.now(UTC),
        "actor": actor,
        "signature": None,
    }


def actor_name(actor: str | None) -> str:
    name = (actor if actor is not None else settings().actor).strip()
    if not name:
        fail("--actor must not be empty")
    return name


def note(reason: str | None) -> str | None:
    """An optional --reason: absent is fine, blank is a mistake."""
    if reason is None:
        return None
    text = reason.strip()
    if not text:
        fail("--reason must not be empty")
    return text


def required_reason(reason: str | None) -> str:
    text = note(reason)
    if text is None:
        fail("--reason is required")
    return text


def publish(commands: Sequence[Command]) -> None:
    """Register the schemas and produce each command to privacy.commands (acks=all).

    The broker is contacted first, so an unreachable broker is reported with its address
    before the registry is tried.
    """
    cfg = settings()
    serde = Serde(cfg.registry_url, cfg.schema_dir)
    quiet_kafka_logs()

    async def send() -> None:
        async with producer(cfg.kafka_bootstrap) as prod:
            await asyncio.to_thread(serde.register_all)
            for command in commands:
                await prod.send_and_wait(
                    COMMANDS, value=serde.encode(command), key=command.request_id.encode()
                )

    run_async(send)


def publish_one(command: Command, as_json: bool, summary: str) -> None:
    """Publish a follow-up command; print its request id (or JSON) and a one-line summary."""
    publish([command])
    if as_json:
        emit_json(
            {
                "request_id": command.request_id,
                "command_id": command.command_id,
                "command": type(command).__name__,
                "topic": COMMANDS,
            }
        )
        return
    typer.echo(command.request_id)
    console.print(f"[dim]•[/] {escape(summary)}", highlight=False)
