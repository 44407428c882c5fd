"""Commands out to `privacy.commands` and the worker's answers back: ids, the envelope,
producing, waiting, and the report with its exit code.

A command id is new per invocation, so a retried CLI call is a new command the worker
answers on its own; the request id is what ties a request's commands together, and the
command id is what ties a command to its answer on `privacy.command-results`.

Every command is signed with its actor's key just before it goes out, for the Kafka
cluster it goes to (DESIGN.md section 8; privops.adapters.signing_keys says where keys
live; privops.core.signing why the cluster): the worker rejects anything else.

Every command is keyed by its subject's id (DESIGN.md section 4: a request lives on its
subject's partition). A follow-up names only its request, so its subject is asked of
the worker first (any worker of the group answers for any request).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import typer
from aiokafka.errors import KafkaError
from rich.markup import escape

from privops.adapters.acls import DPO
from privops.adapters.kafka import Client, client_options, cluster_id, not_sent, producer
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings
from privops.adapters.signing_keys import signing_key
from privops.cli.common import (
    EXIT_UNAVAILABLE,
    console,
    emit_json,
    err_console,
    fail,
    handled,
    quiet_kafka_logs,
    run_async,
    settings,
)
from privops.cli.request.answers import Outcome, Verdict, exit_code, judge, reason_words
from privops.cli.request.reader import answer_reader
from privops.cli.request.sealing import Addressed, sealed_commands
from privops.cli.worker_http import worker_json
from privops.core.errors import RegistryError, RuntimeUnavailable
from privops.core.records import Command, CommandAnswer, RequestSubmitted
from privops.core.signing import SigningKey
from privops.core.topics import COMMANDS
from privops.core.vocab import RequestType


def new_request_id() -> str:
    return "REQ-" + uuid.uuid4().hex[:12].upper()


def new_hold_id() -> str:
    return "HOLD-" + uuid.uuid4().hex[:12].upper()


def envelope(request_id: str, actor: str) -> dict[str, Any]:
    """A command's common fields; `publish` signs it (the signature covers all of them)."""
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


def waiting(wait: float, no_wait: bool) -> float | None:
    """Seconds to wait for the worker's answers, or None to only publish (--no-wait)."""
    if no_wait:
        return None
    if not wait > 0:
        fail(
            "--wait (or PRIVOPS_COMMAND_WAIT, its default) must be more than 0 seconds "
            "(use --no-wait to only publish)"
        )
    return wait


def signing_keys(commands: Sequence[Command], cfg: Settings) -> dict[str, SigningKey]:
    """Each command's actor's key; exit 2 if an actor has none (outside dev) or is not a
    principal name, before anything is sent."""
    keys: dict[str, SigningKey] = {}
    with handled():
        for actor in dict.fromkeys(c.actor for c in commands):
            keys[actor] = signing_key(cfg, actor, say=tell)
    return keys


async def signed_for(
    commands: Sequence[Command], keys: dict[str, SigningKey], client: Client
) -> list[Command]:
    """Each command signed with its actor's key for the Kafka cluster ``client`` reaches
    (its id, asked of the broker): a worker on another cluster refuses it."""
    deployment = await cluster_id(client)
    return [keys[c.actor].sign(c, deployment=deployment) for c in commands]


def tell(message: str) -> None:
    err_console.print(f"[dim]•[/] {escape(message)}", highlight=False)


def addressed(command: Command) -> Addressed:
    """The command's ``Addressed``: its own, else its request's (asked of the worker;
    exit 4 if the worker knows no such request, 3 if unreachable)."""
    own: str | None = getattr(command, "subject_id", None)
    if own:
        own_kind = command.request_type if isinstance(command, RequestSubmitted) else None
        return Addressed(own, own_kind)
    body = worker_json(
        f"/requests/{command.request_id}",
        not_found=f"{type(command).__name__} for {command.request_id} not sent: "
        f"{reason_words('unknown_request')} " + escape("[unknown_request]"),
    )
    subject = body.get("subject_id")
    if not isinstance(subject, str) or not subject:
        # 3, not 1 (a script's "rejected"): nothing was decided, the answer is unusable.
        fail(
            f"the worker did not say whose request {command.request_id} is: is it the same "
            "privops version as this CLI?",
            EXIT_UNAVAILABLE,
        )
    try:
        kind: RequestType | None = RequestType(str(body.get("request_type")))
    except ValueError:
        kind = None  # not one this CLI knows: no new key is made for the text
    return Addressed(subject, kind)


