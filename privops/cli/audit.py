"""`privops audit show|verify|anchor`: read the hash-chained audit trail on privacy.audit.

`show` prints one request's (or subject ref's) history; `verify` walks the whole topic,
partition by partition in log order, with the audit keyring, and reports the first break
of any chain; `anchor` writes every chain's head to a signed file outside Kafka, which
`verify --anchors` later checks the topic against (a rewritten topic shows there).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from privops.adapters.acls import DPO
from privops.adapters.kafka import Consumed, client_options, read_all
from privops.adapters.serde import Serde
from privops.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    Json,
    check_id,
    console,
    emit_json,
    fail,
    handled,
    quiet_kafka_logs,
    run_async,
    settings,
)
from privops.core.audit import (
    Break,
    Keyring,
    VerifyResult,
    keyring,
    verify_log,
)
from privops.core.audit_anchor import (
    Anchors,
    AnchorsForged,
    AnchorsInvalid,
    Located,
    build_anchors,
    check_anchors,
    dump_anchors,
    load_anchors,
)
from privops.core.errors import DecodeError, PrivopsError
from privops.core.identity import subject_ref
from privops.core.records import AuditEvent
from privops.core.topics import AUDIT
from privops.tools.views import table

app = typer.Typer(help="The tamper-evident audit trail (privacy.audit).", no_args_is_help=True)


@dataclass
class AuditLog:
    """What was read from the topic: usable records per partition, and what was not."""

    by_partition: dict[int, list[tuple[int, AuditEvent]]] = field(default_factory=dict)
    unusable: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> list[AuditEvent]:
        return [record for _, _, record in self.located()]

    def located(self, chain_prefix: str = "") -> list[Located]:
        """(partition, offset, record) in log order, partition by partition."""
        return [
            (partition, offset, record)
            for partition in sorted(self.by_partition)
            for offset, record in self.by_partition[partition]
            if record.chain.startswith(chain_prefix)
        ]

    def partitions(self, chain_prefix: str = "") -> dict[int, list[AuditEvent]]:
        return {
            partition: [r for _, r in entries if r.chain.startswith(chain_prefix)]
            for partition, entries in self.by_partition.items()
        }


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
    consumed: list[Consumed] = run_async(lambda: read_all(client_options(cfg, default=DPO), AUDIT))
    log = AuditLog()
    grouped: dict[int, list[Consumed]] = defaultdict(list)
    for msg in consumed:
        grouped[msg.partition].append(msg)
    for partition in sorted(grouped):
        records: list[tuple[int, AuditEvent]] = []
        for msg in sorted(grouped[partition], key=lambda m: m.offset):
            event = _decoded(serde, msg)
            if isinstance(event, AuditEvent):
                records.append((msg.offset, event))
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


def audit_keyring() -> tuple[dict[int, bytes], int]:
    """The keyring to verify with, and the version of the current key (which signs)."""
    with handled():
        cfg = settings().require_secrets("audit_key")
        version: int = cfg.audit_key_version
        previous: dict[int, str] | None = cfg.audit_previous_keys
        return keyring(cfg.audit_key, version, previous), version
    raise AssertionError("unreachable")


def app_id_of(record: AuditEvent) -> str:
    """The deployment (Faust app id) whose worker wrote the record: its chain's namespace."""
    namespace, sep, _ = record.chain.partition("/")
    return namespace if sep else "-"


