"""The transactional producer behind a typed adapter: start, transactions, sends, fence detection, and a discard
that leaves nothing of a failed producer running.

The discard reaches into aiokafka's sender, accumulator and transaction manager, which it offers no public view
of: a producer given up on while the broker is down would otherwise keep its tasks and connections open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from borobridge.errors import KafkaClientError
from borobridge.kafka.batches import send_in_batches
from borobridge.kafka.connection import connection_options
from borobridge.kafka.errors import fence_in, given_up, translated
from borobridge.kafka.records import KafkaRecord
from borobridge.kafka.tasks import STOP_TIMEOUT, bounded, retrieve, stop_quietly
from borobridge.settings import KafkaSettings

DISCARDED: Final = "the producer was discarded after a failed round"


def transactional_id(bridge_name: str, shard: int | None = None) -> str:
    """The fixed transactional id of a bridge's shard (one live owner per shard), or of the whole bridge."""
    return f"borobridge-{bridge_name}" if shard is None else f"borobridge-{bridge_name}-{shard}"


def producer_options(settings: KafkaSettings, bridge_name: str, shard: int | None = None) -> dict[str, Any]:
    """Idempotent, acknowledged by every in-sync replica; transactional with the bridge's id when configured."""
    options = connection_options(settings)
    options |= {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        "max_batch_size": settings.max_batch_bytes,
        "compression_type": None if settings.compression == "none" else settings.compression,
    }
    if settings.transactional:
        options["transactional_id"] = transactional_id(bridge_name, shard)
        options["transaction_timeout_ms"] = settings.transaction_timeout_ms
    return options


async def fence_unsharded(settings: KafkaSettings, bridge_name: str, seconds: float) -> None:
    """Take the transactional id of the whole bridge and let it go: an instance that writes without shards (an
    earlier version, still running) is fenced, and its open transaction ended, before any shard writes."""
    producer = Producer(settings, bridge_name)
    try:
        await producer.start(seconds)
    finally:
        await producer.discard()


class Producer:
    """One producer; after a failed round it is discarded and a new one takes the transactional id back."""

    def __init__(self, settings: KafkaSettings, bridge_name: str, shard: int | None = None) -> None:
        self._client: Any = AIOKafkaProducer(**producer_options(settings, bridge_name, shard))

    async def start(self, seconds: float) -> None:
        """Connect, and with a transactional id end every transaction it left open; TimeoutError past ``seconds``.

        A failed start leaves nothing open; the client's error raises :class:`KafkaClientError`.
        """
        try:
            with translated():
                await bounded(self._client.start(), seconds)
        except (KafkaClientError, TimeoutError):
            await stop_quietly(self._client.stop, self._client.client.close)
            raise

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Commit what is sent in the block as one transaction, or abort it when the block raises."""
        async with self._client.transaction():
            yield

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        """Queue every record, then wait until the broker acknowledged all of them."""
        await asyncio.gather(*await send_in_batches(self._client, records))

    def fence(self, error: BaseException) -> BaseException | None:
        """The fence behind a failed round, if there is one, wherever it surfaced.

        aiokafka reports a fence as ProducerFenced only to the call that was waiting on the failed request; a send
        that was waiting for metadata meanwhile gets IllegalOperation, and a bounded wait gets TimeoutError. The
        sender task, which stops at the fence, tells in every case.
        """
        sender = self._client._sender.sender_task
        stopped = None
        if sender is not None and sender.done() and not sender.cancelled():
            stopped = sender.exception()
        return fence_in(error, stopped)

    async def discard(self) -> None:
        """Stop this producer for good, failing whatever it still has queued or awaits."""
        self.retrieve_failures()
        await self._stop_sender()
        self._give_up_pending()
        self.retrieve_failures()
        await stop_quietly(self._client.stop, self._client.client.close)
        self.retrieve_failures()  # stopping fails what was still queued, and may renew the waiter

    def retrieve_failures(self) -> None:
        """Mark as retrieved, now or whenever they fail, the waiters a failed producer leaves behind.

        When the sender stops (a fence, a fatal error, a stop), aiokafka fails the drain waiter of every queued
        batch and the transaction waiter, which nobody awaits once the round is given up: without this asyncio
        logs each as "Future exception was never retrieved". The round's failure has been reported already.
        """
        accumulator = self._client._message_accumulator
        batches = [batch for queued in accumulator._batches.values() for batch in queued]
        waiters = [batch._drain_waiter for batch in [*batches, *accumulator._pending_batches]]
        transactions = self._client._txn_manager
        if transactions is not None and transactions._transaction_waiter is not None:
            waiters.append(transactions._transaction_waiter)
        for waiter in waiters:
            waiter.add_done_callback(retrieve)

    async def _stop_sender(self) -> None:
        """Stop the sender and its requests in flight, so that no answer changes the producer's state any more.

        Cancelled, aiokafka's sender waits for its requests in flight, and one that looks for the transaction
        coordinator retries without end while the broker is down: they are cancelled first. They are the sender
        routine's ``tasks``.
        """
        sender = self._client._sender.sender_task
        if sender is None:
            return
        frame = sender.get_coro().cr_frame
        in_flight: list[asyncio.Task[Any]] = list(frame.f_locals.get("tasks", ())) if frame is not None else []
        for task in [sender, *in_flight]:
            task.add_done_callback(retrieve)  # what they met has been reported with the round, or is of no interest
            task.cancel()
        await asyncio.wait([sender, *in_flight], timeout=STOP_TIMEOUT)

    def _give_up_pending(self) -> None:
        """Fail what is still queued or awaited, as the sender would if it stopped on an error.

        A stop waits until every queued batch is delivered, and a commit waits for the coordinator without limit:
        with the broker down neither ends, and a stop given up on leaves the connections and tasks open.
        """
        failure = given_up(DISCARDED)
        accumulator = self._client._message_accumulator
        for batch in [*(b for queued in accumulator._batches.values() for b in queued), *accumulator._pending_batches]:
            batch.future.add_done_callback(retrieve)  # its waiter gave up on it: shield() then stops retrieving
        accumulator.fail_all(failure)
        transactions = self._client._txn_manager
        waiter = None if transactions is None else transactions._transaction_waiter
        if waiter is not None and not waiter.done():
            transactions.fatal_error(failure)
