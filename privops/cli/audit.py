"""`privops audit show|verify|anchor|report`: read the hash-chained audit trail on
privacy.audit.

`show` prints one request's (or subject ref's) history; `verify` walks the whole topic,
partition by partition in log order, with the audit keyring, and reports the first break
of any chain; `anchor` writes every chain's head to a signed file outside Kafka, which
`verify --anchors` later checks the topic against (a rewritten topic shows there);
`report` counts how the rights requests of a period were handled (privops.core.audit_report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import typer
from rich.markup import escape

from privops.adapters.acls import DPO
from privops.adapters.kafka import Consumed, Span, client_options, scan
from privops.adapters.serde import Serde
from privops.adapters.signing_keys import read_signers, signing_key
from privops.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    Json,
    check_id,
    console,
    emit_json,
    err_console,
    fail,
    handled,
    parse_date,
    quiet_kafka_logs,
    run_async,
    settings,
    shown,
    uk_today,
)
from privops.core.audit import (
    Break,
    Keyring,
    LogVerifier,
    VerifyResult,
    keyring,
)
from privops.core.audit_anchor import (
    AnchorBuilder,
    AnchorCheck,
    Anchors,
    AnchorsForged,
    AnchorsInvalid,
    AnchorsUntrusted,
    dump_anchors,
    load_anchors,
)
from privops.core.audit_report import CLOSED_STATES, REFUSAL_FIGURES, ReportBuilder
from privops.core.audit_report import app_id_of as chain_app_id
from privops.core.errors import DecodeError, PrivopsError
from privops.core.identity import subject_ref
from privops.core.records import AuditEvent
from privops.core.signing import Signers
from privops.core.topics import AUDIT, AUDIT_RETENTION
from privops.tools.views import cell, table

app = typer.Typer(help="The tamper-evident audit trail (privacy.audit).", no_args_is_help=True)


Visit = Callable[[int, int, int, AuditEvent], None]
"""Called with (partition, offset, timestamp_ms, record) for each usable audit record."""

PROGRESS_EVERY: Final = 50_000


@dataclass
class AuditScan:
    """What a scan of the topic met besides usable records: each partition's span (its
    log start says what retention removed) and the records it could not use."""

    spans: list[Span] = field(default_factory=list)
    unusable: list[dict[str, Any]] = field(default_factory=list)

    @property
    def starts(self) -> dict[int, int]:
        return {span.partition: span.start for span in self.spans}

    @property
    def records(self) -> int:
        """How many records the topic held when read (none: a deployment that has
        written nothing yet, where any --chain matches nothing and that is no error)."""
        return sum(span.end - span.start for span in self.spans)


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


def scan_audit(visit: Visit) -> AuditScan:
    """Hand every audit record on the topic, decoded, to `visit`: partition by partition,
    each in log order, never holding more than a fetch (a ten-year topic does not fit in
    memory). Progress goes to stderr on a terminal."""
    cfg = settings()
    serde = Serde.for_settings(cfg)
    quiet_kafka_logs()
    found = AuditScan()
    with err_console.status(f"reading {AUDIT}") as status:
        read = 0

        def on_message(msg: Consumed) -> None:
            nonlocal read
            read += 1
            if read % PROGRESS_EVERY == 0:
                status.update(f"reading {AUDIT}: {read:,} record(s), partition {msg.partition}")
            event = _decoded(serde, msg)
            if isinstance(event, AuditEvent):
                visit(msg.partition, msg.offset, msg.timestamp_ms, event)
                return
            problem, detail = event
            found.unusable.append(
                {
                    "partition": msg.partition,
                    "offset": msg.offset,
                    "problem": problem,
                    "detail": detail,
                }
            )

        found.spans = run_async(
            lambda: scan(client_options(cfg, default=DPO), AUDIT, on_message, required=True)
        )
    return found


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
    return chain_app_id(record.chain)


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
            cfg = settings().require_secrets("pseudonym_key")
        # A record keeps the ref of the key current when it was written: the keys a
        # rotation replaced find the subject's older history (before, it was left out
        # without a word: review, session 43).
        for key in (cfg.pseudonym_key, *cfg.pseudonym_previous_keys):
            keys.add(subject_ref(key.encode(), wanted))
    history: list[AuditEvent] = []

    def keep(_partition: int, _offset: int, _timestamp: int, r: AuditEvent) -> None:
        if r.request_id in keys or r.subject_ref in keys or r.chain in keys:
            history.append(r)

    scan_audit(keep)
    if not history:
        fail(f"no audit events for {shown(wanted)} (unknown id?)", EXIT_NOT_FOUND)
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


ANCHOR_CLOCK_SKEW: Final = timedelta(minutes=5)


def _anchor_signers() -> Signers:
    """The signers file the worker trusts for commands: an anchors file is checked
    against the same DPO keys (exit 2 when it is missing or cannot be read)."""
    path = settings().signers_file
    if not path.exists():
        fail(
            f"no signers file at {escape(str(path))} (PRIVOPS_SIGNERS_FILE): anchors are "
            "checked against the DPO keys the workers trust; use the workers' file"
        )
    with handled():
        return read_signers(path)


def _read_anchors(
    path: Path, ring: Keyring, *, accept_legacy: bool = False, accept_revoked: bool = False
) -> Anchors:
    """The anchors in `path`: exit 2 if it is not an anchors file (or not one of this
    topic), 1 if it was changed or claims to be made in the future."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        fail(f"cannot read the anchors file {escape(str(path))}: {escape(str(exc))}")
    try:
        anchors = load_anchors(
            text,
            ring,
            _anchor_signers(),
            accept_legacy=accept_legacy,
            accept_revoked=accept_revoked,
        )
    except AnchorsForged as exc:
        fail(f"{escape(str(path))}: {escape(str(exc))}", EXIT_FAILED)
    except AnchorsUntrusted as exc:  # a question of trust, asked with a flag: not a break
        fail(f"{escape(str(path))}: {escape(str(exc))}")
    except AnchorsInvalid as exc:
        fail(f"{escape(str(path))}: {escape(str(exc))}")
    if anchors.topic != AUDIT:
        fail(f"{escape(str(path))} anchors the topic {escape(anchors.topic)!r}, not {AUDIT}")
    if anchors.created_at > datetime.now(UTC) + ANCHOR_CLOCK_SKEW:
        fail(
            f"{escape(str(path))} says it was made at {anchors.created_at.isoformat()}, in the "
            "future: made on a machine whose clock is wrong, or forged; it proves nothing",
            EXIT_FAILED,
        )
    return anchors


