"""The composition root: opens every resource, runs the loops, and stops them on a signal.

Resources are async context managers entered on one ``AsyncExitStack``; the loops run as named tasks of one
``TaskGroup``. SIGTERM and SIGINT let the cycle in flight finish and commit; past ``SHUTDOWN_GRACE`` it is
cancelled, which loses nothing because an uncommitted cycle is simply polled again at the next start.

The built-in simulator is a new Boro world at every start, with record ids of its own: cursors saved against
an earlier world do not apply to it, so its streams start afresh (the output file is still cut back to its
last commit).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from borobridge.backoff import Backoff
from borobridge.boro.client import BoroClient
from borobridge.boro.http import BoroHttpClient
from borobridge.checkpoint import FileCheckpointStore
from borobridge.delivery import Committer
from borobridge.doorbell import Doorbell
from borobridge.errors import KafkaUnreachableError
from borobridge.health import Health, ReportingCommitter
from borobridge.health_http import serve_health
from borobridge.kafka.sink import KafkaSink
from borobridge.metrics import Metrics
from borobridge.mqtt_relay import MqttRelay
from borobridge.pipeline import Pipeline
from borobridge.secret import without_userinfo
from borobridge.settings import Settings
from borobridge.simulator import Simulator, describe, faults_from, personality_from, serve_simulator
from borobridge.sinks.jsonlines import JsonLinesSink
from borobridge.sinks.mqtt import MqttDirectSink, MqttPublisher
from borobridge.starting import Starting
from borobridge.webhooks import WebhookApp, serve_webhooks

log = logging.getLogger(__name__)

SHUTDOWN_GRACE: Final = 10.0
SIMULATOR_NAME: Final = "simulator"
FIRST_SIMULATED_ID: Final = 10_000_000_000


async def run_bridge(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the bridge until ``stop`` is set or a signal arrives."""
    stop = stop or asyncio.Event()
    async with AsyncExitStack() as stack:
        metrics = Metrics()
        health = Health(poll_interval=settings.boro.poll_interval, sink_bound=delivery_bound(settings))
        metrics.follow_readiness(health.readiness)
        metrics.poll_interval.set(settings.boro.poll_interval)
        if settings.health.enabled:
            await _serve_health(settings, health, metrics, stack)
        _install_signal_handlers(stop)
        url = settings.boro.url or await stack.enter_async_context(_embedded_simulator(settings))
        http = await stack.enter_async_context(BoroHttpClient(settings.boro, metrics.boro_request_seconds))
        publisher = await _mqtt_publisher(settings, stack)
        committer = await _committer(settings, stack, publisher, Starting(health, stop, _backoff(settings)))
        if committer is None:
            log.info("borobridge stopped before Kafka could be reached")
            return
        sink = ReportingCommitter(committer, health, _sink_name(settings), metrics=metrics)
        pipeline = Pipeline(
            BoroClient(http, settings.boro, url=url),
            sink,
            settings,
            server_name=server_name(settings, url),
            metrics=metrics,
            health=health,
        )
        await pipeline.restore(keep_cursors=bool(settings.boro.url))
        doorbell = await _serve_webhooks(settings, pipeline, metrics, stack)
        health.mark_restored()
        async with asyncio.TaskGroup() as tasks:
            poll = tasks.create_task(pipeline.run(stop, doorbell), name="poll")
            if settings.kafka is not None and publisher is not None:
                relay = MqttRelay(
                    settings.kafka, publisher, settings.name, metrics=metrics, backoff=_backoff(settings), health=health
                )
                tasks.create_task(relay.run(stop), name="mqtt-relay")
            tasks.create_task(_cancel_after_grace(stop, poll), name="shutdown-guard")
    log.info("borobridge stopped")


async def _serve_health(settings: Settings, health: Health, metrics: Metrics, stack: AsyncExitStack) -> None:
    options = settings.health
    url = await stack.enter_async_context(serve_health(health, metrics.registry, options.host, options.port))
    log.info("serving /livez, /readyz and /metrics on %s", url)


