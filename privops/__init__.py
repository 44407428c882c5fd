"""privops: privacy operations as event-driven workflows on Apache Kafka.

This package holds everything that runs without Kafka wiring: domain rules (pure
functions), the data map, the connector SDK, audit, metric definitions and the CLI.
"""

__version__ = "0.47.0"
"""The release: its minor number is the development round's session that made it, so an
operator can tell which worker is older (``/health``, ``privops --version``); the README's
upgrade notes name it. pyproject.toml carries the same (a test checks)."""