@dataclass
class _Verified:
    """One verify's findings, for the report."""

    result: VerifyResult
    scanned: AuditScan
    aged_out: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result.ok and not self.scanned.unusable


def _print_verify(found: _Verified, anchored: str) -> None:
    result, scanned = found.result, found.scanned
    console.print(f"checked {result.checked} audit record(s) on {AUDIT}", highlight=False)
    if anchored:
        console.print(anchored, highlight=False)
    for span in scanned.spans:
        if span.start > 0:
            console.print(
                f"[yellow]note[/]: partition {span.partition} starts at offset {span.start}: "
                "the records before it are gone (retention)",
                highlight=False,
            )
    if result.truncated:
        console.print(
            f"[yellow]note[/]: {len(result.truncated)} chain(s) began before their "
            "partition's start and are checked from their first record present",
            highlight=False,
        )
    if found.aged_out:
        console.print(
            f"[yellow]note[/]: {len(found.aged_out)} anchored head(s) are older than the "
            f"topic's retention ({AUDIT_RETENTION.days} days) and gone with it",
            highlight=False,
        )
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
    for bad in scanned.unusable:
        console.print(
            f"[bold red]unusable record[/] partition {bad['partition']} offset "
            f"{bad['offset']}: {bad['problem']} ({escape(str(bad['detail']))})",
            highlight=False,
        )
    if found.ok and not scanned.records:
        # Not "every chain is intact": nothing was read to say so (review, session 32).
        console.print(
            f"[yellow]nothing to check[/]: {AUDIT} holds no record (none written yet, or "
            "every one past the topic's retention)"
        )
    elif found.ok:
        console.print("[bold green]OK[/]: every chain is intact")


