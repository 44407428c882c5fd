"""A fee needs its ground (UK GDPR Art. 12(5)(a), 15(3)): an ordinary request is free.

Before, `FeeReceived` carried no ground and any request could be given a fee, which
moved an ordinary first access request's due date by the weeks until it was "paid"
(review, session 27)."""

from __future__ import annotations

import io
from datetime import date

import fastavro
import pytest

from privops import contract
from privops.adapters.avro import Codec, load_versions
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.vocab import FeeGround, RequestType
from tests.unit.test_timelimits import D, apply, command, ctx_on, submit
from tests.unit.test_timelimits import dm as dm  # the data map fixture


def waiting_for_id(dm: DataMap, kind: RequestType = RequestType.access) -> wf.RequestRecord:
    """A request received 1 July whose identity is still to be verified: no work out yet."""
    return apply(
        None, submit(kind, "2026-07-01", identity_verified_on=None), ctx_on(dm, "2026-07-01")
    )


def fee(ground: FeeGround | None, on: str = "2026-07-20") -> r.FeeReceived:
    return command(r.FeeReceived, received_on=D(on), ground=ground)  # type: ignore[return-value]


def test_a_fee_without_its_ground_is_refused_and_moves_no_clock(dm: DataMap) -> None:
    rec = waiting_for_id(dm)
    outcome = wf.on_command(rec, fee(None), ctx_on(dm, "2026-07-20"))
    assert outcome.rejected == "invalid_command"
    assert outcome.message is not None
    assert "--ground" in outcome.message
    assert "free" in outcome.message
    verified = command(r.IdentityVerified, verified_on=D("2026-07-01"))
    assert apply(rec, verified, ctx_on(dm, "2026-07-21")).due_on == D("2026-08-03")


@pytest.mark.parametrize("ground", [FeeGround.manifestly_unfounded, FeeGround.excessive])
def test_a_fee_on_its_ground_starts_the_clock_when_received(dm: DataMap, ground: FeeGround) -> None:
    rec = apply(waiting_for_id(dm), fee(ground), ctx_on(dm, "2026-07-20"))
    rec = apply(
        rec, command(r.IdentityVerified, verified_on=D("2026-07-01")), ctx_on(dm, "2026-07-21")
    )
    assert rec.clock_start == D("2026-07-20")
    assert rec.due_on == D("2026-08-20")


def test_a_fee_for_further_copies_is_for_access_requests_only(dm: DataMap) -> None:
    erasure = waiting_for_id(dm, RequestType.erasure)
    outcome = wf.on_command(erasure, fee(FeeGround.further_copies), ctx_on(dm, "2026-07-20"))
    assert outcome.rejected == "invalid_command"
    access = apply(waiting_for_id(dm), fee(FeeGround.further_copies), ctx_on(dm, "2026-07-20"))
    assert access.fee_received_on == date(2026, 7, 20)


def test_the_ground_is_in_the_audit_step(dm: DataMap) -> None:
    outcome = wf.on_command(waiting_for_id(dm), fee(FeeGround.excessive), ctx_on(dm, "2026-07-20"))
    assert outcome.rejected is None
    assert any("fee received (excessive)" in (step.reason or "") for step in outcome.audit)


def test_a_fee_from_an_older_cli_decodes_without_a_ground_and_is_then_refused() -> None:
    """A command of the FeeReceived v1 schema (no ground) is read, not lost: answered."""
    first = load_versions(contract.schema_dir())[r.FeeReceived.fullname()][0].schema
    assert "ground" not in {f["name"] for f in first["fields"]}
    datum = fee(FeeGround.excessive).model_dump(mode="python", exclude={"ground"})
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(first), datum)
    read = Codec(contract.schema_dir()).decode(first, buf.getvalue())
    assert isinstance(read, r.FeeReceived)
    assert read.ground is None
