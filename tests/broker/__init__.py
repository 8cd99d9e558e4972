"""Broker tests: the real Apache Kafka and Mosquitto (marked kafka or mqtt), and scenarios around them."""
