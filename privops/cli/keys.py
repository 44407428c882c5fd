"""`privops keys generate|list|revoke`: the DPO signing keys (DESIGN.md section 8), and
`privops keys kek show|create|rotate|retire`: the key-encryption key (crypto-shredding).

A DPO's private key stays in a 0600 file on their machine; its public half goes into the
signers file the worker trusts (PRIVOPS_SIGNERS_FILE). The worker looks at that file
before every command and re-reads it when it has changed, so a new key or a revocation
is in force for the next command, with no restart. On another machine than the worker's,
copy the signers file (it holds only public keys) to the worker's PRIVOPS_SIGNERS_FILE.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from privops.adapters import kek as kekfile
from privops.adapters import signing_keys
from privops.adapters.acls import WORKER
from privops.adapters.kafka import client_options
from privops.adapters.key_topic import KeyRecordCodec, read_keys
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings
from privops.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    Json,
    console,
    emit_json,
    fail,
    handled,
    quiet_kafka_logs,
    run_async,
    settings,
)
from privops.core.signing import KEY_ID_LENGTH, SignerKey
from privops.core.topics import SUBJECT_KEYS
from privops.tools.views import table

app = typer.Typer(
    help="DPO signing keys (every command is signed), and the key-encryption key (`kek`).",
    no_args_is_help=True,
)
kek_app = typer.Typer(
    help="The key-encryption key (KEK) that wraps every subject's data key on "
    f"{SUBJECT_KEYS} (PRIVOPS_KEK_FILE). Never prints the key itself.",
    no_args_is_help=True,
)
app.add_typer(kek_app, name="kek")

Owner = Annotated[
    str,
    typer.Option(
        "--owner", help="Whose key: a principal name (e.g. dpo), what the audit names as actor."
    ),
]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="Where to write the private key (default: the owner's key file under "
        "$PRIVOPS_HOME/keys, or PRIVOPS_SIGNING_KEY_FILE for the configured actor).",
    ),
]
KeyId = Annotated[str, typer.Argument(help=f"The key id ({KEY_ID_LENGTH} hex digits).")]


def _row(kid: str, entry: SignerKey) -> dict[str, Any]:
    return {
        "key_id": kid,
        "owner": entry.owner,
        "created_at": entry.created_at.isoformat(),
        "revoked_at": entry.revoked_at.isoformat() if entry.revoked_at else None,
    }


@app.command()
def generate(owner: Owner, key_file: KeyFile = None, as_json: Json = False) -> None:
    """Create a signing key for OWNER (private file 0600, never overwritten) and trust it."""
    cfg = settings()
    with handled():
        key, path = signing_keys.generate(cfg, owner.strip(), key_file)
    if as_json:
        emit_json(
            {
                "key_id": key.key_id,
                "owner": owner.strip(),
                "key_file": str(path),
                "signers_file": str(cfg.signers_file),
            }
        )
        return
    console.print(
        f"[dim]•[/] key {key.key_id} for {escape(owner.strip())}: private key in "
        f"{escape(str(path))} (keep it to yourself), public key trusted in "
        f"{escape(str(cfg.signers_file))}",
        highlight=False,
    )


@app.command("list")
def list_keys(as_json: Json = False) -> None:
    """The keys the worker trusts (or trusted: revoked ones stay listed)."""
    cfg = settings()
    with handled():
        signers = signing_keys.read_signers(cfg.signers_file)
    rows = [_row(kid, entry) for kid, entry in sorted(signers.root.items())]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print(f"no keys in {escape(str(cfg.signers_file))}", highlight=False)
        return
    out = table("key id", "owner", "created", "revoked", title=str(cfg.signers_file))
    for row in rows:
        out.add_row(
            row["key_id"], escape(row["owner"]), row["created_at"], row["revoked_at"] or "-"
        )
    console.print(out)


@app.command()
def revoke(key_id: KeyId, as_json: Json = False) -> None:
    """Stop trusting KEY_ID: the worker rejects its commands from the next one on."""
    kid = key_id.strip().lower()
    if len(kid) != KEY_ID_LENGTH or any(c not in "0123456789abcdef" for c in kid):
        fail(f"invalid key id '{escape(key_id)}': {KEY_ID_LENGTH} hex digits (see `keys list`)")
    cfg = settings()
    with handled():
        try:
            entry = signing_keys.revoke(cfg, kid)
        except signing_keys.UnknownKey as exc:
            fail(escape(str(exc)), EXIT_NOT_FOUND)
    if as_json:
        emit_json(_row(kid, entry))
        return
    console.print(
        f"[dim]•[/] key {kid} of {escape(entry.owner)} revoked at "
        f"{entry.revoked_at.isoformat() if entry.revoked_at else '-'}",
        highlight=False,
    )


# --- the key-encryption key -------------------------------------------------------------------

Stored = Annotated[
    bool,
    typer.Option(
        "--stored",
        help=f"Also count the keys on {SUBJECT_KEYS} wrapped under each version (reads the "
        "topic as the worker's principal).",
    ),
]
Version = Annotated[int, typer.Argument(min=1, help="The KEK version to drop (see `kek show`).")]


def _kek_file(cfg: Settings) -> kekfile.KekFile:
    with handled():
        try:
            return kekfile.load(cfg.kek_file)
        except FileNotFoundError:
            fail(  # set-up to do, as every command's missing file (review, session 35)
                f"no KEK file at {escape(str(cfg.kek_file))}: create one with "
                "`privops keys kek create` (or set PRIVOPS_KEK_FILE)",
                EXIT_BAD_INPUT,
            )
    raise AssertionError("unreachable")


def _stored_versions(cfg: Settings) -> Counter[int]:
    """How many stored keys each KEK version wraps, from the topic as it is now."""
    quiet_kafka_logs()
    codec = KeyRecordCodec(Serde.for_settings(cfg))
    keys = run_async(lambda: read_keys(client_options(cfg, WORKER), codec))
    return Counter(record.kek_version for record in keys.values())


def _versions(kek: kekfile.KekFile, stored: Counter[int] | None) -> list[dict[str, Any]]:
    return [
        {
            "version": number,
            "current": number == kek.current_version,
            "created_at": kek.created[number].isoformat(),
            **({"stored_keys": stored.get(number, 0)} if stored is not None else {}),
        }
        for number in sorted(kek.keys)
    ]


@kek_app.command("show")
def kek_show(stored: Stored = False, as_json: Json = False) -> None:
    """The KEK file's versions and which one wraps new keys (never the key bytes)."""
    cfg = settings()
    kek = _kek_file(cfg)
    counts = _stored_versions(cfg) if stored else None
    rows = _versions(kek, counts)
    if counts is not None:
        unknown = sorted(set(counts) - set(kek.keys))
        if unknown:  # keys no version here opens: another KEK file, or a retired version
            rows += [{"version": n, "missing": True, "stored_keys": counts[n]} for n in unknown]
    if as_json:
        emit_json({"file": str(kek.path), "development": kek.dev, "versions": rows})
        return
    out = table("version", "current", "created", "stored keys", title=str(kek.path))
    for row in rows:
        out.add_row(
            str(row["version"]),
            "yes" if row.get("current") else ("MISSING" if row.get("missing") else ""),
            row.get("created_at", "-"),
            str(row["stored_keys"]) if "stored_keys" in row else "-",
        )
    console.print(out)
    if kek.dev:
        console.print("[yellow]a development KEK: PRIVOPS_ENV=prod refuses it[/]")


