"""HTTP on the worker: /health, /consent/{subject_id}, /requests/{request_id}.

Reads the consent and requests tables (local to this worker). /metrics is served by
faust's Prometheus sensor with privops' registry (streams.app).
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from agents.requests import clock, schedule
from privops.core import consent as rules
from privops.core import deadlines
from privops.core.vocab import Channel, Purpose
from privops.core.workflow import RequestRecord
from streams.app import app
from streams.audit import ref
from streams.tables import consent, requests


@app.page("/health")
async def health(self: View, request: Request) -> Response:
    ready = app.tables.recovery.completed.is_set()
    body = {"status": "ok" if ready else "recovering", "open_requests": len(schedule)}
    return self.json(body, status=200 if ready else 503)


@app.page("/consent/{subject_id}")
async def consent_view(self: View, request: Request, subject_id: str) -> Response:
    raw = consent.get(subject_id)
    if raw is None:
        return self.json({"error": "unknown subject", "subject_id": subject_id}, status=404)
    state = rules.SubjectConsent.model_validate(raw)
    purpose, channel = request.query.get("purpose"), request.query.get("channel")
    if not purpose and not channel:
        return self.json(_state_json(state))
    try:
        p, c = Purpose(purpose or "marketing"), Channel(channel or "")
    except ValueError:
        return self.json(
            {
                "error": "bad query",
                "purposes": [p.value for p in Purpose],
                "channels": [c.value for c in Channel],
            },
            status=400,
        )
    decision = rules.decide(state, p, c)
    return self.json(
        {
            "subject_id": subject_id,
            "purpose": p.value,
            "channel": c.value,
            "allowed": decision.allowed,
            "rule": decision.rule.value,
            "reason": decision.reason,
            "evidence": decision.evidence.model_dump(mode="json") if decision.evidence else None,
        }
    )


def _state_json(state: rules.SubjectConsent) -> dict[str, Any]:
    return {
        "subject_id": state.subject_id,
        "restricted": state.restricted,
        "suppressed": state.suppressed,
        "marketing_objection": state.objection is not None,
        "tps_listed": state.tps_listed,
        "preferences": {k: e.model_dump(mode="json") for k, e in sorted(state.entries.items())},
        "decisions": {
            f"{p.value}:{c.value}": rules.decide(state, p, c).allowed
            for p in (Purpose.marketing,)
            for c in Channel
        },
    }


@app.page("/requests/{request_id}")
async def request_view(self: View, request: Request, request_id: str) -> Response:
    raw = requests.get(request_id)
    if raw is None:
        return self.json({"error": "unknown request", "request_id": request_id}, status=404)
    return self.json(request_json(RequestRecord.model_validate(raw)))


def request_json(rec: RequestRecord) -> dict[str, Any]:
    today = clock.today()
    return {
        "request_id": rec.request_id,
        "request_type": rec.request_type.value,
        "subject_ref": ref(rec.subject_id),
        "state": rec.state.value,
        "received_on": rec.received_on.isoformat(),
        "clock_start": rec.clock_start.isoformat() if rec.clock_start else None,
        "due_on": rec.due_on.isoformat() if rec.due_on else None,
        "days_left": deadlines.days_left(rec.due_on, today) if rec.due_on else None,
        "paused_days": rec.paused_days,
        "extended": rec.extended,
        "extension_reason": rec.extension_reason,
        "reason": rec.reason,
        "linked_request_id": rec.linked_request_id,
        "tasks": [
            {
                "task_id": t.task_id,
                "system": t.system.value,
                "action": t.action.value,
                "state": t.state.value,
                "attempts": t.attempts,
                "categories": [c.value for c in t.categories],
                "keep": [k.model_dump(mode="json") for k in t.keep],
                "answered_at": t.answered_at.isoformat() if t.answered_at else None,
                "outcome_reason": t.outcome_reason,
                "export": t.export.model_dump(mode="json") if t.export else None,
            }
            for t in rec.tasks.values()
        ],
        "retained": [k.model_dump(mode="json") for k in rec.kept],
        "followups": [f.model_dump(mode="json") for f in rec.followups],
        "manifest": rec.manifest,
        "history": [h.model_dump(mode="json") for h in rec.history],
    }
