"""`privops simulate`'s business day, when the broker refuses a send: one line naming
the topic and what to do, never a traceback (review, session 43). The producer stands in
for the broker's refusal; what is under test is how the refusal is reported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import pytest
from aiokafka.errors import TopicAuthorizationFailedError, UnknownTopicOrPartitionError

from privops.adapters.settings import Settings
from privops.connectors.reference import seed_customers
from privops.core.errors import ConfigError, RuntimeUnavailable
from privops.tools import simulate


@pytest.mark.parametrize(
    ("refusal", "error", "words"),
    [
        (UnknownTopicOrPartitionError(), RuntimeUnavailable, "was not found on the Kafka broker"),
        (TopicAuthorizationFailedError(), ConfigError, "does not let principal"),
    ],
)
async def test_a_refused_send_names_the_topic(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, refusal: Exception, error: type, words: str
) -> None:
    class Serde:
        @classmethod
        def for_settings(cls, _settings: Settings) -> Serde:
            return cls()

        def register_all(self) -> int:
            return 0

        def encode(self, _record: Any) -> bytes:
            return b"x"

    class Refusing:
        async def send(self, topic: str, **_: Any) -> Any:
            raise refusal

    @asynccontextmanager
    async def producer(_options: Any, **_: Any) -> AsyncIterator[Refusing]:
        yield Refusing()

    def client_options(_settings: Settings, principal: str) -> dict[str, Any]:
        return {"bootstrap_servers": "127.0.0.1:29092", "sasl_plain_username": principal}

    monkeypatch.setattr(simulate, "client_options", client_options)
    monkeypatch.setattr(simulate, "Serde", Serde)
    monkeypatch.setattr(simulate, "producer", producer)
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", home=tmp_path)
    people = seed_customers(3, anchor=date(2026, 3, 2))
    with pytest.raises(error) as exc:
        await simulate.publish_business_day(settings, people, plaintext=True)
    assert words in str(exc.value)
    assert ".events" in str(exc.value)
