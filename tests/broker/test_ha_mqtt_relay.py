"""The MQTT relay in several replicas: real ``borobridge run`` processes with a ``kafka`` and an ``mqtt`` section,
real Kafka and Mosquitto, and a subscriber counting every event id it receives.

Each replica's relay joins the relay group (``borobridge-<name>-mqtt``), so the events topics' partitions are
shared and each committed event is published by one replica. The relay is at least once around a rebalance (a
batch published but not yet committed when its partitions move is published again by the new owner), so the count
is taken while the groups stand still: the world moves only once every replica is in both groups.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Final

import pytest

from borobridge.mqtt_relay import relay_group
from borobridge.settings import KafkaSettings
from borobridge.simulator import serve_simulator
from tests.support.bridge_process import BridgeProcess
from tests.support.expectations import expected_ids, simulator_with_history
from tests.support.ha import PROJECTS, SETTLE_S, Replicas, scrape, settled, until
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import bridge_config
from tests.support.kafka_reading import kafka_settings
from tests.support.mosquitto import MosquittoBroker, mosquitto_sub
from tests.support.mqtt_bridge import subscribed
from tests.support.pipelines import advancing
from tests.support.relay_group import Assignment, group_members

pytestmark = [pytest.mark.kafka, pytest.mark.mqtt, pytest.mark.slow]

REPLICAS: Final = 3
MOVING_S: Final = 6.0
RELAYED_S: Final = 60.0
STATUS_S: Final = 5.0


async def test_replicas_share_the_relay_and_publish_each_event_once(
    kafka: KafkaCluster, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=61, projects=PROJECTS, rate_per_second=20)
    group = relay_group(prefix)
    async with serve_simulator(sim) as url, subscribed(mosquitto) as subscriber:
        replicas = Replicas(relaying_config(tmp_path, url, settings, prefix, mosquitto), tmp_path, metrics=True)
        try:
            for _ in range(REPLICAS):
                await replicas.start()
            await until(
                lambda: len(replicas.running) == REPLICAS and settled(replicas.running),
                SETTLE_S,
                "the replicas did not share the shards",
                replicas.all,
            )
            standing = await _until_the_relay_group_stands(kafka.bootstrap, group, replicas)
            before = expected_ids(sim)  # published while replicas joined: at least once
            async with advancing(sim, every=0.2):
                await asyncio.sleep(MOVING_S)
            expected = expected_ids(sim)
            await until(
                lambda: set(subscriber.copies()) >= expected,
                RELAYED_S,
                "not every event reached the MQTT subscriber",
                replicas.all,
            )
            counts = subscriber.copies()  # before the kill and the stop below move the relay's partitions
            relayed = [await _relayed(replicas, process) for process in replicas.all]
            after = await group_members(kafka.bootstrap, group)
            async with mosquitto_sub(mosquitto, f"borobridge/{prefix}/status", count=3, listen_s=STATUS_S) as sub:
                await replicas.all[0].kill()  # its last will marks the bridge offline; the others still run
                status = [message.payload for message in await sub.messages()]
        finally:
            await replicas.stop_all()
    assert expected - before, "the world made no change while the groups stood still"
    assert set(counts) == expected
    repeated = {event_id: n for event_id, n in counts.items() if n > 1 and event_id not in before}
    assert not repeated, f"{len(repeated)} events were published more than once, e.g. {list(repeated.items())[:5]}"
    assert after == standing, "the relay group changed while the world moved"
    assert sum(1 for count in relayed if count > 0) == REPLICAS, f"a replica relayed nothing: {relayed}"
    broker_log = mosquitto.log_file.read_text(encoding="utf-8")
    assert "already connected" not in broker_log, "replicas took each other's MQTT sessions over"
    assert status == [b"online", b"offline", b"online"], "the bridge stayed offline on MQTT while two replicas ran"


def relaying_config(tmp_path: Path, url: str, settings: KafkaSettings, prefix: str, broker: MosquittoBroker) -> Path:
    """The replicas' configuration: Kafka delivery, and the relay to ``broker``."""
    config = bridge_config(tmp_path, url, settings, prefix)
    document = json.loads(config.read_text(encoding="utf-8"))
    document["mqtt"] = {"host": broker.host, "port": broker.port}
    config.write_text(json.dumps(document), encoding="utf-8")
    return config


async def _until_the_relay_group_stands(bootstrap: str, group: str, replicas: Replicas) -> dict[str, Assignment]:
    """Wait (bounded) until the relay group is stable with one member per replica, and every project's events
    topic (created with the project's first events) shared among them; its members and their partitions."""
    deadline = asyncio.get_running_loop().time() + SETTLE_S
    while True:
        members = await group_members(bootstrap, group)
        topics = {topic for assigned in members.values() for topic, _ in assigned}
        if len(members) == REPLICAS and all(members.values()) and len(topics) == PROJECTS:
            return members
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the relay group did not stand with {REPLICAS} members within {SETTLE_S:.0f} s: {members}")
        await asyncio.sleep(0.5)


async def _relayed(replicas: Replicas, process: BridgeProcess) -> int:
    samples = await scrape(replicas.port(process))
    return round(samples.get(("borobridge_mqtt_relayed_total", ()), 0.0))