def ordered_history(records: list[AuditEvent]) -> list[AuditEvent]:
    """One deployment after another, each in time order: chains of different app ids
    (a demo run, a test worker, production) never interleave into one sequence."""
    return sorted(records, key=lambda r: (app_id_of(r), r.occurred_at, r.chain, r.seq))


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
        with handled():
            keys.add(
                subject_ref(
                    settings().require_secrets("pseudonym_key").pseudonym_key.encode(), wanted
                )
            )
    history = [
        r
        for r in read_audit().records
        if r.request_id in keys or r.subject_ref in keys or r.chain in keys
    ]
    if not history:
        fail(f"no audit events for {escape(wanted)} (unknown id?)", EXIT_NOT_FOUND)
    history = ordered_history(history)
    if as_json:
        emit_json([{**r.model_dump(mode="json"), "app_id": app_id_of(r)} for r in history])
        return
    out = table(
        "app id", "time (UTC)", "seq", "actor", "action", "before -> after", "reason",
        title=f"Audit trail for {escape(wanted)}",
    )  # fmt: skip
    for r in history:
        change = f"{r.before or '-'} -> {r.after or '-'}" if (r.before or r.after) else "-"
        out.add_row(
            escape(app_id_of(r)),
            r.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(r.seq),
            escape(r.actor),
            escape(r.action),
            escape(change),
            escape(r.reason or "-"),
        )
    console.print(out)


_CHAIN_HELP = (
    "Only chains starting with this prefix, e.g. one deployment's app id ('privops/'); "
    "default: every chain on the topic."
)


def _break_dict(b: Break) -> dict[str, Any]:
    return {
        "audit_id": b.audit_id,
        "chain": b.chain,
        "seq": b.seq,
        "problem": b.problem,
        "detail": b.detail,
    }


def _describe(b: Break) -> str:
    where = f" (audit id {escape(b.audit_id)})" if b.audit_id else ""
    detail = f", {escape(b.detail)}" if b.detail else ""
    return f"chain {escape(b.chain)} at seq {b.seq}{where}: {b.problem}{detail}"