@kek_app.command("create")
def kek_create(as_json: Json = False) -> None:
    """Create the KEK file (0600, version 1) where there is none; back it up: a stored key
    wrapped under a lost KEK is data lost. Never overwrites one."""
    cfg = settings()
    with handled():
        try:
            kek = kekfile.create(cfg.kek_file, datetime.now(UTC))
        except kekfile.KekExists as exc:
            fail(escape(str(exc)), EXIT_BAD_INPUT)  # as an existing file elsewhere
    if as_json:
        emit_json({"file": str(kek.path), "versions": _versions(kek, None)})
        return
    console.print(
        f"[dim]•[/] KEK version 1 created in {escape(str(kek.path))}: back it up, and give "
        "the same file to every worker and connector",
        highlight=False,
    )


@kek_app.command("rotate")
def kek_rotate(as_json: Json = False) -> None:
    """Add a KEK version and make it current. Workers wrap new keys under it at once and
    re-wrap the stored ones within a minute; retire the old version after that."""
    cfg = settings()
    _kek_file(cfg)
    with handled():
        kek = kekfile.rotate(cfg.kek_file, datetime.now(UTC))
    if as_json:
        emit_json({"file": str(kek.path), "versions": _versions(kek, None)})
        return
    console.print(
        f"[dim]•[/] KEK version {kek.current_version} is current in {escape(str(kek.path))}. "
        "Copy the file to every worker and connector; once `privops keys kek show --stored` "
        f"shows no key under an older version, `privops keys kek retire` it.",
        highlight=False,
    )


@kek_app.command("retire")
def kek_retire(version: Version, as_json: Json = False) -> None:
    """Drop VERSION from the KEK file, once no stored key is wrapped under it: copies of
    wrapped keys left in old segments or backups then no longer open."""
    cfg = settings()
    kek = _kek_file(cfg)
    if version not in kek.keys:
        fail(
            f"KEK version {version} is not in {escape(str(kek.path))} (kept: {sorted(kek.keys)})",
            EXIT_NOT_FOUND,  # an unknown thing, as `keys revoke` of an unknown key
        )
    if version == kek.current_version:
        fail(f"KEK version {version} is current: rotate first (`privops keys kek rotate`)")
    left = _stored_versions(cfg).get(version, 0)
    if left:
        fail(
            f"{left} stored key(s) on {SUBJECT_KEYS} are still wrapped under KEK version "
            f"{version}: retiring it would lose them. Wait for the workers to re-wrap them "
            "(`privops keys kek show --stored`)",
            EXIT_FAILED,
        )
    with handled():
        kek = kekfile.retire(cfg.kek_file, version)
    if as_json:
        emit_json({"file": str(kek.path), "versions": _versions(kek, None)})
        return
    console.print(f"[dim]•[/] KEK version {version} retired", highlight=False)
