"""privops: privacy operations as event-driven workflows on Apache Kafka.

This package holds everything that runs without Kafka wiring: domain rules (pure
functions), the data map, the connector SDK, audit, metric definitions and the CLI.
"""

__version__ = "0.1.0"