def _read_anchors(path: Path, ring: Keyring) -> Anchors:
    """The anchors in `path`: exit 2 if it is not an anchors file, 1 if it was changed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        fail(f"cannot read the anchors file {escape(str(path))}: {escape(str(exc))}")
    try:
        return load_anchors(text, ring)
    except AnchorsForged as exc:
        fail(f"{escape(str(path))}: {escape(str(exc))}", EXIT_FAILED)
    except AnchorsInvalid as exc:
        fail(f"{escape(str(path))}: {escape(str(exc))}")


def _print_verify(result: VerifyResult, log: AuditLog, anchored: str) -> None:
    console.print(f"checked {result.checked} audit record(s) on {AUDIT}", highlight=False)
    if anchored:
        console.print(anchored, highlight=False)
    if result.legacy:
        console.print(
            f"[yellow]note[/]: {result.legacy} unkeyed record(s) in "
            f"{len(result.legacy_chains)} chain(s), written before keyed hashes; plain "
            "SHA-256 does not show who wrote them (use anchors, or --require-keyed once "
            "every chain is keyed)",
            highlight=False,
        )
    if result.first_break is not None:
        console.print(f"[bold red]BROKEN[/] {_describe(result.first_break)}", highlight=False)
        if len(result.breaks) > 1:
            console.print(f"{len(result.breaks) - 1} further break(s)", highlight=False)
    for bad in log.unusable:
        console.print(
            f"[bold red]unusable record[/] partition {bad['partition']} offset "
            f"{bad['offset']}: {bad['problem']} ({escape(str(bad['detail']))})",
            highlight=False,
        )
    if result.ok and not log.unusable:
        console.print("[bold green]OK[/]: every chain is intact")


@app.command("verify")
def verify_cmd(
    as_json: Json = False,
    chain: str = typer.Option("", "--chain", help=_CHAIN_HELP),
    anchors_file: Path | None = typer.Option(
        None,
        "--anchors",
        help="Also check the topic against this file from `privops audit anchor`: a "
        "chain whose anchored head is gone or changed is a break (history rewritten).",
    ),
    require_keyed: bool = typer.Option(
        False,
        "--require-keyed",
        help="Count unkeyed records (key version 0, written before keyed hashes) as "
        "breaks: for a topic written only since.",
    ),
) -> None:
    """Walk every chain on privacy.audit; exit 1 and report the first break if any.

    Hashes are checked under the audit keyring; unkeyed records from before keyed hashes
    pass as legacy and are counted. With --anchors, the anchored heads must still be there.
    """
    ring, _ = audit_keyring()
    anchors = _read_anchors(anchors_file, ring) if anchors_file is not None else None
    if anchors is not None and chain and not any(c.startswith(chain) for c in anchors.chains):
        fail(
            f"--chain {chain!r}: the anchors file holds no chain under it, so nothing would be "
            "checked against it; use the prefix the file was made with",
            EXIT_BAD_INPUT,
        )
    log = read_audit()
    result = verify_log(log.partitions(chain), ring, allow_legacy=not require_keyed)
    if chain and not result.checked:
        fail(
            f"--chain {chain!r}: no chain on privacy.audit starts with it (a deployment's "
            "chains start with its app id and a '/', e.g. 'privops/')",
            EXIT_BAD_INPUT,
        )
    if anchors is not None:
        result = result.with_breaks(check_anchors(log.located(chain), anchors, chain))
    ok = result.ok and not log.unusable
    if as_json:
        emit_json(
            {
                "ok": ok,
                "checked": result.checked,
                "first_break": _break_dict(result.breaks[0]) if result.breaks else None,
                "breaks": [_break_dict(b) for b in result.breaks],
                "unusable": log.unusable,
                "legacy": {"records": result.legacy, "chains": list(result.legacy_chains)},
                "anchors": None
                if anchors is None
                else {
                    "file": str(anchors_file),
                    "created_at": anchors.created_at.isoformat(),
                    "chains": len(anchors.chains),
                },
            }
        )
    else:
        anchored = ""
        if anchors is not None:
            made = anchors.created_at.astimezone(UTC)
            anchored = (
                f"against {len(anchors.chains)} chain head(s) anchored in "
                f"{escape(str(anchors_file))} at {made:%Y-%m-%d %H:%M:%S} UTC"
            )
        _print_verify(result, log, anchored)
    if not ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("anchor")
def anchor_cmd(
    out: Path = typer.Option(
        ...,
        "--out",
        help="The anchors file to write; it must not exist yet. Keep it off the broker "
        "(write-once storage, another machine): it is the evidence a rewrite is checked "
        "against.",
    ),
    chain: str = typer.Option("", "--chain", help=_CHAIN_HELP),
    as_json: Json = False,
) -> None:
    """Write the head of every chain on privacy.audit, signed, to a file outside Kafka.

    The chains are verified first: a log with a break is not anchored (exit 1).
    """
    if out.exists():
        fail(f"{escape(str(out))} already exists: anchors are evidence, write a new file")
    ring, version = audit_keyring()
    log = read_audit()
    result = verify_log(log.partitions(chain), ring)
    if result.first_break is not None:
        fail(
            f"not anchoring a broken log: {_describe(result.first_break)} "
            "(see `privops audit verify`)",
            EXIT_FAILED,
        )
    if log.unusable:
        bad = log.unusable[0]
        fail(
            f"not anchoring a log with an unusable record (partition {bad['partition']} "
            f"offset {bad['offset']}: {bad['problem']})",
            EXIT_FAILED,
        )
    anchors = build_anchors(
        log.located(), topic=AUDIT, created_at=datetime.now(UTC), chain_prefix=chain
    )
    try:
        with out.open("x", encoding="utf-8") as fh:
            fh.write(dump_anchors(anchors, ring[version], version))
    except OSError as exc:
        fail(f"cannot write {escape(str(out))}: {escape(exc.strerror or str(exc))}")
    if as_json:
        emit_json(
            {
                "file": str(out),
                "created_at": anchors.created_at.isoformat(),
                "chains": len(anchors.chains),
                "checked": result.checked,
                "offsets": anchors.offsets,
                "key_version": version,
            }
        )
        return
    console.print(
        f"anchored {len(anchors.chains)} chain head(s) ({result.checked} record(s) verified) "
        f"in {escape(str(out))}, signed with audit key version {version}",
        highlight=False,
    )
