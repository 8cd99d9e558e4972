"""Prometheus metrics of one bridge instance, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric the bridge exports; tests read them back from ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.polls = Counter("borobridge_polls", "TaskAlarms results handled, by outcome", ["outcome"], registry=reg)
        self.poll_seconds = Histogram(
            "borobridge_poll_duration_seconds", "Duration of one poll round (fetch to commit)", registry=reg
        )
        self.records = Counter("borobridge_records", "Alarm records read from Boro", registry=reg)
        self.transitions = Counter(
            "borobridge_transitions", "Transitions published", ["transition", "level", "group"], registry=reg
        )
        self.publish_seconds = Histogram(
            "borobridge_publish_duration_seconds", "Time to deliver and commit one batch", registry=reg
        )
        self.errors = Counter("borobridge_errors", "Errors, by kind", ["kind"], registry=reg)
        self.dead_letters = Counter("borobridge_dead_letters", "Records sent to the dead-letter sink", registry=reg)
        self.cursor_commit_time = Gauge(
            "borobridge_cursor_commit_timestamp_seconds",
            "Unix time of each stream's last committed cursor (cursor age = now - this)",
            ["stream"],
            registry=reg,
        )
        self.reconciled = Counter(
            "borobridge_reconciled_transitions",
            "Transitions the reconciliation sweep found that the token path had missed",
            ["stream"],
            registry=reg,
        )
        self.active_alarms = Gauge("borobridge_active_alarms", "Alarms currently raised", registry=reg)
        self.mqtt_relay_lag = Gauge("borobridge_mqtt_relay_lag", "Kafka records not yet relayed to MQTT", registry=reg)
        self.mqtt_relay_skipped = Counter(
            "borobridge_mqtt_relay_skipped",
            "Events-topic records the MQTT relay skipped because they are not the bridge's CloudEvents, by reason",
            ["reason"],
            registry=reg,
        )
        # Webhooks: each accepted one rings the doorbell, which starts a poll early or is coalesced into one.
        self.webhooks_received = Counter("borobridge_webhooks_received", "Webhooks accepted", registry=reg)
        self.webhooks_rejected = Counter(
            "borobridge_webhooks_rejected", "Webhooks refused, by reason", ["reason"], registry=reg
        )
        self.polls_triggered = Counter(
            "borobridge_webhook_polls_triggered", "Poll cycles a webhook started before the poll interval", registry=reg
        )
        self.webhooks_coalesced = Counter(
            "borobridge_webhooks_coalesced", "Webhooks absorbed by a poll already waiting to start", registry=reg
        )
