"""`privops keys generate|list|revoke`: the DPO signing keys (DESIGN.md section 8).

A DPO's private key stays in a 0600 file on their machine; its public half goes into the
signers file the worker trusts (PRIVOPS_SIGNERS_FILE). The worker looks at that file
before every command and re-reads it when it has changed, so a new key or a revocation
is in force for the next command, with no restart. On another machine than the worker's,
copy the signers file (it holds only public keys) to the worker's PRIVOPS_SIGNERS_FILE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from privops.adapters import signing_keys
from privops.cli.common import EXIT_NOT_FOUND, Json, console, emit_json, fail, handled, settings
from privops.core.signing import KEY_ID_LENGTH, SignerKey
from privops.tools.views import table

app = typer.Typer(help="DPO signing keys: every command is signed.", no_args_is_help=True)

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
