"""Kafka delivery: events, active-alarm table, dead letters and checkpoints in one transaction.

This module and :mod:`borobridge.kafka.topics` are the only places that touch aiokafka (which ships no type
information); everything they hand back is typed. With ``kafka.transactional`` (the default) a
``read_committed`` consumer sees each round entirely or not at all, and a second instance with the same bridge
name fences this one. Without it, the producer is idempotent and the checkpoint is written after the events: at
least once, repeats recognisable by CloudEvent id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterable, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalOperation, InvalidProducerEpoch, KafkaConnectionError, KafkaError, ProducerFenced

from borobridge.checkpoint import Checkpoint
from borobridge.delivery import Batch, DeadLetter
from borobridge.errors import (
    CheckpointError,
    CursorAheadError,
    EventTopicError,
    FencedError,
    KafkaDeliveryError,
    KafkaUnreachableError,
    TopicPolicyError,
)
from borobridge.events import STRUCTURED_CONTENT_TYPE, CloudEvent
from borobridge.kafka.batches import Record, send_in_batches
from borobridge.kafka.checkpoints import CommittedCursors
from borobridge.kafka.connection import (
    any_reachable,
    connection_hint,
    connection_options,
    connection_problem,
    tls_problem,
)
from borobridge.kafka.topics import TopicManager, event_topic, fixed_topics
from borobridge.schemas import documents
from borobridge.settings import KafkaSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

RESTORE_TIMEOUT: Final = 120.0
STOP_TIMEOUT: Final = 10.0
CANCEL_GRACE: Final = 1.0
_CHECKPOINT_DECODER: Final = msgspec.json.Decoder(Checkpoint)
_CHECKPOINT_ENCODER: Final = msgspec.json.Encoder()


def transactional_id(bridge_name: str) -> str:
    """The fixed transactional id of a bridge: one live instance per name."""
    return f"borobridge-{bridge_name}"


class KafkaSink:
    """The committer for Kafka; an async context manager that owns its producer and admin client.

    ``keeps_state=False`` (replays) writes events and dead letters only, never the active table.
    """

    def __init__(self, settings: KafkaSettings, bridge_name: str, *, keeps_state: bool = True) -> None:
        self._settings = settings
        self._name = bridge_name
        self._keeps_state = keeps_state
        self._options = connection_options(settings)
        self._admin: Any = None
        self._producer: Any = None
        self._topics: TopicManager | None = None
        self._event_topics: dict[str, str] = {}  # project → events topic name
        self._cursors = CommittedCursors()
        self._unchecked = False  # a new producer that sent nothing yet, the cursors not re-read since it started

    async def __aenter__(self) -> Self:
        if self._producer is not None:
            raise RuntimeError("KafkaSink is already started; use one instance per async with block")
        try:
            await self._start()
        except BaseException as exc:
            await self._stop()
            if isinstance(exc, KafkaError | TimeoutError):
                raise await self._start_error(exc) from exc
            raise
        return self

    async def _start_error(self, error: KafkaError | TimeoutError) -> KafkaDeliveryError:
        """Why the clients did not start: :class:`KafkaUnreachableError` when no broker answered (retry later);
        a refusal (a failed TLS handshake, SASL refused, or anything else from a reachable broker) as is."""
        problem = await tls_problem(self._settings)
        if problem is None and isinstance(error, KafkaConnectionError | TimeoutError):
            if isinstance(error, TimeoutError) or not await any_reachable(self._settings, self._timeout):
                return KafkaUnreachableError(f"cannot reach {self._settings.bootstrap_servers}: {error!r}")
            if self._settings.sasl is None:
                return KafkaUnreachableError(f"no broker at {self._settings.bootstrap_servers} answers: {error!r}")
        problem = problem or f"{error!r}; {connection_hint(self._settings)}"
        return KafkaDeliveryError(f"cannot start Kafka clients: {problem}")

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def restore(self) -> dict[str, Checkpoint]:
        """Read the checkpoint topic to its end (read_committed); the latest record of each stream wins."""
        try:
            found = await self._committed_checkpoints(RESTORE_TIMEOUT)
        except TimeoutError as exc:
            raise CheckpointError(
                f"could not read {self._settings.topics.checkpoints} to its end within {RESTORE_TIMEOUT:.0f} s"
            ) from exc
        self._cursors.restored(found)
        self._unchecked = False  # read after the producer started: nobody can have moved them since
        return found

    async def _committed_checkpoints(self, seconds: float) -> dict[str, Checkpoint]:
        """The checkpoint topic read to its end by a consumer of its own; TimeoutError past ``seconds``."""
        consumer = AIOKafkaConsumer(isolation_level="read_committed", enable_auto_commit=False, **self._options)
        try:
            async with asyncio.timeout(seconds):
                await consumer.start()
                return await self._read_checkpoints(consumer)
        finally:
            await asyncio.sleep(0)  # aiokafka re-raises the cancellation of a coordinator task that never ran
            await _stop_quietly(consumer)

    async def deliver(self, batch: Batch) -> None:
        """Send the whole batch (atomically in transactional mode), or raise and leave nothing visible.

        A batch whose commit Kafka did not confirm counts as delivered when a new producer finds its checkpoints
        committed after all.
        """
        await self._ensure_event_topics(batch)
        producer = await self._ready_producer()
        if await self._adopt_committed():
            raise CursorAheadError(
                "a round that Kafka did not confirm within kafka.delivery_timeout_ms was committed after all; "
                "this instance stops so that its restart resumes after it"
            )
        stamped = _stamped(batch)
        try:
            await _bounded(self._send_batch(producer, stamped), self._timeout)
        except (KafkaError, IllegalOperation, TimeoutError) as exc:
            if (fence := _fence(producer, exc)) is not None:
                _retrieve_failures(producer)
                raise FencedError(
                    f"another borobridge instance named {self._name!r} took over transactional id "
                    f"{transactional_id(self._name)!r}; this one stops"
                ) from fence
            self._cursors.given_up(stamped.checkpoints)
            await self._discard_producer()  # its successor takes the transactional id back: never after a fence
            if await self._committed_after_all():
                log.warning("Kafka committed a round of %d events after all; it is not sent again", len(batch.events))
                return
            raise KafkaDeliveryError(f"Kafka did not accept a batch of {len(batch.events)} events: {exc!r}") from exc
        self._cursors.committed(stamped.checkpoints)

    @property
    def _timeout(self) -> float:
        return self._settings.delivery_timeout_ms / 1000

    async def _ensure_event_topics(self, batch: Batch) -> None:
        projects = sorted({int(event.attributes["project"]) for event in batch.events})
        try:
            await _bounded(self._ensure_each_event_topic(projects), self._timeout)
        except TimeoutError as exc:
            raise KafkaDeliveryError(f"cannot inspect or create Kafka topics: {exc}") from exc

    async def _ensure_each_event_topic(self, projects: list[int]) -> None:
        """A topic refused is one project's problem, fixed without a restart: a retriable error naming both."""
        for project in projects:
            spec = event_topic(self._settings.topics, project)
            try:
                await self._topic_manager().ensure([spec])
            except TopicPolicyError as exc:
                raise EventTopicError(
                    f"project {project}: its events topic {spec.name} cannot be used ({exc}); "
                    "nothing is lost, the round is retried with backoff until the topic is fixed",
                    topic=spec.name,
                    project=project,
                ) from exc

    async def _committed_after_all(self) -> bool:
        """Whether the round just given up on was committed, asked at once through a new producer."""
        try:
            await self._ready_producer()
            return await self._adopt_committed()
        except KafkaDeliveryError:
            return False  # asked again before the next round

    async def _adopt_committed(self) -> bool:
        """Re-read the cursors once a new producer fenced every other; True when the round in doubt went through.

        The producer's start ends every transaction of the transactional id (committing one already being
        committed), so what is read now stays until this instance writes again.
        """
        if not self._unchecked or not self._settings.transactional or not self._cursors.tracked:
            return False
        try:
            found = await self._committed_checkpoints(self._timeout)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaDeliveryError(
                f"cannot read the committed cursors from {self._settings.topics.checkpoints}: {exc!r}"
            ) from exc
        went_through = self._cursors.adopt(found, self._name)
        self._unchecked = False
        return went_through

    async def _send_batch(self, producer: Any, batch: Batch) -> None:
        if self._settings.transactional:
            async with producer.transaction():
                await _send(producer, self._records(batch))
        else:
            await _send(producer, self._event_records(batch))
            await _send(producer, self._checkpoint_records(batch.checkpoints))

    async def _ready_producer(self) -> Any:
        """The producer; a new one after a failed batch, whose start also aborts that batch's transaction."""
        if self._producer is None:
            producer = AIOKafkaProducer(**self._producer_options())
            try:
                await _bounded(producer.start(), self._timeout)
            except (KafkaError, TimeoutError) as exc:
                await _stop_quietly(producer)
                problem = await connection_problem(self._settings, exc)
                raise KafkaDeliveryError(f"cannot restart the Kafka producer: {problem}") from exc
            self._producer = producer
            self._unchecked = True
        return self._producer

    async def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            _retrieve_failures(producer)
            await _stop_sender(producer)
            _give_up_pending(producer)
            _retrieve_failures(producer)
            await _stop_quietly(producer)
            _retrieve_failures(producer)  # stopping fails what was still queued, and may renew the waiter

    async def _start(self) -> None:
        self._admin = AIOKafkaAdminClient(**self._options)
        await _bounded(self._admin.start(), self._timeout)
        self._topics = TopicManager(self._admin, self._settings.topics)
        await _bounded(self._topics.ensure(fixed_topics(self._settings.topics)), self._timeout)
        await _bounded(self._publish_schemas(await self._ready_producer()), self._timeout)

    async def _stop(self) -> None:
        await self._discard_producer()
        if _abandoned:  # work given up on may end now that the broker answers again; let it close its connections
            await asyncio.wait(list(_abandoned), timeout=STOP_TIMEOUT)
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                await _bounded(admin.close(), STOP_TIMEOUT)

    def _producer_options(self) -> dict[str, Any]:
        settings = self._settings
        options = dict(self._options)
        options |= {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": settings.linger_ms,
            "max_batch_size": settings.max_batch_bytes,
            "compression_type": None if settings.compression == "none" else settings.compression,
        }
        if settings.transactional:
            options["transactional_id"] = transactional_id(self._name)
            options["transaction_timeout_ms"] = settings.transaction_timeout_ms
        return options

    def _topic_manager(self) -> TopicManager:
        if self._topics is None:
            raise RuntimeError("KafkaSink used before start: enter it with `async with` first")
        return self._topics

    async def _publish_schemas(self, producer: Any) -> None:
        records: list[Record] = [
            (self._settings.topics.schemas, document.uri.encode(), document.content, []) for document in documents()
        ]
        if self._settings.transactional:
            async with producer.transaction():
                await _send(producer, records)
        else:
            await _send(producer, records)

    async def _read_checkpoints(self, consumer: Any) -> dict[str, Checkpoint]:
        topic = self._settings.topics.checkpoints
        partitions = [TopicPartition(topic, p) for p in await self._topic_manager().partitions(topic)]
        if not partitions:
            return {}
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        latest: dict[str, Checkpoint] = {}
        while await _behind(consumer, ends):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    _keep_latest(latest, message.value)
        log.info("read %d checkpoints from %s", len(latest), topic)
        return latest

    def _records(self, batch: Batch) -> list[Record]:
        return self._event_records(batch) + self._checkpoint_records(batch.checkpoints)

    def _event_records(self, batch: Batch) -> list[Record]:
        event_topics, keeps_state = self._event_topics, self._keeps_state
        encode = _structured if self._settings.mode == "structured" else _binary
        records: list[Record] = []
        for event in batch.events:
            attributes = event.attributes
            value, headers = encode(event)
            topic = event_topics.get(attributes["project"]) or self._event_topic(attributes["project"])
            records.append((topic, attributes["partitionkey"].encode(), value, headers))
            if keeps_state and not attributes["id"].endswith("-event"):
                records.append(self._active_record(event, value, headers))
        records += [_dead_letter_record(self._settings.topics.dead_letters, letter) for letter in batch.dead_letters]
        return records

    def _event_topic(self, project: str) -> str:
        name = self._event_topics[project] = self._settings.topics.events.format(project_id=project)
        return name

    def _active_record(self, event: CloudEvent, value: bytes, headers: list[tuple[str, bytes]]) -> Record:
        """The latest ``raised`` per alarm, keyed ``project/task/alarm``; a tombstone once it clears."""
        record_id, _, transition = event.attributes["id"].rpartition("-")
        key = f"{event.key}/{record_id}".encode()
        if transition == "cleared":
            return (self._settings.topics.active, key, None, [])
        return (self._settings.topics.active, key, value, headers)

    def _checkpoint_records(self, checkpoints: Iterable[Checkpoint]) -> list[Record]:
        topic = self._settings.topics.checkpoints
        return [(topic, c.stream.encode(), _CHECKPOINT_ENCODER.encode(c), []) for c in checkpoints]


