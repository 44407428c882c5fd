"""The privops exception hierarchy. Library errors are wrapped at the boundary."""

from __future__ import annotations


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


class RuntimeUnavailable(PrivopsError):
    """A local component (Java, Maven, Kafka, registry) is missing or not answering."""


class DomainError(PrivopsError):
    """A command that the rules do not allow (illegal transition, unknown subject, ...)."""
