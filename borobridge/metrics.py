"""Prometheus metrics of one bridge instance, on a registry of its own.

Every error and failure series exists at zero from the first scrape, for every known kind, so that ``rate()`` and
``increase()`` alerts see the first failure too; the process and platform collectors (memory, start time) sit on
the same registry, so one scrape of /metrics has all an alert on the bridge needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.gc_collector import GCCollector

from borobridge import __version__
from borobridge.errors import BridgeError

RELAY_UNEXPECTED: Final = "mqtt_relay"  # the MQTT relay's kind for a failure no error class describes
POLL_OUTCOMES: Final = ("ok", "error")
RELAY_SKIP_REASONS: Final = ("tombstone", "undecodable", "not_a_cloudevent")
REQUEST_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def error_kinds() -> list[str]:
    """Every ``kind`` the bridge counts errors under: each error class's, and the relay's own."""
    kinds = {RELAY_UNEXPECTED}
    pending: list[type[BridgeError]] = [BridgeError]
    while pending:
        cls = pending.pop()
        kinds.add(cls.kind)
        pending += cls.__subclasses__()
    return sorted(kinds)


class Metrics:
    """Every metric the bridge exports; tests read them back from ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        Gauge("borobridge_build_info", "Always 1; the running version", ["version"], registry=reg).labels(
            __version__
        ).set(1)
        self.ready = Gauge("borobridge_ready", "1 while /readyz answers 200, else 0", registry=reg)
        self.poll_interval = Gauge(
            "borobridge_poll_interval_seconds", "The configured boro.poll_interval", registry=reg
        )
        self.polls = Counter("borobridge_polls", "TaskAlarms results handled, by outcome", ["outcome"], registry=reg)
        self.poll_seconds = Histogram(
            "borobridge_poll_duration_seconds", "Duration of one poll round (fetch to commit)", registry=reg
        )
        self.boro_request_seconds = Histogram(
            "borobridge_boro_request_seconds",
            "Duration of one HTTP exchange with Boro (each retry on its own, failed ones too)",
            buckets=REQUEST_BUCKETS,
            registry=reg,
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
            "Unix time each stream's cursor was last committed, or read again and found current "
            "(cursor age = now - this)",
            ["stream"],
            registry=reg,
        )
        self.reconciled = Counter(
            "borobridge_reconciled_transitions",
            "Transitions the reconciliation sweep found that the token path had missed",
            ["stream"],
            registry=reg,
        )
        self.backfill_remaining = Gauge(
            "borobridge_backfill_remaining_seconds",
            "Seconds of Boro time each stream's first-start history read still has to go (0: done)",
            ["stream"],
            registry=reg,
        )
        self.cycle_retries = Counter(
            "borobridge_poll_cycle_retries", "Poll cycles that failed and are tried again after a backoff", registry=reg
        )
        self.active_alarms = Gauge("borobridge_active_alarms", "Alarms currently raised", registry=reg)
        self.mqtt_relay_lag = Gauge("borobridge_mqtt_relay_lag", "Kafka records not yet relayed to MQTT", registry=reg)
        self.mqtt_relayed = Counter(
            "borobridge_mqtt_relayed", "Events the MQTT relay published and the broker acknowledged", registry=reg
        )
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
        self.shards_owned = Gauge("borobridge_shards_owned", "Shards this process polls and commits", registry=reg)
        self.rebalances = Counter(
            "borobridge_rebalances", "Shard group rebalances this process took part in", registry=reg
        )
        self.shard_takeover_seconds = Histogram(
            "borobridge_shard_takeover_seconds",
            "From the start of a rebalance (its revocation) to the first commit of each shard it assigned here",
            buckets=(0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120),
            registry=reg,
        )
        self.webhooks_coalesced = Counter(
            "borobridge_webhooks_coalesced", "Webhooks absorbed by a poll already waiting to start", registry=reg
        )
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        for kind in error_kinds():
            self.errors.labels(kind)
        for outcome in POLL_OUTCOMES:
            self.polls.labels(outcome)
        for reason in RELAY_SKIP_REASONS:
            self.mqtt_relay_skipped.labels(reason)

    def stream_opened(self, stream: str, *, reading_history: bool = False) -> None:
        """Show the per-stream counters of ``stream`` at zero from now on, and its history gauge once it is known
        (at once, at zero, when the stream has no history to read)."""
        self.reconciled.labels(stream)
        if not reading_history:
            self.backfill_remaining.labels(stream).set(0)

    def follow_readiness(self, readiness: Callable[[], tuple[bool, str]]) -> None:
        """``borobridge_ready`` answers what ``readiness`` says at each scrape, as /readyz does."""
        self.ready.set_function(lambda: 1.0 if readiness()[0] else 0.0)


class TimedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that observes each exchange, body included and failures too, in a histogram."""

    def __init__(self, inner: httpx.AsyncBaseTransport, histogram: Histogram) -> None:
        self._inner = inner
        self._histogram = histogram

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the wrapped transport and read the whole answer."""
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
            try:
                content = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        finally:
            self._histogram.observe(time.perf_counter() - started)
        return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


def timed_transport(histogram: Histogram) -> TimedTransport:
    """The default HTTP transport, each exchange observed in ``histogram``."""
    return TimedTransport(httpx.AsyncHTTPTransport(), histogram)
