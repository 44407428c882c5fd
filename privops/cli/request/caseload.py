"""`privops request list`: the DPO's open requests across every worker, due first.

The worker asked gathers every worker's open requests (``GET /requests``; each answers
for the partitions it owns, from its schedule) and answers only when every partition
did, so the list never silently misses a request; while partitions move it answers 503,
retried here for a few seconds, then exit 3. Entries carry the pseudonymous subject
reference; `privops request status ID` shows the rest.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import typer
from rich.markup import escape

from privops.cli.common import EXIT_UNAVAILABLE, Json, console, emit_json, fail
from privops.cli.request.status import AWAITING_REVIEW, days_left_cell
from privops.cli.worker_http import answer_json, worker_request, worker_url
from privops.core.caseload import DEFAULT_LIMIT, MAX_DUE_WITHIN, MAX_LIMIT
from privops.core.vocab import RequestType
from privops.tools.views import cell, table

DueWithin = Annotated[
    int | None,
    typer.Option(
        "--due-within",
        min=0,
        max=MAX_DUE_WITHIN,
        help="Only requests due within DAYS days, overdue ones included (0: due today or "
        "overdue). A request whose clock is not running (identity, or a representative's "
        "authority, not shown; a clarification awaited) has no due date and is left out.",
    ),
]
OfType = Annotated[
    RequestType | None,
    typer.Option("--type", case_sensitive=False, help="Only requests of this type."),
]
ANSWER_SECONDS: Final = 15.0
"""How long the worker's answer may take: longer than it gathers the parts for
(agents.http.GATHER_SECONDS), so a worker that hangs is its 503, retried, not a timeout."""

Limit = Annotated[
    int,
    typer.Option("--limit", min=1, max=MAX_LIMIT, help="Show at most this many (due first)."),
]


def list_requests(
    due_within: DueWithin = None,
    request_type: OfType = None,
    limit: Limit = DEFAULT_LIMIT,
    as_json: Json = False,
) -> None:
    """The open requests of every worker, what is due first: type, state, due date, days
    left and the systems still to answer."""
    params = {"limit": str(limit)}
    if due_within is not None:
        params["due_within"] = str(due_within)
    if request_type is not None:
        params["type"] = request_type.value
    body = answer_json(
        worker_request("GET", "/requests", params=params, patient=True, timeout=ANSWER_SECONDS),
        no_route=f"the privops worker at {worker_url('')} does not list requests: it is "
        "older than this CLI; upgrade it",
    )
    listed = body.get("requests")
    whole = "workers" in body and "total" in body
    if not isinstance(listed, list) or not whole or not all(isinstance(r, dict) for r in listed):
        # One worker's part (or anything else) is no list: it may miss requests.
        fail(
            f"the worker at {worker_url('')} did not answer with the whole list "
            f"({escape(str(sorted(body))[:200])}); is it the privops worker?",
            EXIT_UNAVAILABLE,
        )
    if as_json:
        emit_json(body)
        return
    render(listed, body, filtered=due_within is not None or request_type is not None)


def _waiting_on(row: dict[str, Any]) -> str:
    """The systems a request waits for ("response ID" for each response an erasure waits
    for: ``privops.core.response_first``); a response held for review waits for the DPO."""
    if row.get("state") == AWAITING_REVIEW:
        return "your review"
    return ", ".join(cell(s) for s in row.get("waiting_on") or []) or "-"


def render(listed: list[dict[str, Any]], body: dict[str, Any], *, filtered: bool) -> None:
    total = body.get("total", len(listed))
    if not listed:
        console.print("no open requests" + (" match" if filtered else ""))
        return
    out = table(
        "request", "type", "state", "due", "days left", "waiting on", "subject ref",
        title=f"Open requests ({len(listed)} of {total}, due first)",
    )  # fmt: skip
    for row in listed:
        out.add_row(
            cell(row.get("request_id")),
            cell(row.get("request_type")),
            cell(row.get("state")),
            cell(row.get("due_on"), "no clock"),
            days_left_cell(row.get("days_left")),
            _waiting_on(row),
            cell(row.get("subject_ref")),
        )
    console.print(out)
    if any(row.get("state") == AWAITING_REVIEW for row in listed):
        console.print(
            "[dim]awaiting_review: `privops request status ID` shows the copies to review "
            "or send on, then `privops request redact` / `approve`[/]"
        )
    if isinstance(total, int) and total > len(listed):
        console.print(f"[dim]{total - len(listed)} more: raise --limit or narrow the list[/]")
