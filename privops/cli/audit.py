"""`privops audit show|verify`: read the hash-chained audit trail on privacy.audit.

`show` prints one request's (or subject ref's) history; `verify` walks the whole topic,
partition by partition in log order, and reports the first break of any chain.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.markup import escape

from privops.adapters.kafka import Consumed, read_all
from privops.adapters.serde import Serde
from privops.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    Json,
    check_id,
    console,
    emit_json,
    fail,
    quiet_kafka_logs,
    run_async,
    settings,
)
from privops.core.audit import Break, verify
from privops.core.errors import DecodeError, PrivopsError
from privops.core.identity import subject_ref
from privops.core.records import AuditEvent
from privops.core.topics import AUDIT
from privops.tools.views import table

app = typer.Typer(help="The tamper-evident audit trail (privacy.audit).", no_args_is_help=True)


@dataclass
class AuditLog:
    """What was read from the topic: usable records per partition, and what was not."""

    by_partition: dict[int, list[AuditEvent]] = field(default_factory=dict)
    unusable: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> list[AuditEvent]:
        return [r for p in sorted(self.by_partition) for r in self.by_partition[p]]


def _decoded(serde: Serde, msg: Consumed) -> AuditEvent | tuple[str, str]:
    """The audit event in a message, or (problem, detail) saying why it is unusable."""
    raw = msg.value if isinstance(msg.value, bytes) else None
    try:
        event = serde.decode(raw)
    except DecodeError as exc:
        # Records are validated on decode: one that decodes but breaks a rule of the
        # model (a malformed hash, raw PII) is invalid rather than undecodable.
        return ("invalid" if exc.reason == "invalid_record" else "undecodable"), str(exc)
    except PrivopsError as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    if not isinstance(event, AuditEvent):
        return "not_audit", type(event).__name__
    return event


def read_audit() -> AuditLog:
    """Every audit record on the topic, decoded, in log order per partition."""
    cfg = settings()
    serde = Serde(cfg.registry_url, cfg.schema_dir)
    quiet_kafka_logs()
    consumed: list[Consumed] = run_async(lambda: read_all(cfg.kafka_bootstrap, AUDIT))
    log = AuditLog()
    grouped: dict[int, list[Consumed]] = defaultdict(list)
    for msg in consumed:
        grouped[msg.partition].append(msg)
    for partition in sorted(grouped):
        records: list[AuditEvent] = []
        for msg in sorted(grouped[partition], key=lambda m: m.offset):
            event = _decoded(serde, msg)
            if isinstance(event, AuditEvent):
                records.append(event)
            else:
                problem, detail = event
                log.unusable.append(
                    {
                        "partition": partition,
                        "offset": msg.offset,
                        "problem": problem,
                        "detail": detail,
                    }
                )
        log.by_partition[partition] = records
    return log


@app.command()
def show(
    id_: str = typer.Argument(
        ..., metavar="ID", help="A request id, a subject ref (sr_...) or a subject id."
    ),
    as_json: Json = False,
) -> None:
    """The history of a request or subject: time, seq, actor, action, before -> after, reason."""
    wanted = check_id(id_, "id")
    keys = {wanted}
    if not wanted.startswith("sr_"):
        keys.add(subject_ref(settings().pseudonym_key.encode(), wanted))
    history = [
        r
        for r in read_audit().records
        if r.request_id in keys or r.subject_ref in keys or r.chain in keys
    ]
    if not history:
        fail(f"no audit events for {escape(wanted)} (unknown id?)", EXIT_NOT_FOUND)
    history.sort(key=lambda r: (r.occurred_at, r.chain, r.seq))
    if as_json:
        emit_json([r.model_dump(mode="json") for r in history])
        return
    out = table(
        "time (UTC)", "seq", "actor", "action", "before -> after", "reason",
        title=f"Audit trail for {escape(wanted)}",
    )  # fmt: skip
    for r in history:
        change = f"{r.before or '-'} -> {r.after or '-'}" if (r.before or r.after) else "-"
        out.add_row(
            r.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(r.seq),
            escape(r.actor),
            escape(r.action),
            escape(change),
            escape(r.reason or "-"),
        )
    console.print(out)


def _break_dict(b: Break) -> dict[str, Any]:
    return {
        "audit_id": b.audit_id,
        "chain": b.chain,
        "seq": b.seq,
        "problem": b.problem,
        "detail": b.detail,
    }


@app.command("verify")
def verify_cmd(
    as_json: Json = False,
    chain: str = typer.Option(
        "",
        "--chain",
        help="Only chains starting with this prefix, e.g. one deployment's app id "
        "('privops/'); default: every chain on the topic.",
    ),
) -> None:
    """Walk every chain on privacy.audit; exit 1 and report the first break if any."""
    log = read_audit()
    checked = 0
    breaks: list[Break] = []
    for partition in sorted(log.by_partition):
        records = [rec for rec in log.by_partition[partition] if rec.chain.startswith(chain)]
        result = verify(records)
        checked += result.checked
        breaks.extend(result.breaks)
    ok = not breaks and not log.unusable
    if as_json:
        emit_json(
            {
                "ok": ok,
                "checked": checked,
                "first_break": _break_dict(breaks[0]) if breaks else None,
                "breaks": [_break_dict(b) for b in breaks],
                "unusable": log.unusable,
            }
        )
    else:
        console.print(f"checked {checked} audit record(s) on {AUDIT}", highlight=False)
        if breaks:
            first = breaks[0]
            console.print(
                f"[bold red]BROKEN[/] chain {escape(first.chain)} at seq {first.seq} "
                f"(audit id {escape(first.audit_id)}): {first.problem}"
                + (f", {escape(first.detail)}" if first.detail else ""),
                highlight=False,
            )
            if len(breaks) > 1:
                console.print(f"{len(breaks) - 1} further break(s)", highlight=False)
        for bad in log.unusable:
            console.print(
                f"[bold red]unusable record[/] partition {bad['partition']} offset "
                f"{bad['offset']}: {bad['problem']} ({escape(str(bad['detail']))})",
                highlight=False,
            )
        if ok:
            console.print("[bold green]OK[/]: every chain is intact")
    if not ok:
        raise typer.Exit(EXIT_FAILED)
