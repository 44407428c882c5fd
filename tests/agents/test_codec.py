"""The Faust codec ``privops-avro`` writes and reads the Confluent wire format."""

from __future__ import annotations

from datetime import UTC, datetime

from faust.serializers import codecs

from privops.adapters.serde import unframe
from privops.core import records as r


def test_codec_round_trips_confluent_framed_avro(serde) -> None:
    import streams.io

    record = r.ConsentWithdrawn(
        event_id="e-1",
        occurred_at=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
        source="crm",
        subject_id="CUST-1",
        identifiers=r.Identifiers(customer_id="CUST-1"),
        purpose="marketing",
        channel="sms",
    )
    raw = codecs.dumps("privops-avro", record)
    schema_id, _ = unframe(raw)
    assert schema_id == streams.io.serde.schema_id(record.fullname())
    assert codecs.loads("privops-avro", raw) == record