async def _serve_webhooks(
    settings: Settings, pipeline: Pipeline, metrics: Metrics, stack: AsyncExitStack
) -> Doorbell | None:
    """With ``webhook.enabled``: the doorbell its webhooks ring, once the endpoint is served."""
    options = settings.webhook
    if not options.enabled:
        return None
    doorbell = Doorbell(min_gap=options.min_gap, metrics=metrics)
    app = WebhookApp(options, doorbell, lambda: polled_projects(settings, pipeline), metrics)
    url = await stack.enter_async_context(serve_webhooks(app, options.host, options.port))
    log.info("serving Boro webhooks on %s/webhooks/boro/<project_id>", url)
    return doorbell


def polled_projects(settings: Settings, pipeline: Pipeline) -> set[int]:
    """The projects a webhook may name: those configured, and those discovered so far."""
    configured = settings.boro.projects if settings.boro.projects != "all" else []
    return {*configured, *(stream.base.project_id for stream in pipeline.streams)}


def _sink_name(settings: Settings) -> str:
    if settings.kafka is not None:
        return "kafka"
    return "mqtt" if settings.mqtt is not None else "output"


def delivery_bound(settings: Settings) -> float | None:
    """How long a delivery may go unconfirmed before /readyz turns 503: a poll interval plus the sink's own limit
    (so at most two poll intervals after a sink goes down, plus that limit); the default for the local file."""
    poll_interval = settings.boro.poll_interval
    if settings.kafka is not None:
        return poll_interval + settings.kafka.delivery_timeout_ms / 1000
    if settings.mqtt is not None:
        return poll_interval + settings.mqtt.publish_timeout
    return None


async def _committer(
    settings: Settings, stack: AsyncExitStack, publisher: MqttPublisher | None, starting: Starting
) -> Committer | None:
    """Kafka when configured (None: stopped before it could be reached); else JSON lines with a local cursor
    file, behind MQTT when that is configured."""
    if (kafka := settings.kafka) is not None:
        return await starting.enter(stack, lambda: KafkaSink(kafka, settings.name), "kafka", KafkaUnreachableError)
    sink = JsonLinesSink(FileCheckpointStore(Path(settings.state.path)), _output_path(settings))
    stack.callback(sink.close)
    return MqttDirectSink(publisher, sink) if publisher is not None else sink


async def _mqtt_publisher(settings: Settings, stack: AsyncExitStack) -> MqttPublisher | None:
    if settings.mqtt is None:
        return None
    return await stack.enter_async_context(MqttPublisher(settings.mqtt, settings.name))


def _backoff(settings: Settings) -> Backoff:
    return Backoff(settings.boro.retry.initial_backoff, settings.boro.retry.max_backoff)


def _embedded_simulator(settings: Settings) -> AbstractAsyncContextManager[str]:
    options = settings.simulator
    simulator = Simulator(
        seed=options.seed,
        projects=options.projects,
        personality=personality_from(options),
        faults=faults_from(options),
        rate_per_second=options.rate_per_second,
        user_id=settings.boro.user_id,
        retain_seconds=3600.0,
        first_record_id=FIRST_SIMULATED_ID + int(time.time()) % 100_000_000 * 100,
    )
    log.info(
        "no boro.url configured: polling the built-in Boro simulator (seed %d, personality: %s)",
        options.seed,
        describe(simulator.personality),
    )
    return serve_simulator(simulator, host="127.0.0.1", port=0, advance_every=0.2, webhooks=options.webhooks)


def _output_path(settings: Settings) -> Path | None:
    return Path(settings.output.path) if settings.output.path else None


def server_name(settings: Settings, url: str) -> str:
    """The Boro server's name in CloudEvent sources and stream ids: configured, else the URL's ``host[:port]``
    (never its ``user:password@``, which is secret and changes when rotated), else the simulator."""
    if settings.boro.server_name:
        return settings.boro.server_name
    return without_userinfo(urlsplit(url).netloc) if settings.boro.url else SIMULATOR_NAME


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, stop, signum)


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    log.info("%s received: finishing the cycle in flight", signal.Signals(signum).name)
    stop.set()


async def _cancel_after_grace(stop: asyncio.Event, poll: asyncio.Task[None]) -> None:
    await stop.wait()
    _, pending = await asyncio.wait([poll], timeout=SHUTDOWN_GRACE)
    if pending:
        log.warning("the cycle in flight did not finish within %.0f s; cancelling it", SHUTDOWN_GRACE)
        poll.cancel()
