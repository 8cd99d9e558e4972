"""borobridge: Elecard Boro alarms as CloudEvents on Apache Kafka and MQTT."""

__version__ = "0.1.0"
