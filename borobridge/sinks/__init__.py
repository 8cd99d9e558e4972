"""Sinks: where CloudEvents go (JSON lines, Kafka, MQTT)."""