def _stamped(batch: Batch) -> Batch:
    """The batch with its checkpoints stamped with the time of this attempt, which tells its records apart."""
    now = time.time()
    checkpoints = [msgspec.structs.replace(checkpoint, committed_at=now) for checkpoint in batch.checkpoints]
    return Batch(events=batch.events, dead_letters=batch.dead_letters, checkpoints=checkpoints)


def _binary(event: CloudEvent) -> tuple[bytes, list[tuple[str, bytes]]]:
    return event.data, event.kafka_binary_headers()


def _structured(event: CloudEvent) -> tuple[bytes, list[tuple[str, bytes]]]:
    return event.structured(), [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


async def _send(producer: Any, records: Sequence[Record]) -> None:
    """Queue every record, then wait until the broker acknowledged all of them."""
    await asyncio.gather(*await send_in_batches(producer, records))


_FENCES: Final = (ProducerFenced, InvalidProducerEpoch)
_CHAIN_LIMIT: Final = 16


def _fence(producer: Any, error: BaseException) -> BaseException | None:
    """The fence behind a failed batch, if there is one, wherever it surfaced.

    aiokafka reports a fence as ProducerFenced only to the call that was waiting on the failed request; a send
    that was waiting for metadata meanwhile gets IllegalOperation, and a bounded wait gets TimeoutError. The
    sender task, which stops at the fence, tells in every case.
    """
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and len(chain) < _CHAIN_LIMIT:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    sender = producer._sender.sender_task  # aiokafka offers no public view of it
    if sender is not None and sender.done() and not sender.cancelled() and (stopped := sender.exception()):
        chain.append(stopped)
    return next((cause for cause in chain if isinstance(cause, _FENCES)), None)


async def _stop_quietly(client: Any) -> None:
    """Stop a producer or consumer that may have failed; a stop that fails or hangs too changes nothing.

    A stop that fails half-way (the sender re-raises what its last request met) leaves the connections and the
    metadata task open: they are closed in any case.
    """
    with contextlib.suppress(KafkaError, TimeoutError, OSError, AssertionError):  # aiokafka asserts its states
        await _bounded(client.stop(), STOP_TIMEOUT)
    connections = client.client if isinstance(client, AIOKafkaProducer) else client._client  # the consumer's
    with contextlib.suppress(KafkaError, TimeoutError, OSError):
        await _bounded(connections.close(), STOP_TIMEOUT)


async def _stop_sender(producer: Any) -> None:
    """Stop a discarded producer's sender and its requests in flight, so that no answer changes its state any more.

    Cancelled, aiokafka's sender waits for its requests in flight, and one that looks for the transaction
    coordinator retries without end while the broker is down: they are cancelled first. aiokafka offers no public
    view of them; they are the sender routine's ``tasks``.
    """
    sender = producer._sender.sender_task
    if sender is None:
        return
    frame = sender.get_coro().cr_frame
    in_flight: list[asyncio.Task[Any]] = list(frame.f_locals.get("tasks", ())) if frame is not None else []
    for task in [sender, *in_flight]:
        task.add_done_callback(_retrieve)  # what they met has been reported with the round, or is of no interest
        task.cancel()
    await asyncio.wait([sender, *in_flight], timeout=STOP_TIMEOUT)


def _give_up_pending(producer: Any) -> None:
    """Fail what a discarded producer still has queued or awaits, as its sender would if it stopped on an error.

    Its stop waits until every queued batch is delivered, and a commit waits for the coordinator without limit:
    with the broker down neither ends, and a stop given up on leaves the producer's connections and tasks open.
    """
    given_up = KafkaConnectionError("the producer was discarded after a failed round")
    accumulator = producer._message_accumulator  # aiokafka offers no public way to drop queued batches
    for batch in [*(b for queued in accumulator._batches.values() for b in queued), *accumulator._pending_batches]:
        batch.future.add_done_callback(_retrieve)  # its waiter gave up on it: shield() then stops retrieving
    accumulator.fail_all(given_up)
    transactions = producer._txn_manager
    waiter = None if transactions is None else transactions._transaction_waiter
    if waiter is not None and not waiter.done():
        transactions.fatal_error(given_up)


def _retrieve_failures(producer: Any) -> None:
    """Mark as retrieved, now or whenever they fail, the waiters a failed producer leaves behind.

    When the sender stops (a fence, a fatal error, a stop), aiokafka fails the drain waiter of every queued
    batch and the transaction waiter, which nobody awaits once the round is given up: without this asyncio logs
    each as "Future exception was never retrieved". The round's failure has been reported already.
    """
    accumulator = producer._message_accumulator  # aiokafka offers no public view of these waiters
    batches = [batch for queued in accumulator._batches.values() for batch in queued]
    waiters = [batch._drain_waiter for batch in [*batches, *accumulator._pending_batches]]
    transactions = producer._txn_manager
    if transactions is not None and transactions._transaction_waiter is not None:
        waiters.append(transactions._transaction_waiter)
    for waiter in waiters:
        waiter.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


_abandoned: set[asyncio.Task[Any]] = set()


async def _bounded(work: Coroutine[Any, Any, T], seconds: float) -> T:
    """Await ``work`` for at most ``seconds``, then give up on it (TimeoutError).

    aiokafka shields its transaction commit and abort from cancellation and waits for the coordinator without
    limit, so a plain timeout cannot interrupt it while the broker is down. The work runs as its own task; a
    task that overruns is cancelled and left to end on its own, held in ``_abandoned`` until it does.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait([task], timeout=seconds)
    if done:
        if task.cancelled():  # by aiokafka itself: a stop that cancels its sender re-raises that cancellation
            raise TimeoutError("Kafka work was cancelled before it ended")
        return task.result()
    task.cancel()
    await asyncio.wait([task], timeout=CANCEL_GRACE)  # most work ends at once: no stop may run beside it
    if task.done():
        _forget(task)
        raise TimeoutError(f"no answer from Kafka within {seconds:g} s")
    _abandoned.add(task)
    task.add_done_callback(_forget)
    raise TimeoutError(f"no answer from Kafka within {seconds:g} s")


def _forget(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()


async def _behind(consumer: Any, ends: dict[Any, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return True
    return False


def _dead_letter_record(topic: str, letter: DeadLetter) -> Record:
    headers = [
        ("borobridge_reason", letter.record.reason.encode()),
        ("borobridge_stream", letter.stream.encode()),
        ("borobridge_project", str(letter.record.project_id).encode()),
    ]
    return (topic, letter.stream.encode(), letter.record.raw, headers)


def _keep_latest(latest: dict[str, Checkpoint], value: bytes | None) -> None:
    if not value:
        return
    try:
        checkpoint = _CHECKPOINT_DECODER.decode(value)
    except msgspec.DecodeError:
        log.warning("skipping an unreadable checkpoint record: %r", value[:200])
        return
    latest[checkpoint.stream] = checkpoint
