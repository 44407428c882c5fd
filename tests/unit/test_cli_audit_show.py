"""`privops audit show`: chains of different app ids never interleave into one sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from privops.cli.audit import app_id_of, ordered_history
from privops.core.records import AuditEvent

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def event(chain: str, seq: int, minutes: int) -> AuditEvent:
    return AuditEvent(
        audit_id=f"{chain}-{seq}",
        chain=chain,
        seq=seq,
        request_id="REQ-1",
        actor="privops",
        action="command_rejected",
        occurred_at=T0 + timedelta(minutes=minutes),
        prev_hash="0" * 64,
        hash="1" * 64,
    )


def test_app_id_is_the_chain_namespace() -> None:
    assert app_id_of(event("privops-demo/REQ-1", 1, 0)) == "privops-demo"
    assert app_id_of(event("REQ-1", 1, 0)) == "-"


def test_the_same_request_in_three_deployments_reads_as_three_sequences() -> None:
    # One rejection audited by three workers of different app ids, interleaved in time:
    # the issue saw seq 1,2,1,2,1,2 with nothing telling the chains apart.
    records = [
        event(f"{app}/REQ-1", seq, minutes=2 * seq + offset)
        for seq in (1, 2)
        for offset, app in enumerate(("privops", "privops-demo", "privops-test"))
    ]
    shown = ordered_history(records)
    assert [(app_id_of(r), r.seq) for r in shown] == [
        ("privops", 1),
        ("privops", 2),
        ("privops-demo", 1),
        ("privops-demo", 2),
        ("privops-test", 1),
        ("privops-test", 2),
    ]
