"""`privops request ...`: the DPO submits rights requests and follows them up.

Every verb publishes one command (two for a complaint with a linked restriction) to
`privacy.commands`, keyed by the request id, prints the request id as the first line of
output so a script can capture it, and waits for the worker's answer on
`privacy.command-results`: exit 0 accepted, 1 rejected, 4 unknown request or subject,
3 no answer within --wait seconds (`--no-wait` only publishes). `status` and `list` ask
the worker over HTTP.

Submission verbs are in `submit`, follow-ups in `follow_up`, legal holds in `holds`,
status in `status`, the open requests in `caseload`; publishing and waiting in `publish`
(the answer read by `reader`, judged by `answers`); the input checks they share are in
`privops.cli.common`.
"""

from __future__ import annotations

import typer

# parse_date and check_id are re-exported: privops.cli.dsar still imports them from here.
from privops.cli.common import check_id, parse_date
from privops.cli.request import caseload, follow_up, holds, status, submit

__all__ = ["app", "check_id", "parse_date"]

app = typer.Typer(
    help=(
        "Submit rights requests (erasure, restriction, lift, rectification, objection, "
        "access, portability, consent withdrawal, complaint), follow them up, place and "
        "release legal holds, and list and show them."
    ),
    no_args_is_help=True,
)
for _name, _verb in (*submit.VERBS, *follow_up.VERBS, ("status", status.status)):
    app.command(_name)(_verb)
app.command("list")(caseload.list_requests)
app.add_typer(holds.app, name="hold")
