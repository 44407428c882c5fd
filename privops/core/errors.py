"""The privops exception hierarchy. Library errors are wrapped at the boundary."""

from __future__ import annotations

from typing import Final


class PrivopsError(Exception):
    """Root of every error privops raises on purpose."""


class ConfigError(PrivopsError):
    """A settings value or the data map is invalid; the message names the field."""


class DecodeError(PrivopsError):
    """Bytes that could not be turned into a known, valid record (goes to the dead-letter topic)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RegistryError(PrivopsError):
    """The schema registry refused or could not be reached."""


class RegistryUnreachable(RegistryError):
    """The schema registry could not be reached, or failed (5xx): worth asking again, where
    a refusal (credentials, an unregistered or incompatible schema) is not."""


class RuntimeUnavailable(PrivopsError):
    """A local component (Java, Maven, Kafka, registry) is missing or not answering."""


class DomainError(PrivopsError):
    """A command that the rules do not allow (illegal transition, unknown subject, ...)."""


class WrongTopic(PrivopsError):
    """A record type that does not belong on the topic it came from (DESIGN.md section 8).

    Kafka's ACLs say who may write a topic, so the topic, not a field in the record, is
    what proves where a record came from: a directive or legal hold on `crm.events` is a
    system (or an attacker) trying to lift a restriction or a hold, and an event whose
    `source` names another system is that system's word put in someone else's mouth.
    """

    reason: Final = "wrong_topic"