def publish(commands: Sequence[Command], wait: float | None) -> list[Verdict]:
    """Seal each command's personal values (``privops.cli.request.sealing``), sign it and
    produce it to privacy.commands (acks=all), then wait for the answers.

    The broker is contacted first, so an unreachable broker is reported with its address
    before the registry is tried. The answer topic's end is noted before the first
    command goes out (see `privops.cli.request.reader`).
    """
    cfg = settings()
    whose = [addressed(c) for c in commands]
    signers = signing_keys(commands, cfg)
    # Sealed, then signed: the signature covers the ciphertext the worker checks it on.
    commands = sealed_commands(commands, whose)
    keys = [w.subject_id.encode() for w in whose]
    serde = Serde.for_settings(cfg)
    quiet_kafka_logs()

    async def send() -> dict[str, CommandAnswer]:
        async with AsyncExitStack() as stack:
            reader = None
            if wait is not None:
                reader = await stack.enter_async_context(
                    answer_reader(client_options(cfg, default=DPO), serde.decode_async)
                )
            options = client_options(cfg, default=DPO)
            async with producer(options) as prod:
                await asyncio.to_thread(serde.register_all)
                signed = await signed_for(commands, signers, options)
                sent: list[str] = []
                for command, key in zip(signed, keys, strict=True):
                    try:
                        await prod.send_and_wait(COMMANDS, value=serde.encode(command), key=key)
                    except KafkaError as exc:
                        raise not_sent(options, COMMANDS, exc, sent, command.request_id) from exc
                    sent.append(command.request_id)
            if reader is None or wait is None:
                return {}
            try:
                return await reader.collect(
                    {c.command_id: key for c, key in zip(commands, keys, strict=True)}, wait
                )
            except (KafkaError, RegistryError) as exc:
                raise answer_unread(sent, exc) from exc

    answers: dict[str, CommandAnswer] = run_async(send)
    return [
        judge(c, answers.get(c.command_id), wait=wait, bootstrap=cfg.kafka_bootstrap)
        for c in commands
    ]


def answer_unread(sent: Sequence[str], exc: Exception) -> RuntimeUnavailable:
    """The error once every command went out but the answers could not be read (the
    broker refused the answers topic, went away, the registry failed): exit 3, naming
    what was sent. Before, a broker error was a traceback and exit 1, which a script
    reads as "refused", and a registry error did not say the command had gone out: a
    DPO sending it again made a second request (review, session 44)."""
    return RuntimeUnavailable(
        f"sent {', '.join(sent)} to {COMMANDS}, but the worker's answer could not be read "
        f"({type(exc).__name__}: {exc}): it may be applied all the same; check `privops "
        "request status ID` before sending it again"
    )


def report(verdicts: Sequence[Verdict], summaries: Sequence[str], *, quiet: bool) -> None:
    """Say what each command did and what the worker answered; exit with the verdict.

    An accepted (or unawaited) command's summary goes to stdout unless --quiet; a
    rejection or a missing answer goes to stderr always, since the exit code alone does
    not say why.
    """
    for verdict, summary in zip(verdicts, summaries, strict=True):
        if verdict.exit_code:
            err_console.print(f"[bold red]error:[/] {escape(verdict.text)}", highlight=False)
        elif verdict.outcome is Outcome.not_waited and not quiet:
            # The summary says what the command does once accepted ("legal hold placed",
            # "response approved and sent"): with no answer read, it has not happened yet
            # (the worker may still refuse it), and the line must not say it has (review,
            # session 35).
            console.print(
                f"[dim]•[/] sent, not yet accepted: {escape(summary)} ({escape(verdict.text)})",
                highlight=False,
            )
        elif not quiet:
            console.print(f"[dim]•[/] {escape(summary)}; {escape(verdict.text)}", highlight=False)
    conclude(verdicts)


def conclude(verdicts: Sequence[Verdict]) -> None:
    code = exit_code(verdicts)
    if code:
        raise typer.Exit(code)


def publish_one(command: Command, as_json: bool, summary: str, wait: float | None) -> None:
    """Publish a follow-up command; print its request id (or JSON), then the verdict."""
    verdicts = publish([command], wait)
    if as_json:
        emit_json(
            {
                "request_id": command.request_id,
                "command_id": command.command_id,
                "command": type(command).__name__,
                "topic": COMMANDS,
                "answer": verdicts[0].as_json(),
            }
        )
        conclude(verdicts)
        return
    typer.echo(command.request_id)
    report(verdicts, [summary], quiet=False)
