"""The composition root: opens every resource, runs the loops, and stops them on a signal.

Resources are async context managers entered on one ``AsyncExitStack``; the loops run as named tasks of one
``TaskGroup``. SIGTERM and SIGINT let the cycle in flight finish and commit; past ``SHUTDOWN_GRACE`` it is
cancelled, which loses nothing because an uncommitted cycle is simply polled again at the next start.

With a ``kafka`` section the process joins its bridge's shard group and runs one pipeline per shard it is
assigned (:mod:`borobridge.shards`); on a signal every shard is released as at a revocation (its cycle finishes
within ``REVOKE_GRACE``) and the process leaves the group, whose next owners take the shards over at once. Without
Kafka one pipeline polls every stream.

The built-in simulator is a new Boro world at every start, with record ids of its own: cursors saved against
an earlier world do not apply to it, so its streams start afresh (the output file is still cut back to its
last commit).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import msgspec

from borobridge.backoff import Backoff
from borobridge.boro.client import BoroClient
from borobridge.boro.http import BoroHttpClient
from borobridge.checkpoint import FileCheckpointStore
from borobridge.doorbell import Doorbell, Doorbells
from borobridge.errors import KafkaClientError, KafkaUnreachableError
from borobridge.health import Health, ReportingSink
from borobridge.health_http import serve_health
from borobridge.kafka.group import ShardGroup
from borobridge.kafka.producer import fence_unsharded, transactional_id
from borobridge.kafka.sink import KafkaSink
from borobridge.metrics import Metrics
from borobridge.mqtt_relay import MqttRelay
from borobridge.pipeline import Pipeline
from borobridge.secret import without_userinfo
from borobridge.settings import FirstStartSettings, KafkaSettings, Settings
from borobridge.shards import Shards
from borobridge.simulator import Simulator, describe, faults_from, personality_from, serve_simulator
from borobridge.sinks import Sink
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
        if advice := history_first_trade_off(settings.first_start):
            log.info("%s", advice)
        url = settings.boro.url or await stack.enter_async_context(_embedded_simulator(settings))
        http = await stack.enter_async_context(BoroHttpClient(settings.boro, metrics.boro_request_seconds))
        publisher = await _mqtt_publisher(settings, stack)
        new_pipeline = _pipeline_maker(settings, BoroClient(http, settings.boro, url=url), url, metrics, health)
        starting = Starting(health, stop, _backoff(settings))
        if settings.kafka is not None:
            await _run_shards(
                settings,
                kafka=settings.kafka,
                new_pipeline=new_pipeline,
                publisher=publisher,
                health=health,
                metrics=metrics,
                stop=stop,
                stack=stack,
                starting=starting,
            )
        else:
            await _run_alone(
                settings,
                new_pipeline=new_pipeline,
                publisher=publisher,
                health=health,
                metrics=metrics,
                stop=stop,
                stack=stack,
            )
    log.info("borobridge stopped")


def history_first_trade_off(first_start: FirstStartSettings) -> str | None:
    """What a first start that reads its history before the live alarms costs, and the other choice (None: the
    configuration reads no history, or reads it beside the live alarms). Said once per process, not per stream."""
    if first_start.mode == "now" or first_start.history != "first":
        return None
    return (
        f"first_start.mode {first_start.mode} with first_start.history first: a stream that starts without a cursor "
        "reads its history before its live alarms, which wait for it; first_start.history: beside delivers them "
        "at once, at the cost of each task's order across the history boundary (docs/reading.md, First start)"
    )


PipelineMaker = Callable[[Sink, Callable[[str], bool] | None], Pipeline]


def _pipeline_maker(
    settings: Settings, client: BoroClient, url: str, metrics: Metrics, health: Health
) -> PipelineMaker:
    """Pipelines over one Boro client, each for the streams ``owns`` accepts (every stream: None)."""

    def new_pipeline(sink: Sink, owns: Callable[[str], bool] | None) -> Pipeline:
        server = server_name(settings, url)
        return Pipeline(client, sink, settings, server_name=server, metrics=metrics, health=health, owns=owns)

    return new_pipeline


async def _run_alone(
    settings: Settings,
    *,
    new_pipeline: PipelineMaker,
    publisher: MqttPublisher | None,
    health: Health,
    metrics: Metrics,
    stop: asyncio.Event,
    stack: AsyncExitStack,
) -> None:
    """Without Kafka: one pipeline polls every stream, its cursors in the local state file."""
    sink = ReportingSink(_local_sink(settings, stack, publisher), health, _sink_name(settings), metrics=metrics)
    pipeline = new_pipeline(sink, None)
    await pipeline.restore(keep_cursors=bool(settings.boro.url))
    doorbells = _doorbells(settings, metrics)
    doorbell = doorbells.open(0, pipeline.polls) if doorbells is not None else None
    await _serve_webhooks(settings, lambda: [pipeline], doorbells, metrics, stack)
    health.mark_restored()
    async with asyncio.TaskGroup() as tasks:
        poll = tasks.create_task(pipeline.run(stop, doorbell), name="poll")
        tasks.create_task(_cancel_after_grace(stop, poll), name="shutdown-guard")


async def _run_shards(
    settings: Settings,
    *,
    kafka: KafkaSettings,
    new_pipeline: PipelineMaker,
    publisher: MqttPublisher | None,
    health: Health,
    metrics: Metrics,
    stop: asyncio.Event,
    stack: AsyncExitStack,
    starting: Starting,
) -> None:
    """With Kafka: the topics and schemas seen to, then the shards this process is assigned in its shard group,
    one pipeline each, and the MQTT relay beside them."""
    if not await _prepare_kafka(settings, kafka, stack, starting):
        log.info("borobridge stopped before Kafka could be reached")
        return
    doorbells = _doorbells(settings, metrics)
    shards = Shards(
        kafka,
        settings.name,
        lambda sink, claim: new_pipeline(sink, claim.owns),
        health=health,
        metrics=metrics,
        backoff=lambda: _backoff(settings),
        keep_cursors=bool(settings.boro.url),
        doorbells=doorbells,
    )
    await _serve_webhooks(settings, lambda: shards.pipelines, doorbells, metrics, stack)
    joining = lambda: ShardGroup(kafka, settings.name, assigned=shards.assigned, revoked=shards.revoked)  # noqa: E731
    group = await starting.enter(stack, joining, "kafka", KafkaUnreachableError)
    if group is None:
        return
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(shards.run(stop), name="shards")
        tasks.create_task(group.run(stop), name="shard-group")
        if publisher is not None:
            relay = MqttRelay(
                kafka, publisher, settings.name, metrics=metrics, backoff=_backoff(settings), health=health
            )
            tasks.create_task(relay.run(stop), name="mqtt-relay")


async def _prepare_kafka(settings: Settings, kafka: KafkaSettings, stack: AsyncExitStack, starting: Starting) -> bool:
    """Create or check the topics and publish the schemas (without a transaction: replicas starting together must
    not fence each other), then fence an instance that writes without shards. False: stopped meanwhile."""
    untransacted = msgspec.structs.replace(kafka, transactional=False)
    setup = await starting.enter(stack, lambda: KafkaSink(untransacted, settings.name), "kafka", KafkaUnreachableError)
    if setup is None:
        return False
    if kafka.transactional:
        try:
            await fence_unsharded(kafka, settings.name, kafka.delivery_timeout_ms / 1000)
        except (KafkaClientError, TimeoutError) as exc:
            raise KafkaUnreachableError(
                f"cannot take over transactional id {transactional_id(settings.name)!r}: {exc}"
            ) from exc
    return True


async def _serve_health(settings: Settings, health: Health, metrics: Metrics, stack: AsyncExitStack) -> None:
    options = settings.health
    url = await stack.enter_async_context(serve_health(health, metrics.registry, options.host, options.port))
    log.info("serving /livez, /readyz and /metrics on %s", url)


def _doorbells(settings: Settings, metrics: Metrics) -> Doorbells | None:
    """With ``webhook.enabled``: the pipelines' doorbells, each keeping ``webhook.min_gap``."""
    if not settings.webhook.enabled:
        return None
    return Doorbells(lambda: Doorbell(min_gap=settings.webhook.min_gap, metrics=metrics))


async def _serve_webhooks(
    settings: Settings,
    pipelines: Callable[[], Iterable[Pipeline]],
    doorbells: Doorbells | None,
    metrics: Metrics,
    stack: AsyncExitStack,
) -> None:
    """With doorbells (``webhook.enabled``): serve the endpoint whose webhooks ring them."""
    if doorbells is None:
        return
    options = settings.webhook
    app = WebhookApp(options, doorbells, lambda: polled_projects(settings, pipelines()), metrics)
    url = await stack.enter_async_context(serve_webhooks(app, options.host, options.port))
    log.info("serving Boro webhooks on %s/webhooks/boro/<project_id>", url)


def polled_projects(settings: Settings, pipelines: Iterable[Pipeline]) -> set[int]:
    """The projects a webhook may name: those configured, and those discovered so far."""
    configured = settings.boro.projects if settings.boro.projects != "all" else []
    return {*configured, *(stream.base.project_id for pipeline in pipelines for stream in pipeline.streams)}


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


def _local_sink(settings: Settings, stack: AsyncExitStack, publisher: MqttPublisher | None) -> Sink:
    """JSON lines with a local cursor file, behind MQTT when that is configured."""
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
