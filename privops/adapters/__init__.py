"""The edges of the core: settings, schema registry and Avro codec, Kafka helpers,
metrics definitions and the local runtime (Kafka and the registry from Maven jars)."""
