"""Kafka delivery: events, active-alarm table, dead letters and checkpoints in one transaction.

The sink of a round: it builds the round's records and sends them through :mod:`borobridge.kafka.producer`;
:mod:`borobridge.kafka.checkpoints` restores the cursors and re-reads them after a round in doubt, and
:mod:`borobridge.kafka.topics` creates and checks the topics. With ``kafka.transactional`` (the default) a
``read_committed`` consumer sees each round entirely or not at all, and a second instance with the same bridge
name fences this one; given a :class:`~borobridge.kafka.sharding.ShardClaim`, the sink serves one shard: its
transactional id is the shard's, it restores the shard's checkpoint partition only, and its checkpoint records
name the owner and generation that wrote them.

Without ``kafka.transactional``, the producer is idempotent and the checkpoint is written after the events: at
least once, repeats recognisable by CloudEvent id.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Final, Self

import msgspec

from borobridge.checkpoint import Checkpoint
from borobridge.errors import (
    CheckpointError,
    CursorAheadError,
    EventTopicError,
    FencedError,
    KafkaClientError,
    KafkaDeliveryError,
    KafkaUnreachableError,
    TopicPolicyError,
)
from borobridge.events import STRUCTURED_CONTENT_TYPE, CloudEvent
from borobridge.kafka.admin import Admin
from borobridge.kafka.checkpoints import CommittedCursors, checkpoint_records, committed_checkpoints
from borobridge.kafka.connection import any_reachable, connection_hint, connection_problem, tls_problem
from borobridge.kafka.errors import SEND_ERRORS, is_refused_connection, quoted, translated
from borobridge.kafka.producer import Producer, transactional_id
from borobridge.kafka.records import Headers, KafkaRecord
from borobridge.kafka.sharding import ShardClaim
from borobridge.kafka.tasks import STOP_TIMEOUT, bounded, wait_abandoned
from borobridge.kafka.topics import TopicManager, event_topic, fixed_topics
from borobridge.schemas import documents
from borobridge.settings import KafkaSettings
from borobridge.sinks import Batch, DeadLetter
from borobridge.transitions import Transition

log = logging.getLogger(__name__)

RESTORE_TIMEOUT: Final = 120.0
# The hot path's shortcuts (BENCHMARKS.md, 1.5): an enum member read through its class is a lookup each time, and a
# NamedTuple's own __new__ is a Python call; tuple.__new__ builds the same KafkaRecord in half the time.
_EVENT: Final = Transition.EVENT
_CLEARED: Final = Transition.CLEARED
_new_record: Final = tuple.__new__


class KafkaSink:
    """The sink for Kafka; an async context manager that owns its producer and admin client.

    ``keeps_state=False`` (replays) writes events and dead letters only, never the active table.
    """

    def __init__(
        self, settings: KafkaSettings, bridge_name: str, *, keeps_state: bool = True, claim: ShardClaim | None = None
    ) -> None:
        self._settings = settings
        self._name = bridge_name
        self._keeps_state = keeps_state
        self._claim = claim
        self._shard = None if claim is None else claim.number
        self._checkpoint_headers = () if claim is None else claim.headers()
        self._admin: Admin | None = None
        self._producer: Producer | None = None
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
            if isinstance(exc, KafkaClientError | TimeoutError):
                raise await self._start_error(exc) from exc
            raise
        return self

    async def _start_error(self, error: KafkaClientError | TimeoutError) -> KafkaDeliveryError:
        """Why the clients did not start: :class:`KafkaUnreachableError` when no broker answered (retry later);
        a refusal (a failed TLS handshake, SASL refused, or anything else from a reachable broker) as is."""
        problem = await tls_problem(self._settings)
        if problem is None and (isinstance(error, TimeoutError) or is_refused_connection(error)):
            if isinstance(error, TimeoutError) or not await any_reachable(self._settings, self._timeout):
                return KafkaUnreachableError(f"cannot reach {self._settings.bootstrap_servers}: {quoted(error)}")
            if self._settings.sasl is None:
                return KafkaUnreachableError(
                    f"no broker at {self._settings.bootstrap_servers} answers: {quoted(error)}"
                )
        problem = problem or f"{quoted(error)}; {connection_hint(self._settings)}"
        return KafkaDeliveryError(f"cannot start Kafka clients: {problem}")

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def restore(self) -> dict[str, Checkpoint]:
        """Read the checkpoint topic to its end (read_committed); the latest record of each stream wins."""
        try:
            found = await committed_checkpoints(
                self._settings, self._topic_manager(), RESTORE_TIMEOUT, shard=self._shard
            )
        except TimeoutError as exc:
            raise CheckpointError(
                f"could not read {self._settings.topics.checkpoints} to its end within {RESTORE_TIMEOUT:.0f} s"
            ) from exc
        self._cursors.restored(found)
        self._unchecked = False  # read after the producer started: nobody can have moved them since
        return found

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
            await bounded(self._send_batch(producer, stamped), self._timeout)
        except SEND_ERRORS as exc:
            if (fence := producer.fence(exc)) is not None:
                producer.retrieve_failures()
                raise FencedError(
                    f"another borobridge instance named {self._name!r} took over transactional id "
                    f"{transactional_id(self._name, self._shard)!r}; this one stops"
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
            await bounded(self._ensure_each_event_topic(projects), self._timeout)
        except TimeoutError as exc:
            raise KafkaDeliveryError(f"cannot inspect or create Kafka topics: {exc}") from exc

    async def _ensure_each_event_topic(self, projects: list[int]) -> None:
        """A topic refused is its project's problem, fixed without a restart: one retriable error naming every
        project refused and its topic, so that the other projects' events can go on without them."""
        refused: dict[int, str] = {}
        problems: list[str] = []
        for project in projects:
            spec = event_topic(self._settings.topics, project)
            try:
                await self._topic_manager().ensure([spec])
            except TopicPolicyError as exc:
                refused[project] = spec.name
                problems.append(f"project {project}: its events topic {spec.name} cannot be used ({exc})")
        if refused:
            raise EventTopicError(
                "; ".join(problems) + "; nothing is lost, the streams of these projects wait with backoff until "
                "the topic is fixed, the other projects go on",
                topics=refused,
            )

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
            found = await committed_checkpoints(self._settings, self._topic_manager(), self._timeout, shard=self._shard)
        except (KafkaClientError, TimeoutError) as exc:
            raise KafkaDeliveryError(
                f"cannot read the committed cursors from {self._settings.topics.checkpoints}: {quoted(exc)}"
            ) from exc
        went_through = self._cursors.adopt(found, self._name)
        self._unchecked = False
        return went_through

    async def _send_batch(self, producer: Producer, batch: Batch) -> None:
        if self._settings.transactional:
            async with producer.transaction():
                await producer.send(self._records(batch))
        else:
            await producer.send(self._event_records(batch))
            await producer.send(self._checkpoint_records(batch.checkpoints))

    async def _ready_producer(self) -> Producer:
        """The producer; a new one after a failed batch, whose start also aborts that batch's transaction."""
        if self._producer is None:
            producer = Producer(self._settings, self._name, self._shard)
            try:
                await producer.start(self._timeout)
            except (KafkaClientError, TimeoutError) as exc:
                problem = await connection_problem(self._settings, exc)
                raise KafkaDeliveryError(f"cannot restart the Kafka producer: {problem}") from exc
            self._producer = producer
            self._unchecked = True
        return self._producer

    async def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.discard()

    async def _start(self) -> None:
        self._admin = Admin(self._settings)
        await bounded(self._admin.start(), self._timeout)
        self._topics = TopicManager(self._admin, self._settings.topics)
        if self._claim is not None:  # the topics and schemas were seen to before the group was joined
            await self._ready_producer()
            return
        await bounded(self._topics.ensure(fixed_topics(self._settings.topics)), self._timeout)
        await bounded(self._publish_schemas(await self._ready_producer()), self._timeout)

    async def _stop(self) -> None:
        await self._discard_producer()
        await wait_abandoned()  # work given up on may end now that the broker answers again, closing its connections
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(KafkaClientError, TimeoutError, OSError):
                await bounded(admin.close(), STOP_TIMEOUT)

    def _topic_manager(self) -> TopicManager:
        if self._topics is None:
            raise RuntimeError("KafkaSink used before start: enter it with `async with` first")
        return self._topics

    async def _publish_schemas(self, producer: Producer) -> None:
        """Write every schema document; a failure raises :class:`KafkaClientError`, a start error like any other."""
        topic = self._settings.topics.schemas
        records = [KafkaRecord(topic, document.uri.encode(), document.content, []) for document in documents()]
        with translated():
            if self._settings.transactional:
                async with producer.transaction():
                    await producer.send(records)
            else:
                await producer.send(records)

    def _records(self, batch: Batch) -> list[KafkaRecord]:
        return self._event_records(batch) + self._checkpoint_records(batch.checkpoints)

    def _event_records(self, batch: Batch) -> list[KafkaRecord]:
        event_topics, keeps_state = self._event_topics, self._keeps_state
        encode = _structured if self._settings.mode == "structured" else _binary
        records: list[KafkaRecord] = []
        for event in batch.events:
            attributes = event.attributes
            value, headers = encode(event)
            topic = event_topics.get(attributes["project"]) or self._event_topic(attributes["project"])
            records.append(_new_record(KafkaRecord, (topic, attributes["partitionkey"].encode(), value, headers)))
            if keeps_state and event.transition is not _EVENT:
                records.append(self._active_record(event, value, headers))
        records += [_dead_letter_record(self._settings.topics.dead_letters, letter) for letter in batch.dead_letters]
        return records

    def _event_topic(self, project: str) -> str:
        name = self._event_topics[project] = self._settings.topics.events.format(project_id=project)
        return name

    def _active_record(self, event: CloudEvent, value: bytes, headers: Headers) -> KafkaRecord:
        """The latest ``raised`` per alarm, keyed ``project/task/alarm``; a tombstone once it clears."""
        key = f"{event.key}/{event.record_id}".encode()
        if event.transition is _CLEARED:
            return _new_record(KafkaRecord, (self._settings.topics.active, key, None, []))
        return _new_record(KafkaRecord, (self._settings.topics.active, key, value, headers))

    def _checkpoint_records(self, checkpoints: Iterable[Checkpoint]) -> list[KafkaRecord]:
        return checkpoint_records(self._settings.topics.checkpoints, checkpoints, self._checkpoint_headers)


def _stamped(batch: Batch) -> Batch:
    """The batch with its checkpoints stamped with the time of this attempt, which tells its records apart."""
    now = time.time()
    checkpoints = [msgspec.structs.replace(checkpoint, committed_at=now) for checkpoint in batch.checkpoints]
    return Batch(events=batch.events, dead_letters=batch.dead_letters, checkpoints=checkpoints)


def _binary(event: CloudEvent) -> tuple[bytes, Headers]:
    return event.data, event.kafka_binary_headers()


def _structured(event: CloudEvent) -> tuple[bytes, Headers]:
    return event.structured(), [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


def _dead_letter_record(topic: str, letter: DeadLetter) -> KafkaRecord:
    headers = [
        ("borobridge_reason", letter.record.reason.encode()),
        ("borobridge_stream", letter.stream.encode()),
        ("borobridge_project", str(letter.record.project_id).encode()),
    ]
    return KafkaRecord(topic, letter.stream.encode(), letter.record.raw, headers)
