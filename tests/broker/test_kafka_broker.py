"""The real Kafka that borobridge is tested against does what its exactly-once and failover tests rely on.

Transactions with `read_committed` isolation, SCRAM logins on the SASL listener, and a replicated topic
that keeps taking ``acks=all`` writes while its leader node is down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from tests.support.kafka import KafkaCluster, unique_topic

pytestmark = pytest.mark.kafka

SCRAM_MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512"]
QUIET_POLL_MS = 1_000


async def create_topic(bootstrap: str, topic: str, *, replication: int = 1) -> None:
    """Create `topic` with one partition and `replication` replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, replication)])
    finally:
        await admin.close()


async def consume_values(
    bootstrap: str, topic: str, *, count: int, timeout_s: float = 30.0, **options: Any
) -> list[bytes]:
    """Read `topic` from the start until `count` values arrived (or time ran out), then poll once more."""
    async with AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **options
    ) as consumer:
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(values) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [record.value for records in batches.values() for record in records]
        batches = await consumer.getmany(timeout_ms=QUIET_POLL_MS)
        return values + [record.value for records in batches.values() for record in records]


def scram_options(kafka: KafkaCluster, mechanism: str, password: str | None = None) -> dict[str, Any]:
    """Client options that log in to the SCRAM listener of `kafka` with `mechanism`."""
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": kafka.scram_user,
        "sasl_plain_password": kafka.scram_password if password is None else password,
    }


async def test_read_committed_consumer_sees_only_committed_transactions(kafka: KafkaCluster) -> None:
    topic = unique_topic("transactions")
    await create_topic(kafka.bootstrap, topic)
    async with AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=unique_topic("tx")) as producer:
        async with producer.transaction():
            await producer.send(topic, b"first")
            await producer.send(topic, b"second")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"third")

    committed = await consume_values(kafka.bootstrap, topic, count=3, isolation_level="read_committed")
    everything = await consume_values(kafka.bootstrap, topic, count=4, isolation_level="read_uncommitted")

    assert committed == [b"first", b"second", b"third"]
    assert everything == [b"first", b"second", b"aborted", b"third"]


async def test_open_transaction_stays_invisible_until_committed(kafka: KafkaCluster) -> None:
    topic = unique_topic("open-transaction")
    await create_topic(kafka.bootstrap, topic)
    async with AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=unique_topic("tx")) as producer:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"pending")
        while_open = await consume_values(
            kafka.bootstrap, topic, count=1, timeout_s=2.0, isolation_level="read_committed"
        )
        await producer.commit_transaction()

    after_commit = await consume_values(kafka.bootstrap, topic, count=1, isolation_level="read_committed")

    assert while_open == []
    assert after_commit == [b"pending"]


@pytest.mark.parametrize("mechanism", SCRAM_MECHANISMS)
async def test_scram_login_writes_and_reads(kafka: KafkaCluster, mechanism: str) -> None:
    assert kafka.scram_bootstrap is not None
    topic = unique_topic("scram")
    options = scram_options(kafka, mechanism)
    async with AIOKafkaProducer(bootstrap_servers=kafka.scram_bootstrap, **options) as producer:
        await producer.send_and_wait(topic, mechanism.encode())

    values = await consume_values(kafka.scram_bootstrap, topic, count=1, **options)

    assert values == [mechanism.encode()]


async def start_then_stop(producer: AIOKafkaProducer) -> None:
    """Connect `producer` (which may fail) and close it in any case."""
    try:
        await producer.start()
    finally:
        await producer.stop()


@pytest.mark.parametrize("mechanism", SCRAM_MECHANISMS)
async def test_scram_login_with_wrong_password_is_refused(
    kafka: KafkaCluster, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert kafka.scram_bootstrap is not None
    wrong_password = f"{kafka.scram_password}-but-not-quite"
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.scram_bootstrap,
        request_timeout_ms=10_000,
        **scram_options(kafka, mechanism, wrong_password),
    )
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await start_then_stop(producer)

    assert f"invalid credentials with SASL mechanism {mechanism}" in caplog.text


async def test_records_and_scram_users_survive_a_node_restart(kafka: KafkaCluster) -> None:
    assert kafka.scram_bootstrap is not None
    topic = unique_topic("restart")
    options = scram_options(kafka, "SCRAM-SHA-512")
    async with AIOKafkaProducer(bootstrap_servers=kafka.scram_bootstrap, acks="all", **options) as producer:
        await producer.send_and_wait(topic, b"kept")

    await kafka.restart_node(1)
    values = await consume_values(kafka.scram_bootstrap, topic, count=1, **options)

    assert values == [b"kept"]


async def send_all(producer: AIOKafkaProducer, topic: str, values: list[bytes]) -> None:
    """Send `values` in order and wait until the brokers acknowledged every one."""
    for value in values:
        await producer.send_and_wait(topic, value)


@pytest.mark.parametrize("crash", [False, True], ids=["clean-shutdown", "crash"])
async def test_replicated_topic_keeps_taking_acks_all_writes_while_its_leader_is_down(
    kafka_cluster: KafkaCluster, crash: bool
) -> None:
    topic = unique_topic("failover")
    await create_topic(kafka_cluster.bootstrap, topic, replication=3)
    healthy = await kafka_cluster.wait_for_partition(topic, isr_size=3)
    before = [f"before-{index}".encode() for index in range(5)]
    during = [f"during-{index}".encode() for index in range(5)]
    after = [f"after-{index}".encode() for index in range(5)]
    async with AIOKafkaProducer(
        bootstrap_servers=kafka_cluster.bootstrap, acks="all", enable_idempotence=True
    ) as producer:
        await send_all(producer, topic, before)
        await kafka_cluster.stop_node(healthy.leader, kill=crash)
        try:
            degraded = await kafka_cluster.wait_for_partition(topic, isr_size=2)
            await asyncio.wait_for(send_all(producer, topic, during), timeout=60)
        finally:
            await kafka_cluster.start_node(healthy.leader)
        recovered = await kafka_cluster.wait_for_partition(topic, isr_size=3)
        await send_all(producer, topic, after)

    values = await consume_values(kafka_cluster.bootstrap, topic, count=15, isolation_level="read_committed")

    assert degraded.leader not in (healthy.leader, -1)
    assert healthy.leader not in degraded.isr
    assert set(recovered.isr) == set(kafka_cluster.node_ids)
    assert values == before + during + after