def _verify_json(found: _Verified, anchors: Anchors | None, anchors_file: Path | None) -> Any:
    result = found.result
    return {
        "ok": found.ok,
        "checked": result.checked,
        "first_break": _break_dict(result.breaks[0]) if result.breaks else None,
        "breaks": [_break_dict(b) for b in result.breaks],
        "unusable": found.scanned.unusable,
        "legacy": {"records": result.legacy, "chains": list(result.legacy_chains)},
        "retention": {
            "partition_starts": {
                str(span.partition): span.start for span in found.scanned.spans if span.start
            },
            "truncated_chains": list(result.truncated),
            "aged_out_anchors": found.aged_out,
        },
        "anchors": None
        if anchors is None
        else {
            "file": str(anchors_file),
            "created_at": anchors.created_at.isoformat(),
            "chains": len(anchors.chains),
            "signed_by": anchors.signed_by,
            "legacy_signature": anchors.legacy,
        },
    }


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
    accept_legacy: bool = typer.Option(
        False,
        "--accept-legacy-anchors",
        help="Also take an anchors file of privops before 0.33, signed with the audit key "
        "(which every worker holds): only for one kept where no worker could replace it.",
    ),
    accept_revoked: bool = typer.Option(
        False,
        "--accept-revoked-signer",
        help="Also take an anchors file signed by a DPO key revoked since (its owner left): "
        "only for one whose storage dates it before the revocation.",
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
    pass as legacy and are counted. With --anchors, the anchored heads must still be there
    (a head older than the topic's ten-year retention may be gone with it). The topic is
    read a partition at a time: memory grows with the number of chains, not of records.
    """
    ring, _ = audit_keyring()
    anchors = (
        _read_anchors(
            anchors_file, ring, accept_legacy=accept_legacy, accept_revoked=accept_revoked
        )
        if anchors_file is not None
        else None
    )
    if anchors is not None and chain and not any(c.startswith(chain) for c in anchors.chains):
        fail(
            f"--chain {chain!r}: the anchors file holds no chain under it, so nothing would be "
            "checked against it; use the prefix the file was made with",
            EXIT_BAD_INPUT,
        )
    walker = LogVerifier(ring, allow_legacy=not require_keyed)
    check = AnchorCheck(anchors, chain) if anchors is not None else None

    def visit(partition: int, offset: int, _timestamp: int, record: AuditEvent) -> None:
        if record.chain.startswith(chain):
            walker.add(partition, record)
        if check is not None:
            check.add(partition, offset, record)

    scanned = scan_audit(visit)
    found = _Verified(walker.result(scanned.starts), scanned)
    if chain and not found.result.checked and scanned.records:
        fail(
            f"--chain {chain!r}: no chain on privacy.audit starts with it (a deployment's "
            "chains start with its app id and a '/', e.g. 'privops/')",
            EXIT_BAD_INPUT,
        )
    if check is not None:
        more, found.aged_out = check.breaks(
            scanned.starts, now=datetime.now(UTC), retention=AUDIT_RETENTION
        )
        found.result = found.result.with_breaks(more)
    if as_json:
        emit_json(_verify_json(found, anchors, anchors_file))
    else:
        anchored = ""
        if anchors is not None:
            made = anchors.created_at.astimezone(UTC)
            anchored = (
                f"against {len(anchors.chains)} chain head(s) anchored in "
                f"{escape(str(anchors_file))} at {made:%Y-%m-%d %H:%M:%S} UTC, signed by "
                f"{escape(anchors.signed_by or '?')}"
            )
            if anchors.legacy:
                anchored += (
                    "\n[yellow]note[/]: signed with the audit key, which the workers hold too: "
                    "it shows the topic as it was only if the file was kept where no worker "
                    "could replace it; `privops audit anchor` now signs with the DPO's key"
                )
        _print_verify(found, anchored)
    if not found.ok:
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
    cfg = settings()
    with handled():
        signer = signing_key(cfg, cfg.actor, say=lambda m: err_console.print(m, highlight=False))
    trusted = _anchor_signers().root.get(signer.key_id)
    if trusted is None or trusted.revoked_at is not None:
        state = "revoked in" if trusted is not None else "not in"
        fail(
            f"{escape(cfg.actor)}'s signing key {signer.key_id} is {state} the signers file "
            f"{escape(str(cfg.signers_file))}: an anchors file it signed would not verify "
            "(`privops keys generate` makes a key and trusts it)"
        )
    walker = LogVerifier(ring)
    builder = AnchorBuilder(chain)

    def visit(partition: int, offset: int, timestamp: int, record: AuditEvent) -> None:
        if record.chain.startswith(chain):
            walker.add(partition, record)
        builder.add(partition, offset, record, timestamp)

    scanned = scan_audit(visit)
    result = walker.result(scanned.starts)
    if result.first_break is not None:
        fail(
            f"not anchoring a broken log: {_describe(result.first_break)} "
            "(see `privops audit verify`)",
            EXIT_FAILED,
        )
    if scanned.unusable:
        bad = scanned.unusable[0]
        fail(
            f"not anchoring a log with an unusable record (partition {bad['partition']} "
            f"offset {bad['offset']}: {bad['problem']})",
            EXIT_FAILED,
        )
    for span in scanned.spans:
        builder.reached(span.partition, span.end)
    anchors = builder.build(topic=AUDIT, created_at=datetime.now(UTC))
    try:
        with out.open("x", encoding="utf-8") as fh:
            fh.write(dump_anchors(anchors, signer, version))
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
                "signer": signer.key_id,
            }
        )
        return
    console.print(
        f"anchored {len(anchors.chains)} chain head(s) ({result.checked} record(s) verified) "
        f"in {escape(str(out))}, signed by {escape(cfg.actor)} (key {signer.key_id}; "
        f"audit key version {version})",
        highlight=False,
    )


_REPORT_ROWS: Final = (
    ("received", "received"),
    ("closed", "closed"),
    ("open", "still open"),
    *((state, state.replace("_", " ")) for state in CLOSED_STATES),
    *(
        (name, "  refused: " + name.removeprefix("refused_").replace("_", " "))
        for name in REFUSAL_FIGURES
    ),
    ("late", "late (deadline breached)"),
    ("extended", "extended"),
    ("withheld_for_review", "access: left for the DPO's review"),
    ("waited_for_response", "erasure: waited for their response"),
    ("released_by_dpo", "  released by the DPO"),
)


@app.command("report")
def report_cmd(
    start: str | None = typer.Option(
        None, "--from", help="First day, YYYY-MM-DD (default: a year before --to)."
    ),
    end: str | None = typer.Option(
        None,
        "--to",
        help="Last day, YYYY-MM-DD (default: today; a later day reports the period so far).",
    ),
    chain: str | None = typer.Option(
        None,
        "--chain",
        help="Only chains starting with this prefix (default: this deployment's, "
        "PRIVOPS_APP_ID and a '/'; '' for every deployment on the topic).",
    ),
    as_json: Json = False,
) -> None:
    """How rights requests were handled in a period (Art. 5(2) accountability): received,
    closed and how, late, extended and days to close, per type, from the audit trail.

    A request counts in the period it was received, with whatever happened to it since.
    "Late" is a breached deadline (the legal clock's, alerted by the worker); days to
    close run from the day received to the day closed. The follow-up erasures privops
    issues itself are counted apart. No personal data: counts, types, states and days.
    It does not check the chains (`privops audit verify --anchors` does); a record it
    cannot read is counted, and makes it exit 1 after the figures.
    """
    # A period not over yet (this year, asked in December) is reported so far: the
    # records of days to come are not on the topic yet (review, session 32).
    last = parse_date(end, "--to", allow_future=True) if end is not None else uk_today()
    first = parse_date(start, "--from") if start is not None else _year_before(last)
    if first > last:
        fail(f"--from {first} is after --to {last}", EXIT_BAD_INPUT)
    if last > uk_today():
        err_console.print(f"the period is not over: reported up to today ({uk_today()})")
    prefix = f"{settings().app_id}/" if chain is None else chain
    builder = ReportBuilder(first, last, prefix)
    scanned = scan_audit(lambda _p, _o, _t, record: builder.add(record))
    report = {**builder.report(), "chain_prefix": prefix, "unusable": len(scanned.unusable)}
    if as_json:
        emit_json(report)
    else:
        _print_report(report, first, last)
    if not report["app_ids"] and report["other_app_ids"]:
        err_console.print(
            f"nothing under {escape(prefix)}: the topic holds requests of "
            f"{escape(', '.join(report['other_app_ids']))} (is PRIVOPS_APP_ID the workers'? "
            "--chain APP_ID/ chooses one)"
        )
    if scanned.unusable:
        err_console.print(
            f"[red]{len(scanned.unusable)} record(s) on {AUDIT} could not be read[/]: the "
            "figures may be short; `privops audit verify` names them"
        )
        raise typer.Exit(EXIT_FAILED)


def _print_report(report: dict[str, Any], first: date, last: date) -> None:
    kinds = [row["request_type"] for row in report["by_type"]]
    columns = [report["total"], *report["by_type"]]
    out = table(
        "", "all", *(escape(k.replace("_", " ")) for k in kinds),
        title=f"Rights requests received {first} to {last}",
    )  # fmt: skip
    for key, label in _REPORT_ROWS:
        out.add_row(label, *(str(c[key]) for c in columns))
    for key in ("median", "p90", "max"):
        out.add_row(
            f"days to close ({key})",
            *(cell(c["days_to_close"][key]) for c in columns),
        )
    console.print(out)
    console.print(f"Follow-up erasures privops issued: {report['followup_erasures']}")
    if report["withheld_requests"]:
        listed = ", ".join(report["withheld_requests"])
        console.print(f"Access responses left for the DPO's review: {escape(listed)}")
    if report["unmapped_requests"]:
        listed = ", ".join(report["unmapped_requests"])
        console.print(
            "Access responses that told a category the data map does not list for its "
            f"system (update the data map): {escape(listed)}"
        )
    deployments = ", ".join(report["app_ids"]) or "none"
    console.print(
        f"[dim]chains {escape(report['chain_prefix'] or '(all)')}*; deployments: "
        f"{escape(deployments)}[/]"
    )


def _year_before(day: date) -> date:
    """The day after the same date a year earlier (29 February: 1 March; year 1: its
    first day, the calendar has none before)."""
    if day.year == date.min.year:
        return date.min
    try:
        return day.replace(year=day.year - 1) + timedelta(days=1)
    except ValueError:
        return date(day.year - 1, 3, 1)
